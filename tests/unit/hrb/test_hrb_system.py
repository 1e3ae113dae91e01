"""HRB end to end: real watched-Raft shards and the real BFT core, composed by
``quorate.hrb.system`` (``docs/hrb.md`` sections 4 and 8), on the
deterministic ``SystemNet``.

- A bank across two shards: a cross-shard transfer commits in both shards,
  an overdraft aborts and is applied in neither, and the total is conserved
  (the atomicity of section 4).
- An equivocating shard leader is convicted by its followers' evidence; the
  core verifies the evidence itself (through the shard tier's checker) and
  orders the eviction; the shard removes the node from its Raft group; the
  cross-shard transactions submitted meanwhile are decided atomically.
- The pieces that join the tiers: one key -> shard map for both tiers, the
  checker refuses tampered evidence, messages for the core reach every core
  member.
"""

from __future__ import annotations

import msgspec
import pytest
from tests.unit.hrb.hrb_system_net import SystemNet

from quorate.hrb.core.evidence import NoSignedMessageChecker
from quorate.hrb.messages import (
    CORE_GROUP_BASE,
    RemovalProposal,
    SignedMessageEvidence,
    Transaction,
    TxnOp,
)
from quorate.hrb.shard.messages import CommitAnnouncement
from quorate.hrb.system import ShardEvidenceChecker, key_shard, route_to_core
from quorate.hrb.txn import involved_shards, shard_of_key
from quorate.ids import NodeId

SETTLE_S = 10.0
RETRY_ROUNDS = 6
RETRY_S = 2.0
DETECTION_S = 10.0
"""Ample time for challenges and head relays to expose a lying leader."""


def decided(net: SystemNet, txns: list[Transaction]) -> bool:
    return all(net.outcome(t) is not None for t in txns)


def settle(net: SystemNet, txns: list[Transaction], via: dict[int, list[int]]) -> None:
    """Agents re-submit what their home shard has not answered, through
    members they trust (a changed leader may have lost a request)."""
    for round_ in range(RETRY_ROUNDS):
        net.run_for(RETRY_S, until=lambda: decided(net, txns))
        missing = [t for t in txns if net.outcome(t) is None]
        if not missing:
            return
        for i, t in enumerate(missing):
            members = via[t.home_shard]
            net.submit(members[(round_ + i) % len(members)], t)


def flush(net: SystemNet, tag: str) -> None:
    """One intra-shard write per shard, so every member applies what came before it
    (a member applies an entry once a later certificate shows the quorum locked on it)."""
    for shard, members in net.deployment.shards.items():
        key = net.keys_for(shard, 1, f"flush-{tag}-")[0]
        t = net.transaction(f"flush-{tag}-{shard}", shard, [TxnOp(key, "put", "x")], client=900 + shard)
        honest = [m for m in members if NodeId(m) not in net.byzantine]
        net.submit(honest[0], t)
        net.run_for(SETTLE_S, until=lambda t=t: net.outcome(t) is not None)  # type: ignore[misc]
    net.run_for(1.0)


def balances(net: SystemNet, keys: list[str]) -> list[set[str | None]]:
    """Per key: the set of values its shard's honest members hold."""
    out = []
    for key in keys:
        shard = shard_of_key(key, len(net.deployment.shards))
        out.append({r.store.get(key) for r in net.honest_shard(shard)})
    return out


