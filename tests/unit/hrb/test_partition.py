"""Partition detection and degraded mode (``quorate.hrb.partition``): the
decisions as tables, the detector, the evidence hold, and the desk and
member hooks on fakes. Reference: docs/hrb.md section 12; issue 13
"Partitions"."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from quorate.core.evidence import Evidence, SignedStatement
from quorate.errors import ConfigError
from quorate.hrb.core.commands import CertificateRequest
from quorate.hrb.messages import CORE_GROUP_BASE, RemovalProposal, Transaction, TxnOp
from quorate.hrb.partition import (
    EvidenceHold,
    PartitionConfig,
    PartitionDesk,
    PartitionMember,
    PartitionWatch,
    ReachabilityDetector,
    ShardUnavailable,
    ShardView,
    StaleRead,
    StaleValue,
    TxnWaiting,
    WatchHeartbeat,
    core_side,
    cross_shard_decision,
    quorum_needed,
    read_decision,
    shard_side,
    write_decision,
)
from quorate.hrb.shard.proofs import FollowerMajorityQuorum
from quorate.hrb.txn import shard_of_key
from quorate.ids import NodeId
from quorate.raft.hooks import ByzantineQuorum
from quorate.swim.membership import ReachabilityReport

# ---------------------------------------------------------------- quorum sizes
QUORUMS = [
    # (members, mode, needed)
    (4, "byzantine", 3),
    (5, "byzantine", 4),
    (7, "byzantine", 5),
    (10, "byzantine", 7),
    (3, "majority", 3),
    (4, "majority", 3),
    (5, "majority", 4),
    (6, "majority", 4),
]


@pytest.mark.parametrize(("members", "mode", "needed"), QUORUMS)
def test_quorum_needed_is_the_shards_own_rule(members: int, mode: str, needed: int) -> None:
    assert quorum_needed(members, mode) == needed
    rule: Any = ByzantineQuorum() if mode == "byzantine" else FollowerMajorityQuorum()
    assert needed == max(rule.commit_quorum(members), rule.election_quorum(members))


def test_a_shard_split_in_halves_has_no_side_that_serves() -> None:
    for n in range(4, 12):
        for mode in ("byzantine", "majority"):
            assert quorum_needed(n, mode) > (n + 1) // 2


@pytest.mark.parametrize(("members", "mode"), [(0, "byzantine"), (4, "quorum"), (4, "")])
def test_quorum_needed_refuses_nonsense(members: int, mode: str) -> None:
    with pytest.raises(ConfigError):
        quorum_needed(members, mode)


# ---------------------------------------------------------------- degraded-mode decisions
SHARD = (1, 2, 3, 4)
CORE = (1, 5, 9, 13)


@pytest.mark.parametrize(
    ("reachable", "serves"),
    [({1, 2, 3, 4}, True), ({1, 2, 3}, True), ({1, 2}, False), ({3}, False), (set(), False)],
)
def test_writes_need_the_shards_quorum_on_this_side(reachable: set[int], serves: bool) -> None:
    decision = write_decision(shard_side(reachable, SHARD, "byzantine"))
    assert decision.serve is serves
    assert decision.status == ("serve" if serves else "minority")
    if not serves:
        assert f"{len(reachable)} of 4 shard members, 3 needed" in decision.reason


READS = [
    # (reachable, linearizable, staleness_s, request bound, member bound) -> (serve, status, staleness)
    ({1, 2, 3}, True, 0.0, 5.0, 10.0, True, "serve", None),
    ({1, 2}, True, 0.0, 5.0, 10.0, False, "minority", None),
    ({1, 2, 3}, False, 0.0, 5.0, 10.0, True, "stale", 0.0),
    ({1, 2}, False, 3.0, 5.0, 10.0, True, "stale", 3.0),
    ({1, 2}, False, 6.0, 5.0, 10.0, False, "too-stale", 6.0),
    ({1, 2}, False, 6.0, 30.0, 4.0, False, "too-stale", 6.0),
    ({1}, False, float("inf"), 30.0, 10.0, False, "too-stale", float("inf")),
]


@pytest.mark.parametrize(("reachable", "linear", "stale_s", "asked_s", "bound_s", "serve", "status", "shown"), READS)
def test_reads(
    reachable: set[int], linear: bool, stale_s: float, asked_s: float, bound_s: float, serve: bool, status: str, shown: Any
) -> None:
    decision = read_decision(
        shard_side(reachable, SHARD, "byzantine"),
        linearizable=linear,
        staleness_s=stale_s,
        max_staleness_s=asked_s,
        bound_s=bound_s,
    )
    assert (decision.serve, decision.status, decision.staleness_s) == (serve, status, shown)


def test_cross_shard_waits_for_the_core_then_for_each_shard() -> None:
    involved = {1: SHARD, 2: (5, 6, 7, 8)}
    everyone = set(range(1, 17))
    assert cross_shard_decision(everyone, involved, CORE, "byzantine").status == "serve"
    no_core = cross_shard_decision({1, 2, 3, 4, 5, 6, 7, 8}, involved, CORE, "byzantine")
    assert (no_core.serve, no_core.status) == (True, "waiting")
    assert no_core.reason.startswith("core quorum unreachable (2 of 4, 3 needed)")
    no_shard = cross_shard_decision(everyone - {6, 7}, involved, CORE, "byzantine")
    assert no_shard.status == "waiting" and no_shard.reason.startswith("shard 2 unreachable (2 of 4")
    assert core_side({1, 5, 9}, CORE).has_quorum and not core_side({1, 5}, CORE).has_quorum


# ---------------------------------------------------------------- detection
def test_direct_contact_times_out() -> None:
    detector = ReachabilityDetector(1, PartitionConfig(), now=0.0)
    detector.heard(2, 1.0)
    assert detector.reachable(1.5) == {1, 2}
    assert detector.reachable(2.0) == {1, 2}  # exactly the timeout: still heard
    assert detector.reachable(2.01) == {1}


def test_swim_reports_count_except_suspects_lost_and_watched_peers() -> None:
    detector = ReachabilityDetector(1, PartitionConfig(), now=0.0)
    report = ReachabilityReport(
        reachable=frozenset(NodeId(n) for n in (1, 2, 3, 4, 5)), lost=frozenset({NodeId(6)}), regained=frozenset(), since=0.0
    )
    detector.swim_report(report, suspected=[3], now=5.0)
    assert detector.reachable(5.0) == {1, 2, 4, 5}
    detector.watch([4, 5], now=5.0)
    assert detector.reachable(5.5) == {1, 2, 4, 5}  # watched peers start with one timeout of credit
    assert detector.reachable(6.5) == {1, 2}  # ... then only their heartbeats count, not SWIM's word
    detector.heard(5, 6.5)
    assert detector.reachable(7.0) == {1, 2, 5}


def test_config_is_validated() -> None:
    PartitionConfig().validate()
    with pytest.raises(ConfigError, match="heartbeat_interval_s"):
        PartitionConfig(heartbeat_interval_s=2.0, heartbeat_timeout_s=1.0).validate()
    with pytest.raises(ConfigError, match="stale_read_bound_s"):
        PartitionConfig(stale_read_bound_s=0.0).validate()


def _run(watches: dict[int, PartitionWatch], until: float, cut: set[tuple[int, int]], start: float = 0.0) -> None:
    """Deliver every watch's messages at once, every 50 ms, except over ``cut`` links."""
    t = start
    while t <= until:
        for w in watches.values():
            w.tick(t)
        for _ in range(5):
            moved = False
            for src, w in watches.items():
                ready = w.ready()
                w.advance(ready)
                for to, message in ready.messages:
                    if (src, int(to)) not in cut and int(to) in watches:
                        watches[int(to)].step(NodeId(src), message, t)
                        moved = True
            if not moved:
                break
        t = round(t + 0.05, 6)


