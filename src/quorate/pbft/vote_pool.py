"""The evidence pool of a PBFT replica, keeping votes as the messages themselves.

Theory of operation. Every signed statement a replica verifies is recorded
so that a second, conflicting one by the same signer for the same slot
(kind, sequence number, view) becomes evidence (``quorate.core.evidence``).
The pool keeps, per slot (kind, sequence number, view) and signer, the
first statement. A replica receives 2(n - 1) prepares and commits per batch,
so at n = 1000 the cluster holds about two million of them per sequence
number until the next stable checkpoint; building a ``SignedStatement`` for
each was most of a large run's memory. ``VotePool`` records a prepare or
commit received directly as the ``Prepare``/``Commit`` message itself (one
object, already shared with the replica's slot and, in the simulator, with
every other receiver of the broadcast) and builds its statement only when a
conflict needs it as evidence. Other statements (pre-prepares, statements
inside certificates) are kept as they come. What is detected, when, and the
evidence produced are those of ``EvidencePool``.
"""

from __future__ import annotations

from typing import Any

from quorate.core.evidence import Evidence, EvidencePool, SignedStatement

__all__ = ["VotePool"]


class VotePool(EvidencePool):
    """``EvidencePool`` that also records votes as the messages themselves."""

    __slots__ = ()

    def observe_vote(self, kind: str, vote: Any) -> Evidence | None:
        """Record a verified ``Prepare`` or ``Commit`` (a message with
        ``seq``, ``view``, ``replica``, ``digest`` and ``statement()`` of
        ``kind``): as ``observe(vote.statement())``, without building the
        statement unless it is evidence."""
        return self._record((kind, vote.seq, vote.view), vote.replica, vote.digest, vote)

    def _payload(self, entry: Any) -> bytes:
        return entry.payload if isinstance(entry, SignedStatement) else entry.digest

    def _statement(self, entry: Any) -> SignedStatement:
        return entry if isinstance(entry, SignedStatement) else entry.statement()
