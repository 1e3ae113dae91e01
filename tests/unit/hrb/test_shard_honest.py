"""Honest shards under crashes, loss and partitions: safety (no two members
apply different entries at one index) and progress (every submitted
transaction is applied everywhere once the faults heal), in both quorum
modes, over several seeds. ``ShardSafetyMonitor`` and Raft's own monitor run
after every event; a failure names its seed.
"""

from __future__ import annotations

import random

import pytest
from tests.unit.hrb.shard_net import ShardNet, txn

from quorate.errors import InvariantViolation
from quorate.hrb.messages import Transaction, TxnOp
from quorate.hrb.shard.invariants import ShardSafetyMonitor
from quorate.ids import NodeId

SEEDS = range(6)
LOSS = 0.05
"""Fraction of messages lost while the faults last."""
FAULT_ROUNDS = 8
ROUND_S = 1.0
SETTLE_ROUNDS = 15


def _applied(net: ShardNet, t: Transaction) -> bool:
    return all(r.store.get(t.ops[0].key) == t.ops[0].value for r in net.honest())


def chaos_run(quorum: str, seed: int, n: int) -> tuple[ShardNet, list[Transaction]]:
    """Submit transactions through random members while members crash and
    restart, links are cut and messages are lost; then heal and settle."""
    net = ShardNet(range(1, n + 1), quorum=quorum, seed=seed, loss=LOSS)
    rng = random.Random(seed)
    txns: list[Transaction] = []
    net.advance(3.0)
    for round_ in range(FAULT_ROUNDS):
        for i in range(3):
            t = txn(f"{quorum}-{seed}-{round_}-{i}", TxnOp(f"k{round_}-{i}", "put", value=f"{seed}.{round_}.{i}"))
            txns.append(t)
            up = [m for m in net.members if m not in net.down]
            net.submit(rng.choice(up), t)
        fault = rng.random()
        leader = net.leader()
        if fault < 0.3 and leader is not None and not net.down:
            net.crash(leader.id)  # the leader dies mid-round
        elif fault < 0.5 and net.down:
            net.restart(rng.choice(sorted(net.down)))
        elif fault < 0.7:
            a, b = rng.sample(list(net.members), 2)
            net.cut(a, b)
        net.advance(ROUND_S)
    for node in sorted(net.down):
        net.restart(node)
    net.heal()
    net.loss = 0.0
    for round_ in range(SETTLE_ROUNDS):
        missing = [t for t in txns if not _applied(net, t)]
        if not missing:
            break
        for i, t in enumerate(missing):
            net.submit(net.members[(round_ + i) % n], t)
        net.advance(2.0)
    return net, txns


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("quorum", "n"), [("majority", 5), ("byzantine", 4), ("byzantine", 7)])
def test_honest_shard_under_faults_is_safe_and_makes_progress(quorum: str, n: int, seed: int) -> None:
    net, txns = chaos_run(quorum, seed, n)
    where = f"reproduce with quorum={quorum} n={n} seed={seed}"
    missing = [t.ops[0].key for t in txns if not _applied(net, t)]
    assert not missing, f"never applied: {missing} ({where})"
    honest = net.honest()
    assert len({r.store.fingerprint() for r in honest}) == 1, where
    assert net.shard_monitor is not None and net.shard_monitor.checks > 0
    # Each transaction applied once: its id is in the sessions' outcomes once.
    assert all(not r.violations for r in honest), where


def test_the_monitor_catches_two_histories() -> None:
    """The safety check can fail: members of two shards that applied different
    entries at one index, checked by one monitor."""
    first = ShardNet((1, 2, 3, 4), quorum="byzantine", monitor=False)
    second = ShardNet((1, 2, 3, 4), quorum="byzantine", monitor=False)
    for net, value in ((first, "one"), (second, "two")):
        net.elect(1)
        net.submit(1, txn("x", TxnOp("a-x", "put", value=value)))
        net.advance(1.0)
        assert net.replica(2).applied_index >= 2
    monitor = ShardSafetyMonitor()
    monitor.check(first.replica(2), 0.0)
    with pytest.raises(InvariantViolation, match="certified agreement"):
        monitor.check(second.replica(NodeId(3)), 0.0)
