"""The core's table of a split, merge or agent move in flight
(``quorate.hrb.reshard``): begin, hand-off reports from the source shard's
members, commit or abort, and the keys in transit meanwhile."""

from __future__ import annotations

import msgspec
import pytest

from quorate.errors import ConfigError
from quorate.hrb.reshard import (
    HandoffReport,
    MergeShards,
    MoveAgents,
    ReportOutcome,
    ReshardAbort,
    ReshardBegin,
    ReshardCommit,
    ReshardRequest,
    ReshardState,
    ReshardTable,
    ShardMap,
    SplitShard,
    agent_key,
    agent_of_key,
    decode_state,
    encode_state,
    handoff_bytes,
    reshard_request_bytes,
)
from quorate.sharding import AgentMove, HashRing

KEYS = [f"k{i}" for i in range(2000)]
MEMBERS = {1: (11, 12, 13, 14), 2: (21, 22, 23, 24), 3: (31, 32, 33, 34), 4: (41, 42, 43, 44)}
NEEDED = 2  # f + 1 of a shard of four


def _map() -> ShardMap:
    return ShardMap(1, HashRing.initial([1, 2, 3], 16), (("alice", 1), ("bob", 2), ("carol", 3)))


def _request(change: object, version: int = 1) -> ReshardRequest:
    return ReshardRequest(proposer=7, based_on_version=version, change=change, signature=b"")  # type: ignore[arg-type]


def _report(
    table: ReshardTable, member: int, source: int, target: int, state: bytes = b"s", *, seq: int | None = None
) -> tuple[ReportOutcome, ReshardCommit | None]:
    pending = table.pending
    version = pending.begin.version if pending is not None else 0
    seq = (pending.begin.seq if pending is not None else 0) if seq is None else seq
    report = HandoffReport(seq, version, member, source, target, state, b"")
    return table.report(report, MEMBERS[source], NEEDED)


def _hand_off(table: ReshardTable, state: bytes = b"s") -> ReshardCommit | None:
    begin = table.pending.begin  # type: ignore[union-attr]
    decision = None
    for source, target in begin.routes:
        for member in MEMBERS[source][:NEEDED]:
            decision = _report(table, member, source, target, state)[1]
    return decision


def test_agent_keys_follow_the_agent() -> None:
    shard_map = _map()
    assert agent_of_key(agent_key("carol", "acct0")) == "carol"
    assert agent_of_key("k1") is None and agent_of_key("@/x") is None
    assert shard_map.owner(agent_key("carol", "acct0")) == 3
    assert shard_map.owner(agent_key("nobody", "x")) == shard_map.ring.owner(agent_key("nobody", "x"))


def test_a_split_begins_hands_off_and_commits_with_f_plus_one_matching_states() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    begin = table.request(_request(SplitShard(2, 4)), now=5)
    assert isinstance(begin, ReshardBegin)
    assert begin.version == 2 and begin.seq == 1 and begin.routes == ((2, 4),) and begin.deadline == 15
    moving = [k for k in KEYS if table.in_transit(k)]
    # Only shard 2's keys move, about half of them, all to shard 4.
    owned = [k for k in KEYS if table.current.owner(k) == 2]
    assert moving and all(table.current.owner(k) == 2 for k in moving)
    assert 0.3 < len(moving) / len(owned) < 0.7
    assert _report(table, 21, 2, 4) == (ReportOutcome.RECORDED, None)
    outcome, decision = _report(table, 22, 2, 4)
    assert outcome is ReportOutcome.RECORDED and isinstance(decision, ReshardCommit)
    assert decision.version == 2 == table.current.version
    assert decision.map_digest == table.current.digest()
    assert decision.transfers == ((2, 4, b"s"),)
    assert {k for k in KEYS if table.current.owner(k) == 4} == set(moving)
    assert not any(table.in_transit(k) for k in KEYS)
    table.check()


