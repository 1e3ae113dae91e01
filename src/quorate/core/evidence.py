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

Kinds of evidence. ``Evidence`` is one kind of proof of misbehaviour; a
protocol may have others (Casper FFG's ``SlashingEvidence``: two votes that
break a slashing condition). Each kind is an ``EvidenceKind`` — its wire
type, what is wrong with a malformed instance, the signatures that make it
a proof, its offender and how the audit trail shows it — kept in an
``EvidenceRegistry``, so whoever checks or shows evidence from public keys
alone (``quorate.security.evidence_log``) does it one way per kind, with no
knowledge of the protocols. ``EQUIVOCATION`` (this module's ``Evidence``)
is in ``EVIDENCE_REGISTRY`` from the start; a protocol package registers
its own kinds when its binding is loaded, so every replica of a log, which
runs that log's protocol, knows the same kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

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
    """First statement per slot, conflicts found, and the excluded nodes.

    Statements are kept per slot (kind, height, round) and within a slot per
    signer, so forgetting a slot is one deletion. A subclass may keep an entry
    that is not a ``SignedStatement`` (a vote message, say) by overriding
    ``_payload`` and ``_statement`` (``quorate.pbft.vote_pool``)."""

    __slots__ = ("_slots", "detections", "excluded", "verifier")

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self._slots: dict[tuple[str, int, int], dict[int, Any]] = {}
        """(kind, height, round) -> signer -> the first entry recorded."""
        self.excluded: set[NodeId] = set()
        self.detections: list[Evidence] = []

    def observe(self, statement: SignedStatement) -> Evidence | None:
        """Record a statement whose signature the caller already verified.
        Returns new evidence if it conflicts with the first one for its slot."""
        return self._record((statement.kind, statement.height, statement.round), statement.signer,
                            statement.payload, statement)

    def _record(self, slot: tuple[str, int, int], signer: int, payload: bytes, entry: Any) -> Evidence | None:
        by_signer = self._slots.get(slot)
        if by_signer is None:
            by_signer = self._slots[slot] = {}
        first = by_signer.get(signer)
        if first is None:
            by_signer[signer] = entry
            return None
        if self._payload(first) == payload or NodeId(signer) in self.excluded:
            return None
        evidence = Evidence(self._statement(first), self._statement(entry))
        self._convict(evidence)
        return evidence

    def _payload(self, entry: Any) -> bytes:
        """The signed payload of a recorded entry."""
        return entry.payload  # type: ignore[no-any-return]

    def _statement(self, entry: Any) -> SignedStatement:
        """A recorded entry as the statement it stands for."""
        return entry  # type: ignore[no-any-return]

    def statements(self) -> int:
        """Statements recorded (for tests and memory accounting)."""
        return sum(len(by_signer) for by_signer in self._slots.values())

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
        self._slots = {k: v for k, v in self._slots.items() if k[1] >= height}

    def known_offenders(self) -> Iterable[NodeId]:
        return sorted(self.excluded)


# -- kinds of evidence -------------------------------------------------------------------------

SignedPart = tuple[int, bytes, bytes]
"""``(signer, signed bytes, signature)``: one signature a proof rests on."""


@dataclass(frozen=True, slots=True)
class EvidenceKind:
    """One kind of proof of misbehaviour, checkable by anyone from public keys."""

    type: type[WireMessage]
    """The wire type (tagged: kinds are told apart by their tag)."""
    record: str
    """The audit record kind a proof of this kind is recorded as (``evidence.*``)."""
    offender: Callable[[Any], int]
    problem: Callable[[Any], str | None]
    """Why the proof's shape proves nothing (the reason a replica refuses
    it), or None when its signatures are all that is left to check."""
    signatures: Callable[[Any], tuple[SignedPart, ...]]
    """The signatures that must verify under the signer's public keys."""
    describe: Callable[[Any], dict[str, Any]]
    """The audit record's detail (JSON values)."""


def _equivocation_problem(evidence: Evidence) -> str | None:
    a, b = evidence.first, evidence.second
    if (a.signer, a.kind, a.height, a.round) != (b.signer, b.kind, b.height, b.round):
        return "the statements are not for one signer and slot"
    if a.payload == b.payload:
        return "the statements do not conflict"
    return None


EQUIVOCATION = EvidenceKind(
    type=Evidence,
    record="evidence.equivocation",
    offender=lambda evidence: evidence.first.signer,
    problem=_equivocation_problem,
    signatures=lambda evidence: tuple(
        (statement.signer, statement.signed_bytes(), statement.signature) for statement in (evidence.first, evidence.second)
    ),
    describe=lambda evidence: {"statement": evidence.first.kind, "height": evidence.first.height, "round": evidence.first.round},
)
"""Two conflicting statements for one slot (``Evidence``)."""


class EvidenceRegistry:
    """The kinds of evidence known, by wire type; decodes any of them."""

    __slots__ = ("_by_type", "_decoder")

    def __init__(self, kinds: Iterable[EvidenceKind] = ()) -> None:
        self._by_type: dict[type, EvidenceKind] = {}
        self._decoder: msgspec.msgpack.Decoder[Any] | None = None
        for kind in kinds:
            self.register(kind)

    def register(self, kind: EvidenceKind) -> None:
        """Add ``kind`` (registering the same kind again changes nothing)."""
        known = self._by_type.get(kind.type)
        if known is kind:
            return
        if known is not None:
            raise ValueError(f"another kind of evidence is registered for {kind.type.__name__}")
        self._by_type[kind.type] = kind
        self._decoder = None

    def __iter__(self) -> Iterator[EvidenceKind]:
        return iter(self._by_type.values())

    def kind_of(self, evidence: object) -> EvidenceKind | None:
        return self._by_type.get(type(evidence))

    def encode(self, evidence: WireMessage) -> bytes:
        """The bytes of a proof of a registered kind (another type is the
        caller's mistake: ``ValueError``)."""
        if type(evidence) not in self._by_type:
            raise ValueError(f"{type(evidence).__name__} is not a registered kind of evidence")
        return _encoder.encode(evidence)

    def decode(self, data: bytes) -> tuple[EvidenceKind, Any]:
        """The kind and the proof in ``data``; raises ``msgspec.DecodeError`` or
        ``ValidationError`` for bytes that are no registered kind of evidence."""
        decoder = self._decoder
        if decoder is None:
            types = tuple(self._by_type)
            union: Any = types[0] if len(types) == 1 else _union(types)
            decoder = self._decoder = msgspec.msgpack.Decoder(union)
        evidence = decoder.decode(data)
        return self._by_type[type(evidence)], evidence


def _union(types: tuple[type, ...]) -> Any:
    union: Any = types[0]
    for more in types[1:]:
        union = union | more
    return union


EVIDENCE_REGISTRY = EvidenceRegistry([EQUIVOCATION])
"""The kinds of evidence this process knows: ``EQUIVOCATION`` and those the
loaded protocols registered (``register_evidence_kind``)."""


def register_evidence_kind(kind: EvidenceKind) -> None:
    """Make ``kind`` known to ``EVIDENCE_REGISTRY`` (a protocol's binding does, once)."""
    EVIDENCE_REGISTRY.register(kind)
