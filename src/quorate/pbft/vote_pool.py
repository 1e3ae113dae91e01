"""The evidence pool of a PBFT replica, keeping votes as the messages themselves.

Theory of operation. Every signed statement a replica verifies is recorded
so that a second, conflicting one by the same signer for the same slot
(kind, sequence number, view) becomes evidence (``quorate.core.evidence``).
The generic ``EvidencePool`` keeps, per statement, a ``SignedStatement``
object under a 4-tuple key. A replica receives 2(n - 1) prepares and
commits per batch, so at n = 1000 the cluster holds about two million of
them per sequence number until the next stable checkpoint: three fresh
objects per vote (the statement, its key, its slot in a large dict) were
most of a large run's memory.

``VotePool`` keeps the same facts in less: statements are grouped by
(kind, sequence number, view), and within a group by signer; a prepare or
commit received directly is kept as the ``Prepare``/``Commit`` message
itself (one object, already shared with the replica's slot and, in the
simulator, with every other receiver of the broadcast); its
``SignedStatement`` is built only when a conflict needs it as evidence.
Other statements (pre-prepares, statements inside certificates) are kept
as they come. What is detected, when, and the evidence produced are those
of ``EvidencePool``: the first statement per slot is kept, a later one with
another payload by a signer not yet excluded convicts it.
"""

from __future__ import annotations

from typing import Any

from quorate.core.evidence import Evidence, EvidencePool, SignedStatement
from quorate.core.signing import Verifier
from quorate.ids import NodeId

__all__ = ["VotePool"]


class VotePool(EvidencePool):
    """``EvidencePool`` storing statements per slot and votes as messages."""

    __slots__ = ("_slots",)

    def __init__(self, verifier: Verifier) -> None:
        super().__init__(verifier)
        self._slots: dict[tuple[str, int, int], dict[int, Any]] = {}
        """(kind, height, round) -> signer -> the first statement: a
        ``SignedStatement``, or a vote message (``payload`` is its ``digest``)."""

    def observe(self, statement: SignedStatement) -> Evidence | None:
        by_signer = self._slots.setdefault((statement.kind, statement.height, statement.round), {})
        first = by_signer.get(statement.signer)
        if first is None:
            by_signer[statement.signer] = statement
            return None
        return self._conflict(first, statement.payload, statement)

    def observe_vote(self, kind: str, vote: Any) -> Evidence | None:
        """Record a verified ``Prepare`` or ``Commit`` (a message with
        ``seq``, ``view``, ``replica``, ``digest`` and ``statement()`` of
        ``kind``): as ``observe(vote.statement())``, without building the
        statement unless it is evidence."""
        key = (kind, vote.seq, vote.view)
        by_signer = self._slots.get(key)
        if by_signer is None:
            by_signer = self._slots[key] = {}
        signer = vote.replica
        first = by_signer.get(signer)
        if first is None:
            by_signer[signer] = vote
            return None
        return self._conflict(first, vote.digest, vote)

    def _conflict(self, first: Any, payload: bytes, second: Any) -> Evidence | None:
        first_payload = first.payload if isinstance(first, SignedStatement) else first.digest
        if first_payload == payload:
            return None
        second_statement = second if isinstance(second, SignedStatement) else second.statement()
        if NodeId(second_statement.signer) in self.excluded:
            return None
        first_statement = first if isinstance(first, SignedStatement) else first.statement()
        evidence = Evidence(first_statement, second_statement)
        self._convict(evidence)
        return evidence

    def forget_below(self, height: int) -> None:
        self._slots = {k: v for k, v in self._slots.items() if k[1] >= height}

    def statements(self) -> int:
        """Statements recorded (for tests and memory accounting)."""
        return sum(len(v) for v in self._slots.values())