def test_watches_see_a_cut_and_its_heal() -> None:
    nodes = [1, 2, 3, 4]
    config = PartitionConfig()
    watches = {
        n: PartitionWatch(NodeId(n), nodes, config=config, rng=random.Random(n), now=0.0, watched=lambda: (1, 2, 3, 4))
        for n in nodes
    }
    _run(watches, 2.0, set())
    assert all(w.informed and w.reachable(2.0) == {1, 2, 3, 4} for w in watches.values())
    cut = {(a, b) for a in (1, 2) for b in (3, 4)} | {(b, a) for a in (1, 2) for b in (3, 4)}
    _run(watches, 4.0, cut, start=2.05)
    assert watches[1].reachable(4.0) == {1, 2}
    assert watches[4].reachable(4.0) == {3, 4}
    assert watches[1].shard_side(1, nodes, "byzantine", 4.0).has_quorum is False
    _run(watches, 5.0, set(), start=4.05)
    assert all(w.reachable(5.0) == {1, 2, 3, 4} for w in watches.values())


def test_an_unwatched_sender_gets_a_heartbeat_back() -> None:
    watch = PartitionWatch(NodeId(2), [1, 2], config=PartitionConfig(), rng=random.Random(0), now=0.0)
    watch.step(NodeId(1), WatchHeartbeat(7), 0.1)
    replies = [(int(to), m) for to, m in watch.ready().messages if isinstance(m, WatchHeartbeat)]
    assert replies == [(1, WatchHeartbeat(7, reply=True))]
    watch.step(NodeId(1), WatchHeartbeat(8, reply=True), 0.2)
    assert not [m for _, m in watch.ready().messages if isinstance(m, WatchHeartbeat)]


