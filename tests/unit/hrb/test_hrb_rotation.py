"""Reputation-based selection and rotation of the core at epoch changes
(docs/hrb.md sections 3 and 5), end to end on the in-memory network: over
several epochs the core rotates among the well-behaved nodes; every core is
the best-scored one its predecessor's facts allow (no eligible outsider
outscores a member, one member per shard here); a convicted node is
evicted and a node whose accusation failed is penalised, and neither is
chosen again; every member of a closing core computed the same next core."""

from __future__ import annotations

from hrb_core_net import CoreNetwork

from quorate.core.evidence import Evidence, sign_statement
from quorate.hrb.core.config import CoreRules
from quorate.hrb.core.snapshot import decode_snapshot
from quorate.hrb.messages import RemovalProposal, Transaction, removal_bytes
from quorate.hrb.reputation import score
from quorate.ids import NodeId

RULES = CoreRules(core_size=4, epoch_length=2, txn_timeout_s=10.0, tick_interval_s=0.1)


def _cross(net: CoreNetwork, tag: str, home: int, other: int) -> Transaction:
    keys = net.keys_for(home, 1, f"{tag}a") + net.keys_for(other, 1, f"{tag}b")
    txn = net.transaction(tag, home, keys)
    net.submit(txn)
    return txn


def _accuse(net: CoreNetwork, accuser: int, offender: int, *, conflicting: bool) -> None:
    signer = net.keyring.signer(NodeId(offender))
    first = sign_statement(signer, "shard.append", 7, 1, b"a")
    # Two different payloads for one slot convict; the same payload twice does not.
    second = sign_statement(signer, "shard.append", 7, 1, b"b" if conflicting else b"a")
    evidence = Evidence(first, second)
    signature = net.keyring.signer(NodeId(accuser)).sign(removal_bytes(accuser, evidence))
    net.to_core(accuser, RemovalProposal(accuser, evidence, signature))


def test_the_core_rotates_by_reputation_and_never_readmits_the_convicted_or_the_penalised() -> None:
    net = CoreNetwork(16, seed=51, rules=RULES)
    outsiders = [n for n in net.nodes if n not in net.genesis.members and all(s.leader != n for s in net.shards.values())]
    liar, convict = outsiders[0], outsiders[1]
    _accuse(net, liar, outsiders[2], conflicting=False)  # does not verify: counts against the liar
    _accuse(net, outsiders[3], convict, conflicting=True)
    net.run_for(2.0)
    txns = []
    for round_ in range(5):
        txns.append(_cross(net, f"r{round_}", 1 + round_ % 4, 1 + (round_ + 1) % 4))
        net.run_for(4.0)
    epochs = sorted(net.members_of)
    assert len(epochs) >= 4, net.members_of
    cores = [net.members_of[e] for e in epochs]
    assert len(set(cores)) >= 3, cores  # the core rotates
    for e in epochs[1:]:
        assert liar not in net.members_of[e] and convict not in net.members_of[e]
    # every core was the best the facts its predecessor handed over allowed
    for e in epochs[1:]:
        starts = {r.start.state for r in net.replicas(e) if r.start is not None}
        assert len(starts) == 1, f"epoch {e}: members started from different states"
        snapshot = decode_snapshot(next(iter(starts)))
        assert snapshot.members == net.members_of[e]
        assert snapshot.facts[convict].evicted and snapshot.facts[liar].failed_accusations == 1
        weights = snapshot.rules.weights
        scores = {n: score(snapshot.facts.get(n), weights) for n in snapshot.nodes}
        member_shards = {snapshot.nodes[m].shard for m in snapshot.members}
        assert len(member_shards) == len(snapshot.members)  # ⌈4/4⌉ = 1 per shard
        lowest = min(scores[m] for m in snapshot.members)  # type: ignore[type-var]
        for node, s in scores.items():
            if node in snapshot.members or s is None:
                continue
            shard_taken_by = [m for m in snapshot.members if snapshot.nodes[m].shard == snapshot.nodes[node].shard]
            if shard_taken_by:
                assert s <= scores[shard_taken_by[0]], (e, node, s, shard_taken_by)  # type: ignore[operator]
            else:
                assert s <= lowest, (e, node, s)
    assert all(o is not None for o in net.check_atomicity(txns).values())
    net.check_agreement(epochs[-1])
