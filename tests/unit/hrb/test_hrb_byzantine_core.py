"""Cross-shard transactions against Byzantine core members (docs/hrb.md
sections 3 and 4): with up to f Byzantine members of the core, every
transaction is decided exactly once, certified, and applied alike by every
involved shard; a Byzantine member cannot get a decision ordered that the
state machine does not make (a raw decision, a forged vote), cannot
certify one alone (its partial signature is not a certificate), and cannot
block one by misbehaving in the ordering core, by sending bad partials, or
by being the silent collector, nor hijack an epoch change with a forged
handover. Deterministic: seeded in-memory network."""

from __future__ import annotations

import pytest
from hrb_core_net import CoreNetwork

from quorate.hotstuff import BEHAVIOURS
from quorate.hrb.core.commands import CoreHandover, DecisionPartial, encode_command
from quorate.hrb.core.config import CoreRules
from quorate.hrb.core.snapshot import encode_snapshot
from quorate.hrb.messages import (
    CORE_GROUP_BASE,
    CoreCertificate,
    ShardProof,
    ShardVote,
    Transaction,
    TxnDecision,
    certificate_bytes,
    encode_decision,
    shard_vote_bytes,
)
from quorate.ids import NodeId

RULES = CoreRules(core_size=4, epoch_length=10**9, txn_timeout_s=3.0, tick_interval_s=0.1)


def _cross(net: CoreNetwork, tag: str, home: int, other: int) -> Transaction:
    keys = net.keys_for(home, 1, f"{tag}a") + net.keys_for(other, 1, f"{tag}b")
    txn = net.transaction(tag, home, keys)
    net.submit(txn)
    return txn


def _workload(net: CoreNetwork) -> list[Transaction]:
    """Six transactions over three shards: shard 3 votes no on the last two."""
    txns = [_cross(net, f"w{i}", 1 + i % 3, 1 + (i + 1) % 3) for i in range(6)]
    for txn in txns[4:]:
        net.shards[3].policy[txn.txn_id] = "no"
    return txns


def _expected(net: CoreNetwork, txns: list[Transaction]) -> dict[bytes, bool]:
    return {t.txn_id: net.shards[3].policy.get(t.txn_id) != "no" for t in txns}


def _honest_replicas(net: CoreNetwork, byzantine: set[int]):  # type: ignore[no-untyped-def]
    return [r for r in net.replicas(0) if r.id not in byzantine and r.state is not None]


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_one_byzantine_ordering_member_neither_forges_nor_blocks_decisions(behaviour: str) -> None:
    # The Byzantine member is the lowest id: the first collector of partials too.
    probe = CoreNetwork(12, seed=41, rules=RULES)
    villain = probe.genesis.members[0]
    net = CoreNetwork(12, seed=41, rules=RULES, byzantine={NodeId(villain): behaviour})
    txns = _workload(net)
    net.run_for(15.0)
    outcomes = net.check_atomicity(txns)
    assert outcomes == _expected(net, txns), f"{behaviour}: {outcomes}"
    honest = _honest_replicas(net, {villain})
    assert len(honest) == 3
    # the honest members made the same decisions: 6 begins, 6 outcomes
    assert {(r.state.s.decisions, r.state.s.chain) for r in honest} == {(12, honest[0].state.s.chain)}
    # no shard ever saw a certificate that does not verify
    assert all(shard.refused == [] for shard in net.shards.values())


def test_f_byzantine_members_of_a_core_of_seven() -> None:
    rules = CoreRules(core_size=7, epoch_length=10**9, txn_timeout_s=3.0, tick_interval_s=0.1)
    probe = CoreNetwork(21, shard_size=7, core_size=7, seed=42, rules=rules)
    first, second = probe.genesis.members[0], probe.genesis.members[3]
    byzantine = {NodeId(first): "equivocate", NodeId(second): "withhold_votes"}
    net = CoreNetwork(21, shard_size=7, core_size=7, seed=42, rules=rules, byzantine=byzantine)
    txns = _workload(net)
    net.run_for(20.0)
    assert net.check_atomicity(txns) == _expected(net, txns)
    honest = _honest_replicas(net, {first, second})
    assert len(honest) == 5 and len({r.state.s.chain for r in honest}) == 1