# ---------------------------------------------------------------- reconciliation: evidence
def _proposal(accuser: int) -> RemovalProposal:
    evidence = Evidence(SignedStatement(9, "append", 3, 1, b"a", b"s"), SignedStatement(9, "append", 3, 1, b"b", b"t"))
    return RemovalProposal(accuser, evidence, b"sig%d" % accuser)


def test_evidence_sent_into_an_outage_goes_again_once() -> None:
    hold = EvidenceHold(grace_s=1.0)
    before, during = _proposal(1), _proposal(2)
    assert hold.update(True, 0.0) == []
    hold.sent(before, 0.5)  # the cut may already have swallowed it
    assert hold.update(False, 1.0) == []
    hold.sent(during, 2.0)
    hold.sent(during, 2.1)  # the same proposal twice is held once
    assert hold.update(False, 3.0) == []
    assert hold.update(True, 4.0) == [before, during]
    assert hold.update(True, 5.0) == []
    assert hold.resent == 2


def test_evidence_sent_while_the_core_stays_reachable_is_forgotten() -> None:
    hold = EvidenceHold(grace_s=1.0)
    hold.update(True, 0.0)
    hold.sent(_proposal(1), 0.1)
    assert hold.update(True, 2.0) == []
    hold.update(False, 3.0)
    assert hold.update(True, 4.0) == []


# ---------------------------------------------------------------- the desk and the member, on fakes
@dataclass
class FakeWatch:
    reach: frozenset[int]
    stale_s: float = 0.0
    informed: bool = True
    now: float = 0.0

    def reachable(self, now: float) -> frozenset[int]:
        return self.reach

    def shard_side(self, shard: int, members: Any, mode: str, now: float) -> Any:
        return shard_side(self.reach, members, mode)

    def staleness_s(self, shard: int, now: float) -> float:
        return self.stale_s


@dataclass
class FakeStore:
    data: dict[str, str] = field(default_factory=dict)
    applied_index: int = 7
    prepared: dict[bytes, Any] = field(default_factory=dict)
    epoch: int = 0
    evicted: set[int] = field(default_factory=set)
    handoff: Any = None

    def epoch_members(self) -> tuple[int, ...]:
        return CORE


class FakeReplica:
    def __init__(self) -> None:
        self.proposed: list[bytes] = []
        self.core_messages: list[Any] = []

    def propose(self, command: bytes, now: float) -> Any:
        self.proposed.append(command)
        return None

    def take_results(self) -> list[Any]:
        return []

    def take_core_messages(self) -> list[Any]:
        out, self.core_messages = self.core_messages, []
        return out


SHARDS = {1: SHARD, 2: (5, 6, 7, 8), 3: (9, 10, 11, 12), 4: (13, 14, 15, 16)}


def _desk(reach: set[int], stale_s: float = 0.0) -> tuple[PartitionDesk, FakeReplica, FakeWatch]:
    watch = FakeWatch(frozenset(reach), stale_s)
    view = ShardView(1, SHARDS, "byzantine", lambda: watch, lambda: CORE, PartitionConfig())  # type: ignore[arg-type,return-value]
    replica = FakeReplica()
    member = PartitionMember(replica, FakeStore(data={"k": "v"}), view)
    return PartitionDesk(member, view), replica, watch


def _key_of(shard: int) -> str:
    return next(f"key{i}" for i in range(1000) if shard_of_key(f"key{i}", len(SHARDS)) == shard)


