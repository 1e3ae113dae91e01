"""Evidence of equivocation: two statements signed by one node for the same
slot with different contents.

Theory of operation: a Byzantine protocol names, for every signed statement,
the *slot* in which an honest node signs at most one thing — PBFT's
pre-prepare or prepare for (view, sequence), HotStuff's proposal or vote for
a view. Two valid signatures by the same node on different payloads for one
(kind, height, round) slot prove misbehaviour to anyone: no trust in the
reporter is needed. ``EvidencePool.observe`` records the first statement per
slot and returns ``Evidence`` on a conflict; every honest node that receives
evidence checks both signatures (``verify_evidence``) and then excludes the
offender — drops its messages and counts them.

Memory is bounded: ``forget_below(height)`` drops slots under a watermark
(PBFT's low water mark, HotStuff's committed height).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from quorate.core.signing import Signer, Verifier
from quorate.core.wire import WireMessage
from quorate.ids import NodeId

_encoder = msgspec.msgpack.Encoder()


class SignedStatement(msgspec.Struct, array_like=True, frozen=True):
    """A signed claim ``payload`` by ``signer`` in slot (kind, height, round)."""

    signer: int
    kind: str
    height: int
    round: int
    payload: bytes
    signature: bytes

    def signed_bytes(self) -> bytes:
        return statement_bytes(self.kind, self.height, self.round, self.payload)


def statement_bytes(kind: str, height: int, round: int, payload: bytes) -> bytes:
    """The exact bytes a statement's signature covers (domain-separated by kind)."""
    return _encoder.encode(("quorate.statement.v1", kind, height, round, payload))


def sign_statement(signer: Signer, kind: str, height: int, round: int, payload: bytes) -> SignedStatement:
    data = statement_bytes(kind, height, round, payload)
    return SignedStatement(int(signer.node), kind, height, round, payload, signer.sign(data))


def verify_statement(statement: SignedStatement, verifier: Verifier) -> bool:
    return verifier.verify(NodeId(statement.signer), statement.signed_bytes(), statement.signature)


class Evidence(WireMessage, tag="evidence.Equivocation", frozen=True):
    """Two conflicting statements by one signer. Valid iff ``verify_evidence``."""

    first: SignedStatement
    second: SignedStatement

    @property
    def offender(self) -> NodeId:
        return NodeId(self.first.signer)


def verify_evidence(evidence: Evidence, verifier: Verifier) -> bool:
    """True iff the two statements are by one signer, for one slot, with
    different payloads, and both signatures are valid."""
    a, b = evidence.first, evidence.second
    if (a.signer, a.kind, a.height, a.round) != (b.signer, b.kind, b.height, b.round):
        return False
    if a.payload == b.payload:
        return False
    return verify_statement(a, verifier) and verify_statement(b, verifier)


class EvidencePool:
    """First statement per slot, conflicts found, and the excluded nodes."""

    __slots__ = ("_seen", "detections", "excluded", "verifier")

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self._seen: dict[tuple[int, str, int, int], SignedStatement] = {}
        self.excluded: set[NodeId] = set()
        self.detections: list[Evidence] = []

    def observe(self, statement: SignedStatement) -> Evidence | None:
        """Record a statement whose signature the caller already verified.
        Returns new evidence if it conflicts with the first one for its slot."""
        key = (statement.signer, statement.kind, statement.height, statement.round)
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = statement
            return None
        if first.payload == statement.payload or NodeId(statement.signer) in self.excluded:
            return None
        evidence = Evidence(first, statement)
        self._convict(evidence)
        return evidence

    def receive(self, evidence: Evidence) -> bool:
        """Evidence from a peer: verify it, exclude the offender. True if new."""
        if evidence.offender in self.excluded or not verify_evidence(evidence, self.verifier):
            return False
        self._convict(evidence)
        return True

    def _convict(self, evidence: Evidence) -> None:
        self.excluded.add(evidence.offender)
        self.detections.append(evidence)

    def is_excluded(self, node: NodeId) -> bool:
        return node in self.excluded

    def forget_below(self, height: int) -> None:
        """Drop recorded slots under ``height`` (they can no longer matter)."""
        self._seen = {k: v for k, v in self._seen.items() if k[2] >= height}

    def known_offenders(self) -> Iterable[NodeId]:
        return sorted(self.excluded)
