"""Flexible quorums (Howard, Malkhi & Spiegelman 2016) in Raft: an election
quorum Q1 and a commit quorum Q2 with Q1 + Q2 > n, set at start or changed
through consensus like the voters."""

from __future__ import annotations

import random

import pytest
from tests.unit.raft.network import Network

from quorate.core.protocol import Accepted, Refused
from quorate.errors import ConfigError, InvariantViolation
from quorate.ids import NodeId
from quorate.raft import (
    RULE_QUORUM,
    ConfChange,
    ConfChangeKind,
    FlexibleQuorum,
    RaftConfig,
    RaftNode,
    decode_conf_state,
    encode_conf_state,
)

N = NodeId


def _flexible(election: int, commit: int, voters: int = 5) -> Network:
    net = Network(
        range(1, voters + 1), node_options=lambda node: {"quorum": FlexibleQuorum(election, commit)}
    )
    net.elect(1)
    net.deliver()
    return net


def test_a_small_commit_quorum_commits_with_fewer_acknowledgements() -> None:
    net = _flexible(election=4, commit=2)
    leader = net.node(1)
    assert leader.is_leader and (leader.election_quorum, leader.commit_quorum) == (4, 2)
    for nid in (3, 4, 5):
        net.isolate(nid)
    net.propose(1, b"two-copies")
    net.deliver()
    assert leader.commit_index == leader.last_index  # the leader and node 2
    # Reference: Howard et al. 2016, §3 (replication quorum Q2)


def test_a_large_election_quorum_needs_that_many_votes() -> None:
    net = _flexible(election=4, commit=2)
    net.crash(1)
    net.crash(5)
    net.advance(8.0)
    assert net.leader() is None  # 3 live voters < Q1 = 4
    net.restart(5)
    net.advance(8.0)
    leader = net.leader()
    assert leader is not None and leader.id != 1
    # Reference: Howard et al. 2016, §3 (leader election quorum Q1)


def test_a_rule_whose_quorums_do_not_intersect_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="intersect"):
        RaftNode(
            N(1),
            [N(i) for i in range(1, 6)],
            config=RaftConfig(),
            rng=random.Random(0),
            now=0.0,
            quorum=FlexibleQuorum(2, 3),
        )


def _change_quorum(net: Network, quorum: tuple[int, int], **kwargs: object) -> object:
    leader = net.leader()
    assert leader is not None
    outcome = leader.propose_conf_change_v2([], net.now, quorum=quorum, **kwargs)  # type: ignore[arg-type]
    net.collect(leader.id)
    return outcome


def test_quorum_sizes_change_through_consensus() -> None:
    net = Network(range(1, 6))
    net.elect(1)
    net.deliver()
    leader = net.node(1)
    # (Q1, Q2) = (3, 3) -> (4, 2): an old election quorum of 3 could miss a new
    # commit quorum of 2, so the change goes through the joint configuration.
    assert isinstance(_change_quorum(net, (4, 2)), Accepted)
    assert leader.joint
    net.deliver()
    assert not leader.joint and (leader.election_quorum, leader.commit_quorum) == (4, 2)
    for nid in (2, 3, 4, 5):
        assert (net.node(nid).election_quorum, net.node(nid).commit_quorum) == (4, 2)
    # (4, 2) -> (4, 3) only grows the commit quorum: one step.
    assert isinstance(_change_quorum(net, (4, 3)), Accepted)
    assert not leader.joint and leader.commit_quorum == 3
    net.deliver()
    # Back to the nodes' rule (majorities).
    assert isinstance(_change_quorum(net, RULE_QUORUM), Accepted)
    net.deliver()
    assert (leader.election_quorum, leader.commit_quorum) == (3, 3)
    assert leader.configuration.election_quorum == 0


def test_an_unsafe_quorum_pair_is_refused_with_one_line() -> None:
    net = Network(range(1, 6))
    net.elect(1)
    net.deliver()
    last = net.node(1).last_index
    for quorum in ((2, 3), (0, 3), (6, 1)):
        outcome = _change_quorum(net, quorum)
        assert isinstance(outcome, Refused), quorum
        assert "\n" not in outcome.reason
    assert "Q1 + Q2 > n" in _change_quorum(net, (2, 3)).reason  # type: ignore[attr-defined]
    assert net.node(1).last_index == last  # nothing appended


def test_explicit_sizes_follow_a_change_only_where_they_fit() -> None:
    net = Network(range(1, 6))
    net.add_node(6, voters=range(1, 6))
    net.elect(1)
    net.deliver()
    assert isinstance(_change_quorum(net, (4, 2)), Accepted)
    net.deliver()
    leader = net.node(1)
    # Six voters with Q1 = 4, Q2 = 2: 4 + 2 is not > 6.
    outcome = leader.propose_conf_change(ConfChange(ConfChangeKind.ADD_VOTER, N(6)), net.now)
    assert isinstance(outcome, Refused) and "quorum sizes for 6 voters" in outcome.reason
    # Four voters: 4 + 2 > 4, kept.
    assert isinstance(leader.propose_conf_change(ConfChange(ConfChangeKind.REMOVE_NODE, N(5)), net.now), Accepted)
    net.collect(leader.id)
    net.deliver()
    assert leader.voters == {1, 2, 3, 4} and (leader.election_quorum, leader.commit_quorum) == (4, 2)


def test_reads_are_confirmed_by_a_commit_quorum() -> None:
    net = _flexible(election=4, commit=2)
    for nid in (3, 4, 5):
        net.isolate(nid)
    leader = net.node(1)
    assert isinstance(leader.read_index(b"r", net.now), Accepted)
    net.collect(leader.id)
    net.deliver()
    assert [r.context for r in net.reads[N(1)]] == [b"r"]


def test_plain_configuration_entries_encode_as_before() -> None:
    # The bytes of the single-server era's configuration entries.
    assert encode_conf_state([N(1), N(2), N(3)]).hex() == "939301020390c400"
    assert encode_conf_state([N(1), N(2), N(3)], [N(4)], b"ctx").hex() == "93930102039104c403637478"
    assert decode_conf_state(bytes.fromhex("939301020390c400")).voters_outgoing == ()


def test_the_monitor_catches_a_leader_without_an_election_quorum(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _flexible(election=4, commit=2)
    net.crash(1)
    net.isolate(4)
    net.isolate(5)
    # Break counting on purpose: two votes win (2 and 3 can reach each other).
    monkeypatch.setattr(RaftNode, "_poll_result", lambda self: 1 if sum(self._votes.values()) >= 2 else 0)
    with pytest.raises(InvariantViolation, match="election quorum"):
        net.advance(5.0)