def _txn(*shards: int) -> Transaction:
    return Transaction(b"t" * 16, 1, 1, 1, tuple(TxnOp(_key_of(k), "put", "x") for k in shards))


def test_a_minority_member_refuses_at_once_and_proposes_nothing() -> None:
    desk, replica, _ = _desk({1, 2})
    desk.on_client_request(NodeId(100), _txn(1), 1.0)
    assert replica.proposed == []
    [(to, reply)] = desk.take_replies()
    assert to == 100 and isinstance(reply, ShardUnavailable) and reply.status == "minority"


def test_a_majority_member_serves_and_tells_a_waiting_cross_shard_transaction_why() -> None:
    desk, replica, _ = _desk({1, 2, 3, 4, 5, 6, 7, 8})  # the core's 9 and 13 are out of reach
    desk.on_client_request(NodeId(100), _txn(1), 1.0)
    assert len(replica.proposed) == 1 and desk.take_replies() == []
    desk.on_client_request(NodeId(100), _txn(1, 2), 1.0)
    assert len(replica.proposed) == 2
    [(_, reply)] = desk.take_replies()
    assert isinstance(reply, TxnWaiting) and reply.reason.startswith("core quorum unreachable")


def test_stale_reads_on_a_minority_carry_their_staleness_or_are_refused() -> None:
    desk, _, watch = _desk({1, 2}, stale_s=2.5)
    desk.on_client_request(NodeId(100), StaleRead(b"r1", "k", 5.0), 1.0)
    [(_, value)] = desk.take_replies()
    assert value == StaleValue(b"r1", "k", "v", 7, 2.5)
    watch.stale_s = 8.0
    desk.on_client_request(NodeId(100), StaleRead(b"r2", "k", 5.0), 1.0)
    [(_, refused)] = desk.take_replies()
    assert isinstance(refused, ShardUnavailable) and refused.status == "too-stale"


def test_evicted_members_do_not_count_towards_the_shards_quorum() -> None:
    desk, replica, _ = _desk({1, 2})
    desk.on_client_request(NodeId(100), _txn(1), 1.0)
    assert replica.proposed == []  # 2 of 4, 3 needed
    desk.partition_member.store.evicted.update({3, 4})
    desk.on_client_request(NodeId(100), _txn(1), 1.0)
    assert len(replica.proposed) == 1  # 2 of the 2 voters left


def test_no_judgement_before_the_watch_has_a_view() -> None:
    desk, replica, watch = _desk({1})
    watch.informed = False
    desk.on_client_request(NodeId(100), _txn(1), 1.0)
    assert len(replica.proposed) == 1


def test_a_member_asks_the_core_for_certificates_of_long_prepared_transactions() -> None:
    desk, _, watch = _desk(set(range(1, 17)))
    member = desk.partition_member
    member.store.prepared[b"p" * 16] = object()
    watch.now = 1.0
    assert member.take_outbound() == []
    watch.now = 3.9
    assert member.take_outbound() == []
    watch.now = 4.0
    asked = member.take_outbound()
    assert asked == [(NodeId(m), CORE_GROUP_BASE, CertificateRequest(0, b"p" * 16)) for m in CORE]
    watch.now = 5.0
    assert member.take_outbound() == []  # asked again only after another wait
    del member.store.prepared[b"p" * 16]
    watch.now = 9.0
    assert member.take_outbound() == []


def test_a_member_sends_its_evidence_again_when_the_core_is_back() -> None:
    desk, replica, watch = _desk(set(range(1, 17)))
    member = desk.partition_member
    proposal = _proposal(1)
    watch.now = 1.0
    assert member.take_outbound() == []
    watch.reach = frozenset({1, 2, 3, 4})  # the core (1, 5, 9, 13) is cut off: 1 of 4
    watch.now = 2.0
    replica.core_messages.append(proposal)
    sent = member.take_outbound()
    assert [m for _, _, m in sent] == [proposal] * len(CORE)  # sent into the cut
    watch.now = 3.0
    assert member.take_outbound() == []
    watch.reach = frozenset(range(1, 17))
    watch.now = 4.0
    again = member.take_outbound()
    assert [(int(to), m) for to, _, m in again] == [(m, proposal) for m in CORE]
    watch.now = 5.0
    assert member.take_outbound() == []
    assert member.hold.resent == 1