# ------------------------------------------------------------ atomic commit and abort
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_cross_shard_transfer_commits_in_both_shards_and_an_overdraft_in_neither(seed: int) -> None:
    net = SystemNet(seed=seed)
    net.run_for(3.0)
    a = net.keys_for(1, 1, "acct")[0]
    b = net.keys_for(2, 1, "acct")[0]
    assert involved_shards(Transaction(b"x" * 16, 0, 0, 1, (TxnOp(a, "get"), TxnOp(b, "get"))), 2) == (1, 2)
    opening = net.transaction("open", 1, [TxnOp(a, "put", "100"), TxnOp(b, "put", "5")], client=1, seq=1)
    transfer = net.transaction("pay", 2, [TxnOp(a, "add", delta=-30, minimum=0), TxnOp(b, "add", delta=30)], client=2, seq=1)
    overdraft = net.transaction(
        "overdraw", 1, [TxnOp(a, "add", delta=-500, minimum=0), TxnOp(b, "add", delta=500)], client=1, seq=2
    )
    via = {k: list(m) for k, m in net.deployment.shards.items()}
    for t in (opening, transfer, overdraft):
        net.submit(via[t.home_shard][0], t)
        settle(net, [t], via)
    outcomes = [net.outcome(t) for t in (opening, transfer, overdraft)]
    where = f"reproduce with seed={seed}"
    assert [o.committed if o else None for o in outcomes] == [True, True, False], where
    assert outcomes[2] is not None and "voted no" in outcomes[2].reason
    flush(net, "end")
    # Applied in both shards (commit) or neither (abort), identically on every member.
    assert balances(net, [a, b]) == [{"70"}, {"35"}], where
    for shard in net.deployment.shards:
        for r in net.honest_shard(shard):
            assert not r.store.locks and not r.store.prepared and not r.violations, where
        assert net.monitors[shard].checks > 0
    for core in net.core():
        core.check()
        assert core.state is not None and core.state.s.decisions >= 6  # 3 begins, 3 decisions
        assert not core.state.txns.open


# ------------------------------------------------------------ eviction on evidence
def first_outside_the_core(seed: int) -> NodeId:
    """The lowest node of ``seed``'s deployment that is not a core member
    (evicting a core member changes the core's epoch, which this harness does
    not host)."""
    layout = SystemNet(seed=seed).deployment
    return NodeId(min(n for ms in layout.shards.values() for n in ms if n not in layout.core_members))


@pytest.mark.parametrize("seed", [1, 2, 4])
@pytest.mark.parametrize(("behaviour", "kind"), [("equivocating-leader", "equivocation"), ("forging-leader", "forged_commit")])
def test_a_lying_shard_leader_is_convicted_evicted_by_the_core_and_removed_from_its_shard(
    behaviour: str, kind: str, seed: int
) -> None:
    """Equivocation arrives as two conflicting signed statements (the core
    checks them alone); a forged commit as one signed announcement, which the
    core judges through the shard tier's checker."""
    offender = first_outside_the_core(seed)
    net = SystemNet(seed=seed, byzantine={offender: behaviour})
    shard = net.deployment.shard_of(offender)
    net.run_for(0.05)
    net.campaign(offender)
    net.run_for(1.0)
    assert net.shard_replica(offender).is_leader, "the offender must lead its shard first"
    keys = net.keys_for(shard, 3, "acct")
    other = 3 - shard
    b = net.keys_for(other, 1, "acct")[0]
    honest = [m for m in net.deployment.shards[shard] if m != offender]
    txns = [
        net.transaction(f"t{i}", shard, [TxnOp(keys[i], "put", "100"), TxnOp(b, "add", delta=1)], client=10 + i, seq=1)
        for i in range(3)
    ]
    for i, t in enumerate(txns):
        net.submit(honest[i % len(honest)], t)  # agents reach followers, which forward and watch
        net.run_for(0.3)
    settle(net, txns, {shard: honest, other: list(net.deployment.shards[other])})
    # The followers cross-check signed heads every challenge interval: the
    # half the offender lied to may find out only then (the other half and
    # the leader can commit without it).
    net.run_for(
        DETECTION_S,
        until=lambda: all(offender in r.store.evicted and offender not in r.raft.members for r in net.honest_shard(shard)),
    )
    # Detected in the shard, with evidence sent to the core ...
    for r in net.honest_shard(shard):
        assert offender in r.convicted
        assert any(who == offender and found == kind for who, found, _, _ in r.detections)
    # ... which every core member verified and acted on: evicted, out of the shard's group.
    for core in net.core():
        assert core.state is not None and offender in core.state.evicted
        assert offender not in core.state.shard_members(shard)
    for r in net.honest_shard(shard):
        assert offender in r.store.evicted
        assert offender not in r.raft.members
        assert r.raft.leader_id != offender
    # The transactions submitted meanwhile: decided, and applied atomically.
    outcomes = [net.outcome(t) for t in txns]
    assert all(o is not None for o in outcomes), outcomes
    flush(net, "end")
    committed = [t for t, o in zip(txns, outcomes, strict=True) if o is not None and o.committed]
    assert committed, "no cross-shard transaction committed after the deposition"
    for t, o in zip(txns, outcomes, strict=True):
        assert o is not None
        assert balances(net, [t.ops[0].key]) == [{"100" if o.committed else None}]
    assert balances(net, [b]) == [{str(len(committed))}]
    assert all(not r.violations for k in net.deployment.shards for r in net.honest_shard(k))


