"""The audit trail of the agent state machines: ballots with their signer
ids, refusals with their reasons, outcomes, stale completions; the same on
every replica, kept through snapshots, filtered by kind, subject and actor."""

from __future__ import annotations

import json

import nacl.signing
import pytest
from tests.unit.state.test_agents import Store, agents, ballot, spec

from quorate.state.agents import (
    AuditQuery,
    ProposalOpen,
    TaskClaim,
    TaskComplete,
    TaskSubmit,
    VoteCast,
    ballot_bytes,
)
from quorate.state.agents.audit import AUDIT_QUERY_MAX_RECORDS, AuditTrail
from quorate.state.agents.votes import BAD_SIGNATURE, DOUBLE_VOTE, NOT_IN_ELECTORATE
from quorate.state.kv import KVStore


def audit(s: Store, **kw: object) -> dict[str, object]:
    return json.loads(s.kv.read(AuditQuery(**kw)).value or "{}")  # type: ignore[arg-type]


def test_votes_refusals_and_the_outcome_are_audited_with_signer_ids() -> None:
    s = Store()
    keys = agents(s, "ann", "bob", "cat")
    s.ok(ProposalOpen("p", "ship?", ("yes", "no"), duration_s=30.0, proposer="ann"))
    s.ok(ballot(keys, "p", "ann", "yes"))
    s.refused(VoteCast("p", "bob", "yes", keys["ann"].sign(ballot_bytes("p", "bob", "yes")).signature))
    mallory = nacl.signing.SigningKey(b"m" * 32)
    s.refused(VoteCast("p", "mallory", "no", mallory.sign(ballot_bytes("p", "mallory", "no")).signature))
    s.refused(ballot(keys, "p", "ann", "no"))
    s.ok(ballot(keys, "p", "bob", "yes"))
    trail = audit(s, subject="p")
    seen = [(r["kind"], r["actor"], r["detail"].get("option") or r["detail"].get("reason") or r["detail"].get("outcome"))
            for r in trail["records"]]  # type: ignore[union-attr, index]
    assert seen == [
        ("proposal.opened", "ann", None),
        ("proposal.voted", "ann", "yes"),
        ("proposal.refused", "bob", BAD_SIGNATURE),
        ("proposal.refused", "mallory", NOT_IN_ELECTORATE),
        ("proposal.refused", "ann", DOUBLE_VOTE),
        ("proposal.voted", "bob", "yes"),
        ("proposal.decided", "ann", "yes"),
    ]
    decided = trail["records"][-1]  # type: ignore[index]
    assert decided["detail"]["tally"] == {"yes": 2, "no": 0} and decided["time_s"] == s.now_s
    assert [r["kind"] for r in audit(s, kind="agent.")["records"]] == ["agent.registered"] * 3  # type: ignore[union-attr]
    assert [r["detail"]["reason"] for r in audit(s, kind="proposal.refused", actor="mallory")["records"]] == [  # type: ignore[union-attr, index]
        NOT_IN_ELECTORATE
    ]


def test_a_stale_completion_is_audited_though_it_changes_nothing() -> None:
    s = Store()
    s.ok(TaskSubmit((spec("x", "t1"),)))
    first = s.ok(TaskClaim("ann", 5.0))["task"]
    s.tick(s.now_s + 6.0)  # ann's lease runs out
    second = s.ok(TaskClaim("bob", 5.0))["task"]
    revision = s.kv.changes.revision
    assert "stale fencing token" in s.refused(TaskComplete("t1", first["token"], "late"))
    assert s.kv.changes.revision == revision  # nothing for watchers: no state changed
    s.ok(TaskComplete("t1", second["token"], "done"))
    kinds = [(r["kind"], r["actor"]) for r in audit(s, subject="t1")["records"]]  # type: ignore[union-attr]
    assert kinds == [
        ("task.submitted", ""), ("task.claimed", "ann"), ("task.expired", ""), ("task.ready", ""),
        ("task.claimed", "bob"), ("task.complete_refused", ""), ("task.completed", "bob"),
    ]
    refused = audit(s, kind="task.complete_refused")["records"][0]  # type: ignore[index]
    assert refused["detail"]["token"] == first["token"] and "stale" in refused["detail"]["reason"]


def test_the_trail_is_the_same_on_replicas_and_survives_a_snapshot() -> None:
    a, b = Store(), Store()
    keys = agents(a, "ann", "bob")
    agents(b, "ann", "bob")
    for op in (ProposalOpen("p", "q", ("a", "b"), duration_s=4.0), ballot(keys, "p", "ann", "a"), TaskSubmit((spec("x"),))):
        a.do(op)
        b.do(op)
    assert audit(a) == audit(b) and audit(a)["total"] == 5
    copy = KVStore()
    copy.restore(a.kv.snapshot())
    assert json.loads(copy.read(AuditQuery()).value or "{}") == audit(a)


def test_queries_page_from_a_sequence_number_and_the_trail_is_bounded() -> None:
    trail = AuditTrail()
    for i in range(10):
        trail.record(float(i), "task.claimed", f"t{i}", {"agent": "ann", "result": "x" * 10})
    page = trail.query("", "", "", 0, 4)
    assert [r["seq"] for r in page["records"]] == [1, 2, 3, 4] and page["next_seq"] == 5
    rest = trail.query("", "", "", page["next_seq"], 100)
    assert [r["seq"] for r in rest["records"]] == list(range(5, 11)) and rest["next_seq"] == 11
    assert "result" not in rest["records"][0]["detail"]  # a summary, never a task's result
    assert len(trail.query("", "", "", 0, 10**9)["records"]) <= AUDIT_QUERY_MAX_RECORDS
    small = AuditTrail()
    small.records = type(small.records)(maxlen=3)
    for i in range(5):
        small.record(0.0, "lock.acquired", "l", {"holder": str(i)})
    answer = small.query("", "", "", 1, 10)
    assert answer["truncated"] and answer["oldest_seq"] == 3 and [r["actor"] for r in answer["records"]] == ["2", "3", "4"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--limit", "0"], "--limit"),
        (["--limit", str(AUDIT_QUERY_MAX_RECORDS + 1)], "--limit"),
        (["--since", "-1"], "--since"),
        (["--endpoints", "nowhere"], "nowhere"),
    ],
)
def test_audit_cli_mistakes_are_one_line_and_exit_2(args: list[str], words: str) -> None:
    from typer.testing import CliRunner

    from quorate.cli import audit as audit_cli
    from quorate.cli.main import app

    assert audit_cli.audit_command  # importing registers the command
    result = CliRunner().invoke(app, ["audit", *args])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("quorate: error:") and words in lines[0], result.stderr
