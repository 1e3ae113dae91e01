"""Proofs of misbehaviour recorded in the log: the BFT replicas' evidence
becomes part of the replicated audit trail.

Theory of operation. A PBFT or HotStuff replica that sees one member sign
two different statements for one slot holds ``Evidence``
(``quorate.core.evidence``): it excludes the offender at once, on its own.
That decision is local; the audit trail (``quorate audit``) is replicated.
So the node also proposes the evidence as an ``Extension("evidence", ...)``
command to group 0, and ``EvidenceMachine`` — on every replica, at the same
log position — checks it from public keys alone and records the first valid
proof against each offender. What a valid proof is and how the audit trail
shows it depends on its kind (``quorate.core.evidence.EvidenceKind``, one
per kind in an ``EvidenceRegistry``): for an equivocation, both statements
by one signer, for one slot, with different payloads (an audit record
``evidence.equivocation`` naming the offender, the statement kind and the
slot); for Casper FFG's slashing evidence, two votes of one validator that
break a slashing condition (``evidence.slashing``: the condition and both
links). Either way every signature must verify under a key the key
registry holds for the signer now. Nobody has to be
trusted: a forged or non-conflicting "proof" is refused (and counted) the
same way everywhere, and further proofs against an offender already on
record are refused as such, so every honest replica may submit what it
holds without filling the log.

A statement signed by a key the registry has since retired no longer
verifies: evidence is submitted as soon as it is found, well inside a key's
overlap window.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from quorate.core.evidence import EVIDENCE_REGISTRY, EvidenceRegistry
from quorate.core.machine import MachineResult
from quorate.crypto.ed25519 import signed_by_any
from quorate.ids import NodeId, node_name

__all__ = ["MACHINE_NAME", "EvidenceMachine", "decode_evidence", "encode_evidence"]

MACHINE_NAME = "evidence"
MAX_EVIDENCE_BYTES = 64 * 1024
"""Two signed statements carry digests, not blocks; more is not evidence."""
MAX_OFFENDERS_KEPT = 4096

_encoder = msgspec.msgpack.Encoder()


def encode_evidence(evidence: Any, kinds: EvidenceRegistry = EVIDENCE_REGISTRY) -> bytes:
    """The bytes of a proof of any kind ``kinds`` knows."""
    return kinds.encode(evidence)


def decode_evidence(data: bytes, kinds: EvidenceRegistry = EVIDENCE_REGISTRY) -> Any:
    """A proof of any kind ``kinds`` knows; raises ``msgspec.DecodeError`` or ``ValidationError``."""
    return kinds.decode(data)[1]


class PublicKeys(Protocol):
    """What the machine asks of the key registry."""

    def valid_keys(self, node: NodeId | int, kind: str = ...) -> tuple[bytes, ...]: ...


class EvidenceMachine:
    """The replicated record of proven misbehaviour (see the module docstring)."""

    def __init__(self, keys: PublicKeys, kinds: EvidenceRegistry = EVIDENCE_REGISTRY) -> None:
        self.keys = keys
        self.kinds = kinds
        """The kinds of evidence this machine decodes (default: those of the
        protocols this process loaded)."""
        self.offenders: dict[int, int] = {}
        """Offender -> the log index at which its first proof was recorded."""
        self.refused: dict[str, int] = {}

    def _refuse(self, reason: str) -> MachineResult:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return MachineResult(False, error=reason)

    def apply(self, index: int, now_s: float, data: bytes) -> MachineResult:
        if len(data) > MAX_EVIDENCE_BYTES:
            return self._refuse("evidence too large")
        try:
            kind, evidence = self.kinds.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._refuse("malformed evidence")
        problem = kind.problem(evidence)
        if problem is not None:
            return self._refuse(problem)
        for signer, message, signature in kind.signatures(evidence):
            if not signed_by_any(self.keys.valid_keys(signer), message, signature):
                return self._refuse("a statement's signature does not verify")
        offender = kind.offender(evidence)
        if offender in self.offenders:
            return MachineResult(False, error=f"{node_name(NodeId(offender))} is already on record")
        if len(self.offenders) >= MAX_OFFENDERS_KEPT:
            return self._refuse("too many offenders on record")
        self.offenders[offender] = index
        name = node_name(NodeId(offender))
        return MachineResult(True, value=name, audit=((kind.record, name, kind.describe(evidence)),))

    def recorded(self, offender: NodeId | int) -> bool:
        return int(offender) in self.offenders

    def snapshot(self) -> bytes | None:
        if not self.offenders and not self.refused:
            return None
        return _encoder.encode((sorted(self.offenders.items()), sorted(self.refused.items())))

    def restore(self, data: bytes | None) -> None:
        if data is None:
            self.offenders, self.refused = {}, {}
            return
        offenders, refused = msgspec.msgpack.decode(data, type=tuple[list[tuple[int, int]], list[tuple[str, int]]])
        self.offenders, self.refused = dict(offenders), dict(refused)
