"""The core's table of a split, merge or agent move in flight: begin,
hand-off reports, commit or abort, and the keys in transit meanwhile."""

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
    ReshardTable,
    ShardMap,
    SplitShard,
    handoff_bytes,
    reshard_request_bytes,
)
from quorate.sharding import AgentMove, HashRing

KEYS = [f"k{i}" for i in range(2000)]


def _map() -> ShardMap:
    return ShardMap(1, HashRing.initial([1, 2, 3], 16), (("alice", 1), ("bob", 2), ("carol", 3)))


def _request(change: object, version: int = 1) -> ReshardRequest:
    return ReshardRequest(proposer=7, based_on_version=version, change=change, signature=b"")  # type: ignore[arg-type]


def _report(version: int, shard: int, source: int, target: int, role: str, digest: bytes = b"d") -> HandoffReport:
    return HandoffReport(version, shard, shard * 10, source, target, role, digest, b"")


def test_a_split_begins_hands_off_and_commits() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    begin = table.request(_request(SplitShard(2, 4)), now=5)
    assert isinstance(begin, ReshardBegin)
    assert begin.version == 2 and begin.routes == ((2, 4),) and begin.deadline == 15
    moving = [k for k in KEYS if table.in_transit(k)]
    # Exactly half of shard 2's ring is in transit, and only shard 2's keys.
    assert moving and all(table.current.owner(k) == 2 for k in moving)
    assert table.report(_report(2, 2, 2, 4, "frozen")) == (ReportOutcome.RECORDED, None)
    outcome, decision = table.report(_report(2, 4, 2, 4, "installed"))
    assert outcome is ReportOutcome.RECORDED and isinstance(decision, ReshardCommit)
    assert decision.version == 2 == table.current.version
    assert decision.map_digest == table.current.digest()
    assert {k for k in KEYS if table.current.owner(k) == 4} == set(moving)
    assert not any(table.in_transit(k) for k in KEYS)
    table.check()


def test_a_merge_moves_the_absorbed_shards_agents_too() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    begin = table.request(_request(MergeShards(3, 1)), now=0)
    assert isinstance(begin, ReshardBegin)
    assert table.agent_in_transit("carol") and not table.agent_in_transit("alice")
    table.report(_report(2, 3, 3, 1, "frozen"))
    _, decision = table.report(_report(2, 1, 3, 1, "installed"))
    assert isinstance(decision, ReshardCommit)
    assert table.current.home("carol") == 1 and 3 not in table.current.ring.shards()


def test_agent_moves_route_by_source_and_target() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    change = MoveAgents((AgentMove("alice", 1, 2), AgentMove("carol", 3, 2)))
    begin = table.request(_request(change), now=0)
    assert isinstance(begin, ReshardBegin) and begin.routes == ((1, 2), (3, 2))
    for source in (1, 3):
        table.report(_report(2, source, source, 2, "frozen"))
    assert table.report(_report(2, 2, 1, 2, "installed"))[1] is None
    _, decision = table.report(_report(2, 2, 3, 2, "installed"))
    assert isinstance(decision, ReshardCommit)
    assert table.current.home("alice") == 2 and table.current.home("bob") == 2


@pytest.mark.parametrize(
    ("change", "version", "reason"),
    [
        (SplitShard(9, 4), 1, "impossible: cannot split shard 9"),
        (SplitShard(1, 2), 1, "impossible: cannot split into shard 2"),
        (MergeShards(2, 2), 1, "impossible: cannot merge shard 2 into itself"),
        (MoveAgents((AgentMove("alice", 2, 3),)), 1, "impossible: agent 'alice' is not at home on shard 2"),
        (MoveAgents((AgentMove("alice", 1, 9),)), 1, "impossible: agent 'alice' cannot move to shard 9"),
        (MoveAgents(()), 1, "impossible: a move of no agent"),
        (SplitShard(1, 4), 0, "stale: computed from map 0"),
    ],
)
def test_bad_requests_are_refused_with_a_reason_and_counted(change: object, version: int, reason: str) -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    outcome = table.request(_request(change, version), now=0)
    assert isinstance(outcome, str) and outcome.startswith(reason), outcome
    assert table.pending is None and table.current == _map()
    assert sum(table.refused.values()) == 1