def test_one_lying_member_cannot_hand_off_a_forged_state() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    table.request(_request(SplitShard(2, 4)), now=0)
    assert _report(table, 21, 2, 4, b"forged") == (ReportOutcome.RECORDED, None)
    assert _report(table, 22, 2, 4, b"honest") == (ReportOutcome.RECORDED, None)
    _, decision = _report(table, 23, 2, 4, b"honest")
    assert isinstance(decision, ReshardCommit) and decision.transfers == ((2, 4, b"honest"),)


def test_a_merge_moves_the_absorbed_shards_agents_too() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    begin = table.request(_request(MergeShards(3, 1)), now=0)
    assert isinstance(begin, ReshardBegin)
    assert table.agent_in_transit("carol") and not table.agent_in_transit("alice")
    assert table.in_transit(agent_key("carol", "acct0"))
    assert isinstance(_hand_off(table), ReshardCommit)
    assert table.current.home("carol") == 1 and 3 not in table.current.shards()


def test_agent_moves_route_by_source_and_target() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    change = MoveAgents((AgentMove("alice", 1, 2), AgentMove("carol", 3, 2)))
    begin = table.request(_request(change), now=0)
    assert isinstance(begin, ReshardBegin) and begin.routes == ((1, 2), (3, 2))
    for member in MEMBERS[1][:NEEDED]:
        assert _report(table, member, 1, 2)[1] is None
    _report(table, 31, 3, 2)
    _, decision = _report(table, 32, 3, 2)
    assert isinstance(decision, ReshardCommit)
    assert table.current.home("alice") == 2 and table.current.home("bob") == 2
    assert table.current.owner(agent_key("alice", "inbox0")) == 2


@pytest.mark.parametrize(
    ("change", "version", "reason"),
    [
        (SplitShard(9, 4), 1, "unknown shard: 9 is not a shard of the deployment"),
        (SplitShard(1, 9), 1, "unknown shard: 9"),
        (SplitShard(1, 2), 1, "impossible: cannot split into shard 2"),
        (SplitShard(4, 1), 1, "impossible: cannot split shard 4"),
        (MergeShards(2, 2), 1, "impossible: cannot merge shard 2 into itself"),
        (MoveAgents((AgentMove("alice", 2, 3),)), 1, "impossible: agent 'alice' is not at home on shard 2"),
        (MoveAgents((AgentMove("alice", 1, 1),)), 1, "impossible: agent 'alice' cannot move to shard 1"),
        (MoveAgents((AgentMove("alice", 1, 9),)), 1, "unknown shard: 9"),
        (MoveAgents(()), 1, "impossible: a move of no agent"),
        (SplitShard(1, 4), 0, "stale: computed from map 0"),
    ],
)
def test_bad_requests_are_refused_with_a_reason_counted_and_change_nothing(
    change: object, version: int, reason: str
) -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    before = msgspec.msgpack.encode(table.state)
    outcome = table.request(_request(change, version), now=0, shards=(1, 2, 3, 4))
    assert isinstance(outcome, str) and outcome.startswith(reason), outcome
    assert table.pending is None and table.current == _map() and table.state.seq == 0
    assert sum(table.refused.values()) == 1
    assert msgspec.msgpack.encode(ReshardState(table.current, 10)) == before


def test_one_change_at_a_time() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    assert isinstance(table.request(_request(SplitShard(1, 4)), now=0), ReshardBegin)
    busy = table.request(_request(SplitShard(2, 5)), now=1)
    assert isinstance(busy, str) and busy.startswith("busy")


