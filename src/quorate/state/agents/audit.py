"""The audit trail: who decided what, kept longer than the change history.

Theory of operation. Every decision of the agent state machines — an
identity registered, a proposal opened, a ballot counted (with its signer's
id) or refused (with the reason), a proposal decided, rejected or expired,
a task claimed, completed, failed, cancelled or re-offered, a lock granted,
released or lost, and a completion, failure or fenced write refused for a
stale fencing token — becomes one ``AuditRecord``: a sequence number, the
log time, the kind, the subject (task, proposal, lock or agent name), the
actor (the signer, the agent, the holder) and a compact JSON detail (the
option, the reason, the outcome and tally, the token). Records are made
while a committed command is applied, so every replica holds the same trail
at the same log position, and it travels in the store's snapshots.

The trail keeps the latest ``AUDIT_RECORDS_KEPT`` records (sixteen times
the change history that watchers read, and a fraction of its size: details
are summaries, never a task's result). Refusals that change no state (a
stale completion) appear here and not in the change history. Queries filter
by kind prefix, subject and actor, from a sequence number on.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

AUDIT_RECORDS_KEPT = 65_536
AUDIT_QUERY_MAX_RECORDS = 1000
DETAIL_FIELDS = (
    "option", "reason", "outcome", "tally", "state", "token", "attempts", "error", "rule", "electorate",
    "public_key", "statement", "height", "round", "condition", "links",
)
"""What a record keeps of a decision's document (when present)."""
ACTOR_FIELDS = ("voter", "agent", "holder", "proposer", "name")
"""Where a decision's document names who made it, first found wins."""
DETAIL_TEXT_MAX_CHARS = 512
NOT_AUDITED = frozenset({"lock.renewed"})
"""Kinds too frequent to be decisions worth keeping (a lease renewed)."""


class AuditRecord(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    time_s: float
    kind: str
    subject: str
    actor: str = ""
    detail: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "time_s": self.time_s, "kind": self.kind, "subject": self.subject,
            "actor": self.actor, "detail": msgspec.json.decode(self.detail) if self.detail else {},
        }


def summary(document: Any) -> tuple[str, str]:
    """(actor, detail JSON) of a decision's document."""
    if not isinstance(document, dict):
        return "", ""
    actor = next((str(document[f]) for f in ACTOR_FIELDS if document.get(f)), "")
    detail = {}
    for name in DETAIL_FIELDS:
        value = document.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, str) and len(value) > DETAIL_TEXT_MAX_CHARS:
            value = value[:DETAIL_TEXT_MAX_CHARS] + "…"
        detail[name] = value
    return actor[:128], msgspec.json.encode(dict(sorted(detail.items()))).decode() if detail else ""


class AuditTrail:
    """The latest decisions, numbered from 1 (see the module docstring)."""

    __slots__ = ("records", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self.records: deque[AuditRecord] = deque(maxlen=AUDIT_RECORDS_KEPT)

    def record(self, time_s: float, kind: str, subject: str, document: Any) -> None:
        if kind in NOT_AUDITED:
            return
        actor, detail = summary(document)
        self.seq += 1
        self.records.append(AuditRecord(self.seq, time_s, kind, subject, actor, detail))

    @property
    def oldest(self) -> int:
        return self.records[0].seq if self.records else self.seq + 1

    def query(self, kind: str, subject: str, actor: str, from_seq: int, limit: int) -> dict[str, Any]:
        """Records from ``from_seq`` on whose kind starts with ``kind`` and
        whose subject and actor match (empty: any), at most ``limit``."""
        limit = max(1, min(limit, AUDIT_QUERY_MAX_RECORDS))
        records = self.records
        start = max(0, from_seq - self.oldest)
        found: list[dict[str, Any]] = []
        next_seq = self.seq + 1
        for i in range(start, len(records)):
            record = records[i]
            if (
                record.kind.startswith(kind)
                and (not subject or record.subject == subject)
                and (not actor or record.actor == actor)
            ):
                found.append(record.view())
                if len(found) == limit:
                    next_seq = record.seq + 1
                    break
        return {
            "records": found,
            "next_seq": next_seq,
            "oldest_seq": self.oldest,
            "truncated": 0 < from_seq < self.oldest,
            "total": self.seq,
        }

    # -- snapshots ------------------------------------------------------------
    def state(self) -> tuple[int, list[AuditRecord]]:
        return self.seq, list(self.records)

    def restore(self, seq: int, records: list[AuditRecord]) -> None:
        self.seq = seq
        self.records = deque(records, maxlen=AUDIT_RECORDS_KEPT)


__all__ = ["AUDIT_RECORDS_KEPT", "AuditRecord", "AuditTrail"]
