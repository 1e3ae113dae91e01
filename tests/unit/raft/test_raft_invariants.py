"""The online safety monitor catches a broken Raft, and stays quiet on a correct one."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from tests.unit.raft.network import Network

from quorate.core.ready import Entry
from quorate.errors import InvariantViolation
from quorate.ids import NodeId
from quorate.raft import RaftConfig, RaftSafetyMonitor, Role

N = NodeId
BROKEN = RaftConfig(pre_vote=False, check_quorum=False, unsafe_commit_without_quorum=True)


def test_monitor_catches_commit_without_quorum_under_a_partition() -> None:
    net = Network([1, 2, 3, 4, 5], config=BROKEN)
    net.elect(1)
    net.isolate(1)
    net.propose(1, b"lost-write")  # "committed" by the isolated leader alone
    net.deliver()
    with pytest.raises(InvariantViolation, match=r"leader completeness|state-machine safety"):
        net.elect(2)
        net.propose(2, b"other")
        net.deliver()


def test_monitor_is_quiet_on_a_correct_run_with_the_same_partition() -> None:
    net = Network([1, 2, 3, 4, 5])
    net.elect(1)
    net.isolate(1)
    net.propose(1, b"not-committed")
    net.deliver()
    net.elect(2)
    net.propose(2, b"other")
    net.deliver()
    net.heal()
    net.advance(1.0)
    assert net.applied[N(1)] == [b"other"]
    assert net.monitor is not None and net.monitor.checks > 10


@dataclass
class FakeNode:
    """Just the read-only surface the monitor uses."""

    id: NodeId
    role: Role = Role.FOLLOWER
    term: int = 1
    commit_index: int = 0
    entries: list[Entry] = field(default_factory=list)
    log_rewrites: int = 0
    last_rewrite_index: int = 0
    snapshot_index: int = 0
    vote: NodeId | None = None
    voter_quorums: tuple[object, ...] = ()
    """No voter sets: these fakes are not checked for election quorums."""

    @property
    def first_index(self) -> int:
        return 1

    @property
    def last_index(self) -> int:
        return len(self.entries)

    def entry_at(self, index: int) -> Entry | None:
        return self.entries[index - 1] if 1 <= index <= len(self.entries) else None

    def term_at(self, index: int) -> int | None:
        entry = self.entry_at(index)
        return entry.term if entry else (0 if index == 0 else None)


def test_monitor_catches_two_leaders_in_one_term() -> None:
    monitor = RaftSafetyMonitor()
    monitor.check(FakeNode(N(1), Role.LEADER, term=3), 0.0)  # type: ignore[arg-type]
    with pytest.raises(InvariantViolation, match="election safety"):
        monitor.check(FakeNode(N(2), Role.LEADER, term=3), 0.0)  # type: ignore[arg-type]


def test_monitor_catches_log_matching_violations() -> None:
    monitor = RaftSafetyMonitor()
    monitor.check(FakeNode(N(1), entries=[Entry(1, 1, 0, b"a")]), 0.0)  # type: ignore[arg-type]
    with pytest.raises(InvariantViolation, match="log matching"):
        monitor.check(FakeNode(N(2), entries=[Entry(1, 1, 0, b"b")]), 0.0)  # type: ignore[arg-type]


def test_monitor_rechecks_rewritten_entries() -> None:
    monitor = RaftSafetyMonitor()
    node = FakeNode(N(1), entries=[Entry(1, 1, 0, b"a"), Entry(1, 2, 0, b"b")])
    monitor.check(node, 0.0)  # type: ignore[arg-type]
    node.entries[1] = Entry(1, 2, 0, b"changed")  # same index and term, new data
    node.log_rewrites += 1
    node.last_rewrite_index = 2
    with pytest.raises(InvariantViolation, match="log matching"):
        monitor.check(node, 0.0)  # type: ignore[arg-type]


def test_monitor_catches_conflicting_commits_and_regressing_commit() -> None:
    monitor = RaftSafetyMonitor()
    monitor.check(FakeNode(N(1), commit_index=1, entries=[Entry(1, 1, 0, b"a")]), 0.0)  # type: ignore[arg-type]
    with pytest.raises(InvariantViolation, match=r"state-machine safety|log matching"):
        monitor.check(FakeNode(N(2), term=2, commit_index=1, entries=[Entry(2, 1, 0, b"b")]), 0.0)  # type: ignore[arg-type]
    node = FakeNode(N(3), commit_index=1, entries=[Entry(1, 1, 0, b"a")])
    monitor.check(node, 0.0)  # type: ignore[arg-type]
    node.commit_index = 0
    with pytest.raises(InvariantViolation, match="went back"):
        monitor.check(node, 0.0)  # type: ignore[arg-type]


def test_monitor_catches_a_leader_missing_a_committed_entry() -> None:
    monitor = RaftSafetyMonitor()
    monitor.check(FakeNode(N(1), term=1, commit_index=1, entries=[Entry(1, 1, 0, b"a")]), 0.0)  # type: ignore[arg-type]
    with pytest.raises(InvariantViolation, match="leader completeness"):
        monitor.check(FakeNode(N(2), Role.LEADER, term=2), 0.0)  # type: ignore[arg-type]
