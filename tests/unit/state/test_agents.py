"""The agent state machines, applied as committed commands of the store.

Every test drives ``KVStore.apply_command`` the way a replica does, with log
times in the commands, and reads the JSON results the clients get.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import nacl.signing
import pytest

from quorate.state.agents import (
    AgentRegister,
    FencedPut,
    LockAcquire,
    LockRelease,
    LockStatus,
    ProposalOpen,
    ProposalStatus,
    TaskCancel,
    TaskClaim,
    TaskComplete,
    TaskFail,
    TaskHeartbeat,
    TaskList,
    TaskSpec,
    TaskStatus,
    TaskSubmit,
    VoteCast,
    WatchPoll,
    ballot_bytes,
)
from quorate.state.agents.votes import BAD_SIGNATURE, DOUBLE_VOTE, NOT_IN_ELECTORATE
from quorate.state.kv import NO_SESSION, Command, Get, KVStore, Put, Result, Tick


class Store:
    """A store, the log time of the next command and a session."""

    def __init__(self, history_events: int | None = None) -> None:
        self.kv = KVStore()
        if history_events is not None:
            from quorate.state.watch import ChangeLog

            self.kv.changes.__init__(history_events)  # type: ignore[misc]
            assert isinstance(self.kv.changes, ChangeLog)
        self.now_s = 1000.0
        self.seq = 0

    def do(self, op: Any, *, at: float | None = None) -> Result:
        if at is not None:
            self.now_s = at
        self.seq += 1
        return self.kv.apply_command(Command(7, self.seq, op, self.now_s))

    def ok(self, op: Any, **kw: Any) -> dict[str, Any]:
        result = self.do(op, **kw)
        assert result.ok, result.error
        return json.loads(result.value or "null")  # type: ignore[no-any-return]

    def refused(self, op: Any, **kw: Any) -> str:
        result = self.do(op, **kw)
        assert not result.ok, result.value
        return result.error or ""

    def tick(self, at: float) -> None:
        self.now_s = at
        self.kv.apply_command(Command(NO_SESSION, 0, Tick(1, at), at))


def spec(description: str, task_id: str = "", **kw: Any) -> TaskSpec:
    return TaskSpec(description, task_id, **kw)


# -- tasks -----------------------------------------------------------------------------
def test_claims_follow_priority_then_submission_order() -> None:
    s = Store()
    s.ok(TaskSubmit((spec("low", "a", priority=1), spec("high", "b", priority=5), spec("high too", "c", priority=5))))
    order = [s.ok(TaskClaim("w", 30.0))["task"]["id"] for _ in range(3)]
    assert order == ["b", "c", "a"]
    assert s.ok(TaskClaim("w", 30.0)) == {"task": None}


def test_dependencies_hold_a_task_until_they_complete() -> None:
    s = Store()
    s.ok(TaskSubmit((spec("fetch", "a"), spec("parse", "b", dependencies=("a",)), spec("sum", "c", dependencies=("a", "b")))))
    claimed = s.ok(TaskClaim("w", 30.0))["task"]
    assert claimed["id"] == "a"
    assert s.ok(TaskClaim("w", 30.0)) == {"task": None}  # b and c are blocked
    assert s.ok(TaskStatus("c"))["task"]["state"] == "blocked"
    s.ok(TaskComplete("a", claimed["token"], "42"))
    b = s.ok(TaskClaim("w", 30.0))["task"]
    assert b["id"] == "b"
    s.ok(TaskComplete("b", b["token"], "ok"))
    assert s.ok(TaskClaim("w", 30.0))["task"]["id"] == "c"


def test_a_cycle_or_an_unknown_dependency_refuses_the_whole_submission() -> None:
    s = Store()
    reason = s.refused(
        TaskSubmit((spec("x", "a", dependencies=("c",)), spec("y", "b", dependencies=("a",)), spec("z", "c", dependencies=("b",))))
    )
    assert ("cycle" in reason and "a -> c -> b -> a" in reason) or "cycle" in reason
    assert "depends on unknown task 'nope'" in s.refused(TaskSubmit((spec("x", "d", dependencies=("nope",)),)))
    assert "cycle" in s.refused(TaskSubmit((spec("self", "e", dependencies=("e",)),)))
    assert s.ok(TaskList())["total"] == 0  # nothing half-written
    assert "already exists" in (s.do(TaskSubmit((spec("x", "f"),))) and s.refused(TaskSubmit((spec("again", "f"),))))


def test_a_stale_token_cannot_complete_and_a_task_completes_exactly_once() -> None:
    s = Store()
    s.ok(TaskSubmit((spec("work", "a", max_attempts=3),)))
    first = s.ok(TaskClaim("slow", 5.0), at=1000.0)["task"]
    # The slow agent's lease runs out; the task is re-offered and taken by another.
    s.tick(1006.0)
    assert s.ok(TaskStatus("a"))["task"]["state"] == "ready"
    second = s.ok(TaskClaim("fast", 5.0))["task"]
    assert second["token"] > first["token"]
    assert "stale fencing token" in s.refused(TaskComplete("a", first["token"], "late result"))
    s.ok(TaskComplete("a", second["token"], "result"))
    assert "already completed" in s.refused(TaskComplete("a", second["token"], "again"))
    task = s.ok(TaskStatus("a"))["task"]
    assert task["result"] == "result" and task["state"] == "completed"
    assert [h[0] for h in task["history"]] == ["submitted", "claimed", "expired", "claimed", "completed"]


def test_heartbeats_keep_a_lease_and_a_silent_agents_task_is_re_offered() -> None:
    s = Store()
    s.ok(TaskSubmit((spec("work", "a"),)))
    token = s.ok(TaskClaim("w", 10.0), at=1000.0)["task"]["token"]
    for t in (1008.0, 1016.0, 1024.0):
        s.ok(TaskHeartbeat("a", token, 10.0), at=t)
    s.tick(1033.0)
    assert s.ok(TaskStatus("a"))["task"]["state"] == "claimed"
    assert s.kv.next_deadline_s == 1034.0
    s.tick(1034.0)
    assert s.ok(TaskStatus("a"))["task"]["state"] == "ready"
    assert "stale fencing token" in s.refused(TaskHeartbeat("a", token, 10.0))


def test_retries_are_bounded_and_dependents_of_a_failed_task_are_cancelled() -> None:
    s = Store()
    s.ok(TaskSubmit((spec("flaky", "a", max_attempts=2), spec("after", "b", dependencies=("a",)))))
    t1 = s.ok(TaskClaim("w", 30.0))["task"]["token"]
    s.ok(TaskFail("a", t1, "boom"))
    assert s.ok(TaskStatus("a"))["task"]["state"] == "ready"
    t2 = s.ok(TaskClaim("w", 30.0))["task"]["token"]
    s.ok(TaskFail("a", t2, "boom again"))
    a = s.ok(TaskStatus("a"))["task"]
    b = s.ok(TaskStatus("b"))["task"]
    assert a["state"] == "failed" and "no attempts left (2 of 2)" in a["error"]
    assert b["state"] == "cancelled" and "dependency 'a' failed" in b["error"]
    assert "which is failed" in s.refused(TaskSubmit((spec("later", "c", dependencies=("a",)),)))


def test_cancel_stops_a_claimed_task_and_its_holder_cannot_complete_it() -> None:
    s = Store()
    s.ok(TaskSubmit((spec("work", "a"),)))
    token = s.ok(TaskClaim("w", 30.0))["task"]["token"]
    s.ok(TaskCancel("a", "not needed"))
    assert "cancelled" in s.refused(TaskComplete("a", token, "x"))
    assert "already cancelled" in s.refused(TaskCancel("a"))


def test_sequential_tasks_of_a_workflow_run_in_submission_order() -> None:
    s = Store()
    s.ok(TaskSubmit(tuple(spec(f"step {i}", f"s{i}", strategy="sequential", workflow="wf", priority=i) for i in range(3))))
    seen = []
    for _ in range(3):
        task = s.ok(TaskClaim("w", 30.0))["task"]
        assert s.ok(TaskClaim("other", 30.0)) == {"task": None}  # one at a time
        seen.append(task["id"])
        s.ok(TaskComplete(task["id"], task["token"], "done"))
    assert seen == ["s0", "s1", "s2"]


def test_balanced_tasks_spread_over_agents() -> None:
    s = Store()
    s.ok(TaskSubmit(tuple(spec(f"part {i}", f"p{i}", strategy="balanced", workflow="w") for i in range(4))))
    a = s.ok(TaskClaim("alice", 30.0))["task"]
    assert s.ok(TaskClaim("alice", 30.0)) == {"task": None}  # alice holds one already
    b = s.ok(TaskClaim("bob", 30.0))["task"]
    assert {a["id"], b["id"]} == {"p0", "p1"}
    s.ok(TaskComplete(a["id"], a["token"], "ok"))
    assert s.ok(TaskClaim("alice", 30.0))["task"]["id"] == "p2"


def test_adaptive_tasks_that_lost_an_attempt_go_first() -> None:
    s = Store()
    s.ok(TaskSubmit((spec("retry me", "a", strategy="adaptive"), spec("fresh", "b", strategy="adaptive"))))
    token = s.ok(TaskClaim("w", 30.0, task_id="a"))["task"]["token"]
    s.ok(TaskFail("a", token, "transient"))
    assert s.ok(TaskClaim("w", 30.0))["task"]["id"] == "a"


def test_bad_fields_are_refused_with_the_field_named() -> None:
    s = Store()
    assert "strategy must be one of" in s.refused(TaskSubmit((spec("x", strategy="random"),)))
    assert "max_attempts" in s.refused(TaskSubmit((spec("x", max_attempts=0),)))
    assert "lease_s" in s.refused(TaskClaim("w", -1.0))
    assert "agent must be 1..128" in s.refused(TaskClaim("", 1.0))


# -- locks ---------------------------------------------------------------------------------
def test_a_lock_has_one_holder_and_fenced_writes_check_its_token() -> None:
    s = Store()
    first = s.ok(LockAcquire("printer", "alice", 10.0), at=1000.0)["lock"]
    assert "held by 'alice'" in s.refused(LockAcquire("printer", "bob", 10.0))
    assert s.ok(LockAcquire("printer", "alice", 10.0), at=1005.0)["lock"]["token"] == first["token"]  # renewal
    s.ok(FencedPut("printer", first["token"], "queue", "alice's job"))
    s.tick(1015.0)  # alice's lease ran out
    assert s.ok(LockStatus("printer"))["held"] is False
    second = s.ok(LockAcquire("printer", "bob", 10.0))["lock"]
    assert second["token"] > first["token"]
    assert "stale fencing token" in s.refused(FencedPut("printer", first["token"], "queue", "alice again"))
    s.ok(FencedPut("printer", second["token"], "queue", "bob's job"))
    assert s.kv.get("queue") == "bob's job"
    assert "stale fencing token" in s.refused(LockRelease("printer", "alice", first["token"]))
    s.ok(LockRelease("printer", "bob", second["token"]))
    assert s.ok(LockStatus("printer"))["held"] is False


def test_client_writes_cannot_name_an_agent_namespace() -> None:
    s = Store()
    assert "belong to the agent state machines" in s.refused(Put("t1", "x", "@tasks"))


# -- signed votes ----------------------------------------------------------------------------
def agents(s: Store, *names: str) -> dict[str, nacl.signing.SigningKey]:
    keys = {}
    for name in names:
        key = nacl.signing.SigningKey(bytes([len(name)]) * 31 + name[:1].encode())
        keys[name] = key
        s.ok(AgentRegister(name, bytes(key.verify_key)))
    return keys


def ballot(keys: dict[str, nacl.signing.SigningKey], pid: str, voter: str, option: str) -> VoteCast:
    signature = keys[voter].sign(ballot_bytes(pid, voter, option)).signature
    return VoteCast(pid, voter, option, signature)


def test_signed_votes_decide_by_majority_and_refusals_say_why() -> None:
    s = Store()
    keys = agents(s, "ann", "bob", "cat")
    s.ok(ProposalOpen("p", "ship it?", ("yes", "no"), duration_s=30.0))
    s.ok(ballot(keys, "p", "ann", "yes"))
    forged = VoteCast("p", "bob", "yes", keys["ann"].sign(ballot_bytes("p", "bob", "yes")).signature)
    assert s.refused(forged) == BAD_SIGNATURE
    mallory = nacl.signing.SigningKey(b"m" * 32)
    assert s.refused(VoteCast("p", "mallory", "yes", mallory.sign(ballot_bytes("p", "mallory", "yes")).signature)) == NOT_IN_ELECTORATE
    assert s.refused(ballot(keys, "p", "ann", "no")) == DOUBLE_VOTE
    proposal = s.ok(ballot(keys, "p", "bob", "yes"))["proposal"]
    assert proposal["state"] == "decided" and proposal["outcome"] == "yes"
    assert proposal["refusals"] == {BAD_SIGNATURE: 1, DOUBLE_VOTE: 1, NOT_IN_ELECTORATE: 1}
    assert {"voter": "mallory", "reason": NOT_IN_ELECTORATE} in proposal["refused"]
    assert "closed" in s.refused(ballot(keys, "p", "cat", "no"))


def test_votes_after_the_deadline_are_refused_and_the_proposal_expires() -> None:
    s = Store()
    keys = agents(s, "ann", "bob", "cat")
    s.ok(ProposalOpen("p", "q", ("a", "b"), rule="unanimity", duration_s=10.0), at=1000.0)
    s.ok(ballot(keys, "p", "ann", "a"), at=1001.0)
    s.tick(1010.0)
    proposal = s.ok(ProposalStatus("p"))["proposal"]
    assert proposal["state"] == "expired" and proposal["outcome"] is None
    assert "closed" in s.refused(ballot(keys, "p", "bob", "a"))


@pytest.mark.parametrize(
    ("rule", "weights", "votes", "state"),
    [
        ("majority", (), {"ann": "a", "bob": "b", "cat": "a", "dan": "a"}, "decided"),
        ("majority", (), {"ann": "a", "bob": "b", "cat": "a", "dan": "b"}, "rejected"),
        ("two_thirds", (), {"ann": "a", "bob": "b", "cat": "b", "dan": "a"}, "rejected"),
        ("two_thirds", (), {"ann": "a", "bob": "a", "cat": "a"}, "decided"),
        ("unanimity", (), {"ann": "a", "bob": "a", "cat": "a", "dan": "b"}, "rejected"),
        ("weighted", (("ann", 5), ("bob", 1), ("cat", 1), ("dan", 1)), {"ann": "b"}, "decided"),
    ],
)
def test_quorum_rules(rule: str, weights: tuple[tuple[str, int], ...], votes: dict[str, str], state: str) -> None:
    s = Store()
    keys = agents(s, "ann", "bob", "cat", "dan")
    s.ok(ProposalOpen("p", "q", ("a", "b"), rule=rule, weights=weights))
    result: dict[str, Any] = {}
    for voter, option in votes.items():
        result = s.ok(ballot(keys, "p", voter, option))["proposal"]
    assert result["state"] == state


def test_registering_a_name_again_with_another_key_is_refused() -> None:
    s = Store()
    agents(s, "ann")
    assert "another key" in s.refused(AgentRegister("ann", b"\x01" * 32))
    assert "32 bytes" in s.refused(AgentRegister("bob", b"short"))


def test_an_electorate_of_unregistered_names_is_refused() -> None:
    s = Store()
    agents(s, "ann")
    assert "not registered" in s.refused(ProposalOpen("p", "q", ("a", "b"), electorate=("ann", "ghost")))


# -- watches ----------------------------------------------------------------------------------
def test_a_watch_resumes_from_a_revision_without_missing_or_repeating() -> None:
    s = Store()
    start = s.ok(WatchPoll("job/", "", 0))["next_revision"]
    for i in range(5):
        s.ok(Put(f"job/{i}", str(i)))
        s.do(Put("other", "x"))
    first = s.ok(WatchPoll("job/", "", start, limit=2))
    assert [e["key"] for e in first["events"]] == ["job/0", "job/1"]
    rest = s.ok(WatchPoll("job/", "", first["next_revision"]))
    assert [e["key"] for e in rest["events"]] == ["job/2", "job/3", "job/4"]
    assert s.ok(WatchPoll("job/", "", rest["next_revision"]))["events"] == []


def test_task_transitions_are_watchable() -> None:
    s = Store()
    s.ok(TaskSubmit((spec("w", "a"),)))
    token = s.ok(TaskClaim("x", 5.0))["task"]["token"]
    s.ok(TaskComplete("a", token, "r"))
    kinds = [e["kind"] for e in s.ok(WatchPoll("", "@tasks", 1))["events"]]
    assert kinds == ["task.submitted", "task.claimed", "task.completed"]


def test_a_watch_from_a_compacted_revision_is_refused_with_the_oldest_held() -> None:
    s = Store(history_events=4)
    for i in range(10):
        s.ok(Put(f"k{i}", "v"))
    result = s.do(WatchPoll("", "", 2))
    assert not result.ok and "compacted" in (result.error or "")
    assert json.loads(result.value or "{}")["oldest"] == 7


# -- replicas agree ------------------------------------------------------------------------------
def test_replicas_that_apply_the_same_log_reach_the_same_state_and_snapshots_round_trip() -> None:
    a, b = Store(), Store()
    keys_a = agents(a, "ann", "bob")
    agents(b, "ann", "bob")
    log: list[Any] = [
        TaskSubmit((spec("x", "t1"), spec("y", "t2", dependencies=("t1",)))),
        TaskClaim("ann", 5.0),
        LockAcquire("l", "bob", 3.0),
        ProposalOpen("p", "q", ("a", "b"), duration_s=4.0),
        ballot(keys_a, "p", "ann", "a"),
    ]
    for op in log:
        a.do(op)
        b.do(op)
    for s in (a, b):
        s.tick(1010.0)
    assert a.kv.snapshot() == b.kv.snapshot()
    copy = KVStore()
    copy.restore(a.kv.snapshot())
    assert copy.snapshot() == a.kv.snapshot()
    assert msgspec.msgpack.decode(a.kv.snapshot())[0] == 3
    # The restored copy goes on exactly like the original.
    for store in (a.kv, copy):
        result = store.apply_command(Command(9, 1, TaskClaim("bob", 5.0), 1011.0))
        assert json.loads(result.value or "{}")["task"]["id"] == "t1"
    assert a.kv.snapshot() == copy.snapshot()
    assert a.kv.apply_command(Command(9, 2, Get("x"), 1012.0)).ok