def test_a_byzantine_member_cannot_get_a_decision_ordered_that_the_state_does_not_make() -> None:
    net = CoreNetwork(12, seed=43, rules=RULES)
    villain = net.genesis.members[1]
    txn = _cross(net, "victim", 1, 2)
    net.shards[2].policy[txn.txn_id] = "no"
    other = net.shards[2]
    replica = net.replica(villain)
    assert replica.inner is not None
    # 1. a decision put straight into the log: not a command at all
    replica.inner.propose(encode_decision(TxnDecision(txn.txn_id, True, "")), net.now)
    # 2. a yes vote for shard 2 "signed by its leader" with the villain's key
    data = shard_vote_bytes(txn.txn_id, 2, True, "", other.term, 99, b"digest")
    forged_signature = net.keyring.signer(NodeId(villain)).sign(data)
    proof = ShardProof(other.term, 99, b"digest", other.leader, forged_signature)
    replica.inner.propose(encode_command(ShardVote(txn.txn_id, 2, True, "", proof)), net.now)
    # 3. a yes vote signed by the villain as if it were a member of shard 2
    if villain not in other.members:
        own = ShardProof(other.term, 99, b"digest", villain, forged_signature)
        replica.inner.propose(encode_command(ShardVote(txn.txn_id, 2, True, "", own)), net.now)
    net._drive((NodeId(villain), replica.group))
    net.run_for(5.0)
    assert net.check_atomicity([txn]) == {txn.txn_id: False}
    for r in _honest_replicas(net, {villain}):
        refusals = r.state.s.refusals
        assert refusals.get("malformed command", 0) == 1
        assert refusals.get("bad leader signature on the vote", 0) == 1
        if villain not in other.members:
            assert refusals.get(f"proof signer {villain} is not a member of shard 2", 0) == 1
    net.check_agreement(0)


def test_a_partial_signature_is_not_a_certificate_and_bad_partials_do_not_block() -> None:
    pytest.importorskip("blspy")
    from quorate.hrb.core.threshold_bls import BlsSuite

    suite = BlsSuite()
    net = CoreNetwork(12, seed=44, rules=RULES, suite=suite)
    villain = NodeId(net.genesis.members[1])
    collector = NodeId(net.genesis.members[0])
    start = net.genesis.start_for(villain)
    snapshot = net.genesis.snapshot
    key = suite.epoch_key(snapshot.threshold, len(snapshot.members), snapshot.commitments)
    own = suite.partial_signer(key, start.share_index, start.share_secret)
    txn = _cross(net, "real", 1, 2)
    net.shards[2].policy[txn.txn_id] = "silent"
    forged = encode_decision(TxnDecision(txn.txn_id, True, ""))
    # the villain's own partial over a decision the core never made, sent to every shard member
    signature = own.sign(certificate_bytes(0, 2, forged))
    for shard in (1, 2):
        for member in net.shards[shard].members:
            net._send(villain, NodeId(member), shard, CoreCertificate(0, 2, forged, signature))
    # and garbage partials for the real decisions, to the collector
    for index in (1, 2, 3):
        net._send(villain, collector, net.replica(collector).group, DecisionPartial(0, index, b"\x01" * 96))
    net.run_for(6.0)
    assert net.shards[1].refused and set(net.shards[1].refused) == {"certificate does not verify with the epoch's group key"}
    # the silent shard's transaction timed out: aborted everywhere, never committed
    assert net.check_atomicity([txn]) == {txn.txn_id: False}
    assert net.shards[1].applied[txn.txn_id] is False
    # the collector refused the garbage partials and certified with the honest ones
    assert any(
        node == collector and r.sender == villain and r.message_type == "DecisionPartial" for node, _, r in net.rejections
    )


@pytest.mark.parametrize("behaviour", ["equivocate", "silent", "forge"])
def test_an_epoch_change_completes_with_a_byzantine_member_that_also_forges_the_handover(behaviour: str) -> None:
    rules = CoreRules(core_size=4, epoch_length=2, txn_timeout_s=10.0, tick_interval_s=0.1)
    probe = CoreNetwork(12, seed=45, rules=rules)
    villain = NodeId(probe.genesis.members[2])
    net = CoreNetwork(12, seed=45, rules=rules, byzantine={villain: behaviour})
    first = _cross(net, "e0", 1, 2)
    net.run_until(net.now + 10.0, until=lambda: any(
        r.state is not None and r.state.s.transition is not None for r in net.replicas(0) if r.id != villain
    ))
    transition = next(
        r.state.s.transition for r in net.replicas(0) if r.id != villain and r.state is not None and r.state.s.transition
    )
    assert transition is not None
    # the villain hands every next member a state that names a core of its choosing
    forged = net.replica(villain).state
    assert forged is not None
    snapshot = forged.successor(transition, (b"\x00" * 48,) * transition.threshold)
    snapshot.members = tuple(sorted({*snapshot.members[:-1], int(villain)}))
    for member in transition.members:
        net._send(villain, NodeId(member), CORE_GROUP_BASE + 1, CoreHandover(1, encode_snapshot(snapshot)))
    net.run_for(8.0)
    assert net.members_of.get(1) == transition.members
    started = {r.start.state for r in net.replicas(1) if r.start is not None and r.id != villain}
    assert len(started) == 1 and next(iter(started)) != encode_snapshot(snapshot)
    second = _cross(net, "e1", 2, 3)
    net.run_for(6.0)
    assert all(net.check_atomicity([first, second]).values())