# ------------------------------------------------------------ the joints
def test_the_shards_and_the_core_map_keys_to_the_same_shards() -> None:
    owner = key_shard(3)
    for i in range(200):
        key = f"k{i}"
        assert owner(key) == shard_of_key(key, 3)
    with pytest.raises(ValueError):
        key_shard(0)


def test_messages_for_the_core_go_to_every_member_of_the_epoch_the_shard_knows() -> None:
    net = SystemNet(seed=4)
    store = net.shard_replica(1).store
    proposal = RemovalProposal(1, SignedMessageEvidence("equivocation", 2, 1, b""), b"")
    routed = route_to_core([proposal], store)
    assert sorted(to for to, _, _ in routed) == sorted(net.deployment.core_members)
    assert {group for _, group, _ in routed} == {CORE_GROUP_BASE}


def test_the_checker_convicts_real_evidence_and_refuses_tampered_evidence() -> None:
    net = SystemNet(seed=1, byzantine={1: "forging-leader"})
    captured: list[RemovalProposal] = []
    send = net._send

    def spy(src: NodeId, dst: NodeId, group: int, message: object) -> None:
        if isinstance(message, RemovalProposal):
            captured.append(message)
        send(src, dst, group, message)

    net._send = spy  # type: ignore[method-assign]
    net.run_for(0.05)
    net.campaign(1)
    net.run_for(1.0)
    keys = net.keys_for(1, 3, "acct")
    for i, key in enumerate(keys):
        net.submit((2, 5, 7)[i], net.transaction(f"c{i}", 1, [TxnOp(key, "put", "v")], client=20 + i))
        net.run_for(0.3)
    net.run_for(3.0, until=lambda: bool(captured))
    assert captured, "the followers must send the core their evidence"
    evidence = captured[0].evidence
    checker = net.deployment.checker()
    members = net.deployment.shards[1]
    verifier = net.keyring.verifier(NodeId(3))
    assert isinstance(evidence, SignedMessageEvidence) and evidence.kind == "forged_commit"
    assert checker(evidence, members, "byzantine", verifier) is True
    blamed = msgspec.structs.replace(evidence, signer=2)  # blame an honest member
    assert checker(blamed, members, "byzantine", verifier) is False
    announcement = msgspec.msgpack.decode(evidence.message, type=CommitAnnouncement)
    resigned = msgspec.structs.replace(announcement, signature=bytes(len(announcement.signature)))
    unsigned = msgspec.structs.replace(evidence, message=msgspec.msgpack.encode(resigned))
    assert checker(unsigned, members, "byzantine", verifier) is False
    assert checker(msgspec.structs.replace(evidence, shard=9), members, "byzantine", verifier) is False
    assert checker(msgspec.structs.replace(evidence, kind="gossip"), members, "byzantine", verifier) is None
    # A core without the shard tier's checker cannot judge it at all.
    assert NoSignedMessageChecker()(evidence, members, "byzantine", verifier) is None


def test_the_checker_refuses_malformed_evidence_without_raising() -> None:
    checker = ShardEvidenceChecker(2)
    net = SystemNet(seed=1)
    verifier = net.keyring.verifier(NodeId(1))
    for message in (b"", b"\xff\x00", msgspec.msgpack.encode([1, 2, 3])):
        for kind in ("equivocation", "forged_commit", "invalid_entry"):
            assert checker(SignedMessageEvidence(kind, 1, 1, message), (1, 2, 5, 7), "byzantine", verifier) is False


def test_seed_16_a_shard_elects_a_leader_after_deposing_an_equivocator() -> None:
    """Seed 16 once left shard (1, 2, 6, 7) without a leader: the member the
    equivocator lied to (7) held a longer log but a lower lock than 2 and 6,
    so each side refused the other's candidates. Core timing has changed
    since, so this seed may no longer build that state;
    ``test_shard_byzantine_leaders`` builds it deterministically."""
    test_a_lying_shard_leader_is_convicted_evicted_by_the_core_and_removed_from_its_shard(
        "equivocating-leader", "equivocation", 16
    )
