"""The dashboard's view of rounds of statuses: roles, the leader, a split,
lag, commits per second, and the events worth a line."""

from __future__ import annotations

from quorate.dashboard.state import ClusterView, NodeReport


def up(node: int, role: str, term: int, leader: int | None, commit: int, **kw: object) -> NodeReport:
    return NodeReport(node, True, role, term, leader, commit, commit, **kw)  # type: ignore[arg-type]


def test_leader_lag_rate_and_a_leader_change() -> None:
    view = ClusterView(["a", "b", "c"])
    view.observe(10.0, [up(1, "leader", 2, 1, 100), up(2, "follower", 2, 1, 100), up(3, "follower", 2, 1, 95)], 0.004)
    view.observe(11.0, [up(1, "leader", 2, 1, 150), up(2, "follower", 2, 1, 150), up(3, "follower", 2, 1, 150)], 0.005)
    state = view.snapshot()
    assert state["leader"] == 1 and state["term"] == 2 and state["nodes_up"] == 3 and not state["split"]
    assert state["history"][-1] == {"t": 11.0, "commits_per_s": 50.0, "read_ms": 5.0}
    assert state["history"][0]["commits_per_s"] is None  # no rate from one round
    assert state["events"] == []
    view.observe(12.0, [NodeReport(1, False), up(2, "leader", 3, 2, 151), up(3, "follower", 3, 2, 149)], None)
    state = view.snapshot()
    assert state["leader"] == 2 and state["term"] == 3 and state["nodes_up"] == 2
    assert [n["role"] for n in state["nodes"]] == ["down", "leader", "follower"]
    assert [n["lag"] for n in state["nodes"]] == [None, 0, 2]
    assert [e["text"] for e in state["events"]] == ["n1 stopped answering", "leader is now n2"]
    assert state["history"][-1]["read_ms"] is None


def test_nodes_naming_different_leaders_are_a_split_and_the_newer_term_wins() -> None:
    view = ClusterView([])
    view.observe(1.0, [up(1, "leader", 4, 1, 10), up(2, "leader", 5, 2, 10), up(3, "follower", 5, 2, 10)], None)
    state = view.snapshot()
    assert state["split"] and state["leader"] == 2


def test_bft_detections_and_exclusions_are_events() -> None:
    view = ClusterView([])
    view.observe(1.0, [up(1, "primary", 0, 1, 5), up(2, "backup", 0, 1, 5)], None)
    view.observe(2.0, [up(1, "primary", 0, 1, 6, detections=1, excluded=("n4",)), up(2, "backup", 0, 1, 6)], None)
    texts = [e["text"] for e in view.snapshot()["events"]]
    assert texts == ["n1 detected 1 misbehaviour(s)", "n1 excluded n4"]
    assert view.snapshot()["nodes"][0]["excluded"] == ["n4"]