def test_a_missing_report_aborts_at_the_deadline_and_the_map_stays() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    table.request(_request(SplitShard(1, 4)), now=0)
    _report(table, 11, 1, 4)
    assert table.expire(9) is None
    abort = table.expire(10)
    assert isinstance(abort, ReshardAbort) and "1->4" in abort.reason and abort.seq == 1
    assert table.current == _map() and table.pending is None
    assert not any(table.in_transit(k) for k in KEYS)
    # A late report of the abandoned change changes nothing, nor counts for the next one.
    assert _report(table, 12, 1, 4, seq=1)[0] is ReportOutcome.NOT_IN_FLIGHT
    begin = table.request(_request(SplitShard(1, 4)), now=11)
    assert isinstance(begin, ReshardBegin) and begin.seq == 2 and begin.version == 2
    assert _report(table, 12, 1, 4, seq=1)[0] is ReportOutcome.NOT_IN_FLIGHT


def test_reports_are_judged() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    table.request(_request(SplitShard(1, 4)), now=0)
    assert _report(table, 11, 1, 4, seq=7)[0] is ReportOutcome.NOT_IN_FLIGHT
    assert _report(table, 11, 1, 5)[0] is ReportOutcome.NOT_ON_ROUTE
    assert _report(table, 41, 1, 4)[0] is ReportOutcome.NOT_A_MEMBER
    assert _report(table, 11, 1, 4)[0] is ReportOutcome.RECORDED
    assert _report(table, 11, 1, 4)[0] is ReportOutcome.DUPLICATE
    assert _report(table, 11, 1, 4, b"z")[0] is ReportOutcome.CONFLICT
    assert table.pending is not None and table.current.version == 1


def test_commands_decisions_and_states_cross_the_wire() -> None:
    request = _request(MoveAgents((AgentMove("bob", 2, 1),)))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(request), type=ReshardRequest) == request
    report = HandoffReport(1, 2, 11, 1, 4, b"state", b"sig")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(report), type=HandoffReport) == report
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(_map()), type=ShardMap) == _map()
    # The signed bytes name what is signed and leave the signature out.
    assert reshard_request_bytes(request) == reshard_request_bytes(ReshardRequest(7, 1, request.change, b"other"))
    assert handoff_bytes(report) != handoff_bytes(HandoffReport(1, 2, 11, 1, 4, b"other", b"sig"))
    state = encode_state([("b", "2"), ("a", "1")], 3, 1, 4)
    assert decode_state(state) == ((("a", "1"), ("b", "2")), 3, 1, 4)
    with pytest.raises(msgspec.DecodeError):
        decode_state(b"\xff")


def test_every_member_decides_alike() -> None:
    def run() -> bytes:
        table = ReshardTable(_map(), handoff_ticks=4)
        table.request(_request(SplitShard(3, 4)), now=0)
        _hand_off(table)
        table.request(_request(MergeShards(4, 1), version=2), now=5)
        table.expire(20)
        return msgspec.msgpack.encode(table.state)

    assert run() == run()


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        ReshardTable(_map(), handoff_ticks=0)


def test_a_rebalancing_proposal_is_carried_through_the_table() -> None:
    from quorate.sharding import InteractionGraph, RebalanceConfig, RebalancePolicy, repair_balance

    graph = InteractionGraph()
    for agent in ("alice", "bob", "carol", "dave", "erin", "frank"):
        graph.add_agent(agent, 1)
    homes = {"alice": 1, "bob": 1, "carol": 1, "dave": 1, "erin": 2, "frank": 3}
    shard_map = ShardMap(4, HashRing.initial([1, 2, 3], 8), tuple(sorted(homes.items())))
    policy = RebalancePolicy(
        3,
        lambda g, k: repair_balance(g, dict.fromkeys(g.agents, 1), k, 0.01),
        RebalanceConfig(trigger_cv=0.3, rearm_cv=0.1),
    )
    proposal = policy.observe(graph, homes, version=shard_map.version)
    assert proposal is not None and proposal.moves
    table = ReshardTable(shard_map, handoff_ticks=10)
    begin = table.request(_request(MoveAgents(proposal.moves), proposal.based_on_version), now=0)
    assert isinstance(begin, ReshardBegin)
    assert isinstance(_hand_off(table), ReshardCommit)
    assert table.current.version == 5
