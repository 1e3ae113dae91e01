"""The dashboard's view of rounds of statuses: roles, the leader, a split,
lag, commits per second, and the events worth a line."""

from __future__ import annotations

from quorate.dashboard.state import ClusterView, GroupReport, NodeReport


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


def group(g: int, leader: int | None, term: int = 1, commit: int = 5) -> GroupReport:
    return GroupReport(g, leader, term, commit, (1, 2, 3), start=f"k{g}", end=f"k{g + 1}")


def test_groups_their_leaders_and_changes_are_shown_and_are_events() -> None:
    view = ClusterView([])
    nodes = [up(1, "leader", 1, 1, 5), up(2, "follower", 1, 1, 5)]
    view.observe(1.0, nodes, None)
    assert view.snapshot()["groups"] == [] and view.snapshot()["leaders_per_node"] == {}
    view.observe(2.0, nodes, None, [group(1, 1), group(2, 2), group(3, 2)], {0, 1, 2, 3})
    state = view.snapshot()
    assert [(g["group"], g["leader"]) for g in state["groups"]] == [(1, 1), (2, 2), (3, 2)]
    assert state["leaders_per_node"] == {"n1": 1, "n2": 2}
    assert state["groups_leaderless"] == [0]
    assert state["groups"][0]["start"] == "k1" and state["groups"][0]["replicas"] == [1, 2, 3]
    assert state["events"] == []  # first sight of a group is not a change
    view.observe(3.0, nodes, None, [group(0, 3), group(1, 3, term=2), group(2, 2)], {0, 1, 2, 3})
    texts = [e["text"] for e in view.snapshot()["events"]]
    assert texts == ["range 0: leader is now n3", "range 1: leader is now n3", "range 3: no leader"]
    assert view.snapshot()["groups_leaderless"] == [3]


def test_hrb_shards_and_the_core_are_groups_of_their_own_kind() -> None:
    view = ClusterView([])
    shards = [GroupReport(1, 2, 1, 9, (1, 2, 3, 4), kind="shard"), GroupReport(2, 6, 1, 9, (5, 6, 7, 8), kind="shard")]
    core = GroupReport(1, 3, 4, 20, (1, 3, 5, 7), kind="core")  # epoch 1: the same number as shard 1, another group
    view.observe(1.0, [up(1, "follower", 1, 2, 9)], None, [*shards, core], {1, 2})
    view.observe(2.0, [up(1, "follower", 1, 2, 9)], None, [shards[0], GroupReport(2, 7, 2, 9, (5, 6, 7, 8), kind="shard"), core], {1, 2})
    state = view.snapshot()
    assert [(g["kind"], g["group"], g["leader"]) for g in state["groups"]] == [
        ("shard", 1, 2), ("shard", 2, 7), ("core", 1, 3)
    ]
    assert [e["text"] for e in state["events"]] == ["shard 2: leader is now n7"]
    assert state["leaders_per_node"] == {"n2": 1, "n3": 1, "n7": 1}
    assert state["leader"] == 3 and not state["split"]  # the core's leader; shards naming their own is no split