def test_one_change_at_a_time() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    assert isinstance(table.request(_request(SplitShard(1, 4)), now=0), ReshardBegin)
    busy = table.request(_request(SplitShard(2, 5)), now=1)
    assert isinstance(busy, str) and busy.startswith("busy")


def test_a_missing_report_aborts_at_the_deadline_and_the_map_stays() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    table.request(_request(SplitShard(1, 4)), now=0)
    table.report(_report(2, 1, 1, 4, "frozen"))
    assert table.expire(9) is None
    abort = table.expire(10)
    assert isinstance(abort, ReshardAbort) and "installed 1->4" in abort.reason
    assert table.current == _map() and table.pending is None
    assert not any(table.in_transit(k) for k in KEYS)
    # A late report after the abort changes nothing.
    assert table.report(_report(2, 4, 1, 4, "installed"))[0] is ReportOutcome.NOT_IN_FLIGHT


def test_different_digests_abort() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    table.request(_request(SplitShard(1, 4)), now=0)
    table.report(_report(2, 1, 1, 4, "frozen", b"x"))
    _, decision = table.report(_report(2, 4, 1, 4, "installed", b"y"))
    assert isinstance(decision, ReshardAbort) and "differs" in decision.reason
    assert table.current.version == 1


def test_reports_are_judged() -> None:
    table = ReshardTable(_map(), handoff_ticks=10)
    table.request(_request(SplitShard(1, 4)), now=0)
    assert table.report(_report(3, 1, 1, 4, "frozen"))[0] is ReportOutcome.NOT_IN_FLIGHT
    assert table.report(_report(2, 1, 1, 5, "frozen"))[0] is ReportOutcome.NOT_ON_ROUTE
    assert table.report(_report(2, 4, 1, 4, "frozen"))[0] is ReportOutcome.WRONG_SHARD
    assert table.report(_report(2, 1, 1, 4, "thawed"))[0] is ReportOutcome.BAD_ROLE
    assert table.report(_report(2, 1, 1, 4, "frozen"))[0] is ReportOutcome.RECORDED
    assert table.report(_report(2, 1, 1, 4, "frozen"))[0] is ReportOutcome.DUPLICATE
    assert table.report(_report(2, 1, 1, 4, "frozen", b"z"))[0] is ReportOutcome.CONFLICT
    assert table.pending is not None and table.current.version == 1


def test_commands_and_decisions_cross_the_wire() -> None:
    request = _request(MoveAgents((AgentMove("bob", 2, 1),)))
    encoded = msgspec.msgpack.encode(request)
    assert msgspec.msgpack.decode(encoded, type=ReshardRequest) == request
    report = _report(2, 1, 1, 4, "frozen")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(report), type=HandoffReport) == report
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(_map()), type=ShardMap) == _map()
    # The signed bytes name what is signed and leave the signature out.
    assert reshard_request_bytes(request) == reshard_request_bytes(
        ReshardRequest(7, 1, request.change, b"other signature")
    )
    assert handoff_bytes(report) != handoff_bytes(_report(2, 1, 1, 4, "frozen", b"other"))


def test_every_member_decides_alike() -> None:
    def run() -> bytes:
        table = ReshardTable(_map(), handoff_ticks=4)
        table.request(_request(SplitShard(3, 4)), now=0)
        table.report(_report(2, 3, 3, 4, "frozen"))
        table.report(_report(2, 4, 3, 4, "installed"))
        table.request(_request(MergeShards(4, 1), version=2), now=5)
        table.expire(20)
        return table.current.digest()

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
    decision = None
    for source, target in begin.routes:
        table.report(_report(5, source, source, target, "frozen"))
        decision = table.report(_report(5, target, source, target, "installed"))[1]
    assert isinstance(decision, ReshardCommit)
    assert dict(table.current.homes) == dict(proposal.placement)
