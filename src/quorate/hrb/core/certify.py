"""Certified decisions: partial threshold signatures, one collector, and the
key chain anyone verifies certificates with (docs/hrb.md section 3).

Theory of operation.

- **Signing.** Once a decision is applied at index i of epoch e, every
  member with a key share signs a partial over ``certificate_bytes(e, i,
  decision)`` and sends it (``DecisionPartial``) to the epoch's **collector**:
  the lowest-id member not evicted. The collector combines t = 2f + 1 of
  them into a ``CoreCertificate`` (optimistically: one group-signature check
  when the partials are good; a bad partial is found, dropped, reported and
  another used) and sends it to the members (so they stop waiting and can
  answer requests) and to the decision's recipients in the shards. That is
  linear: about 2(C − 1) messages among the core per decision instead of the
  C(C − 1) of an all-to-all certificate, and a shard receives one message it
  checks with one public key instead of f + 1 signed replies.
- **A silent or Byzantine collector** costs time, not safety: a member that
  has no certificate ``certificate_timeout_s`` after applying a decision
  sends its partial to the next member in line (then the next, the timeout
  doubling), and that member collects too. A collector cannot forge (it has
  one share) and a certificate that verifies is the decision t members
  applied, so any copy is as good as another. A valid certificate whose
  decision differs from the one this member applied at that index means the
  core's log forked: an invariant violation, never ignored.
- **Restarts.** A member that replays its log after a restart does not
  sign the decisions it replays: most were certified while it was down,
  and re-signing a whole epoch would flood the collectors. But if two
  members crashed in turn, a decision may have been applied by only
  t − 1 members that kept their signatures (the others replayed it), and
  then no collector ever reaches t. So a member that receives a partial,
  as a collector, for a decision it replayed unsigned (or replays one for
  which partials already reached it) signs it then, adds its share and
  sends it on down the line of collectors like a fresh decision: every
  member that replayed signs once the surviving signers' partials reach
  it in the rotation, and the certificate forms.
- **Asked again.** A member answers a ``CertificateRequest`` with the
  certificates it holds for a transaction (its begin and its decision), or
  for a map change (``quorate.hrb.reshard.reshard_certificate_key``: its
  begin and its commit or abort), so a shard that was cut off when they
  were sent can fetch them.
- **Refusals** (``Rejection`` with a reason): a partial for another epoch,
  from a non-member or an evicted member, outside the window of indexes, or
  one that does not verify; a certificate that does not verify.

Choices the design left open, and why these: the collector is the
lowest-id live member, not the BFT leader, so certification does not
depend on the ordering core's view (a view change does not lose partials
already sent) and every member knows where to send without asking the BFT
core; partials are signed after the decision is applied, not piggybacked
on the ordering core's votes, because the ordering core's votes sign
blocks, not decisions, and keeping them apart lets PBFT and HotStuff be
swapped freely.

``CoreKeyChain`` is what a shard keeps: the group public key of every epoch
it has learned, from genesis and then from each certified ``EpochChange``
(checked with the previous epoch's key), and it checks a certificate with
that alone: the epoch must be known, the signature the epoch's, the
decision well formed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from quorate.core.ready import Rejection
from quorate.errors import invariant
from quorate.hrb.core.commands import DecisionPartial
from quorate.hrb.core.config import CoreConfig
from quorate.hrb.core.threshold import EpochKey, PartialSigner
from quorate.hrb.messages import (
    CoreCertificate,
    Decision,
    EpochChange,
    TxnBegin,
    TxnDecision,
    certificate_bytes,
    decode_decision,
)
from quorate.hrb.reshard import ReshardAbort, ReshardBegin, ReshardCommit, reshard_certificate_key
from quorate.ids import NodeId

__all__ = ["Certifier", "CoreKeyChain"]


@dataclass(slots=True)
class _Pending:
    """A decision this member applied and the state of its certificate."""

    encoded: bytes
    message: bytes
    attempt: int = 0
    deadline: float | None = None
    certificate: CoreCertificate | None = None
    partial: bytes = b""
    recipients: Any = None


@dataclass(slots=True)
class CertifierOutput:
    """What the certifier asks: messages to core members, certificates to
    deliver (to the decision's recipients, as the replica knows them) and
    rejections."""

    messages: list[tuple[NodeId, Any]] = field(default_factory=list)
    certified: list[tuple[CoreCertificate, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class Certifier:
    """One member's side of certifying one epoch's decisions (see the module docstring)."""

    def __init__(
        self,
        me: NodeId,
        epoch: int,
        members: Sequence[NodeId],
        key: EpochKey,
        signer: PartialSigner | None,
        config: CoreConfig,
        excluded: Callable[[], frozenset[int]],
    ) -> None:
        self.me = me
        self.epoch = epoch
        self.members = tuple(sorted(members))
        self.key = key
        self.signer = signer
        self.config = config
        self._excluded = excluded
        self._pending: dict[int, _Pending] = {}
        self._partials: dict[int, dict[int, bytes]] = {}
        self._certificates: OrderedDict[int, CoreCertificate] = OrderedDict()
        self._by_txn: dict[bytes, list[int]] = {}
        self._txn_of: dict[int, bytes] = {}
        self.applied = 0
        self.out = CertifierOutput()
        self.combined = 0
        """Certificates this member combined (as a collector)."""
        self.partials_sent = 0
        self.bad_partials = 0
        self.late_partials = 0
        """Partials signed for decisions replayed after a restart (``_sign_late``)."""

    # -- the collector -------------------------------------------------------------------
    def collectors(self) -> tuple[NodeId, ...]:
        """Members in collector order (lowest id first), evicted ones left out."""
        excluded = self._excluded()
        live = tuple(m for m in self.members if m not in excluded)
        return live or self.members

    def collector(self, attempt: int) -> NodeId:
        line = self.collectors()
        return line[attempt % len(line)]

    def take(self) -> CertifierOutput:
        out, self.out = self.out, CertifierOutput()
        return out

    # -- decisions -------------------------------------------------------------------------
    def decided(self, index: int, encoded: bytes, recipients: Any, now: float, *, replay: bool) -> None:
        """This member applied decision ``index``; sign and send its partial
        (not for a decision replayed from disk after a restart: it was
        certified or others' partials suffice)."""
        invariant(index == self.applied + 1, f"decision {index} applied after {self.applied}")
        self.applied = index
        message = certificate_bytes(self.epoch, index, encoded)
        pending = _Pending(encoded, message, recipients=recipients)
        self._pending[index] = pending
        while len(self._pending) > self.config.certificates_kept:
            del self._pending[next(iter(self._pending))]
        decision = _decoded(encoded)
        txn_id = None
        if isinstance(decision, TxnBegin):
            txn_id = decision.txn.txn_id
        elif isinstance(decision, TxnDecision):
            txn_id = decision.txn_id
        elif isinstance(decision, ReshardBegin | ReshardCommit | ReshardAbort):
            # A shard that was cut off when a map change was sent asks for it by this key.
            txn_id = reshard_certificate_key(decision.seq)
        if txn_id is not None:
            self._txn_of[index] = txn_id
            self._by_txn.setdefault(txn_id, []).append(index)
        early = self._certificates.get(index)
        if early is not None:
            self._check_matches(early, pending)
            pending.certificate = early
            return
        if self.signer is None:
            return
        if replay:
            if self._partials.get(index):
                self._sign_late(index, pending, now)  # others still collect for it
            return
        pending.partial = self.signer.sign(message)
        self._send_partial(index, pending, now)
        self._try_combine(index)

    def _sign_late(self, index: int, pending: _Pending, now: float) -> None:
        """A decision replayed from disk (not signed then) for which another
        member's partial reached this one as a collector: it is not certified
        yet, so add this member's share and keep sending it down the line of
        collectors like a fresh one (module docstring, "Restarts")."""
        assert self.signer is not None
        pending.partial = self.signer.sign(pending.message)
        self._partials.setdefault(index, {}).setdefault(self.signer.index, pending.partial)
        timeout = min(self.config.certificate_timeout_s * (2**pending.attempt), self.config.max_certificate_timeout_s)
        pending.deadline = now + timeout
        self.late_partials += 1
        self._try_combine(index)

    def _send_partial(self, index: int, pending: _Pending, now: float) -> None:
        assert self.signer is not None
        to = self.collector(pending.attempt)
        if to == self.me:
            self._partials.setdefault(index, {}).setdefault(self.signer.index, pending.partial)
        else:
            self.out.messages.append((to, DecisionPartial(self.epoch, index, pending.partial)))
            self.partials_sent += 1
        timeout = min(self.config.certificate_timeout_s * (2**pending.attempt), self.config.max_certificate_timeout_s)
        pending.deadline = now + timeout

    def on_partial(self, sender: NodeId, message: DecisionPartial, now: float) -> None:
        if message.epoch != self.epoch:
            self._reject(sender, message, f"partial for epoch {message.epoch}, this is epoch {self.epoch}")
            return
        if sender not in self.members:
            self._reject(sender, message, "partial from a node outside this epoch's core")
            return
        if sender in self._excluded():
            self._reject(sender, message, "partial from an evicted member")
            return
        index = message.index
        if not 1 <= index <= self.applied + self.config.partial_window:
            self._reject(sender, message, "partial outside the window of decisions")
            return
        if index in self._certificates:
            return  # certified already
        share = self.members.index(sender) + 1
        collected = self._partials.setdefault(index, {})
        if share in collected:
            return
        if not isinstance(message.partial, bytes):
            self._reject(sender, message, "malformed partial")
            return
        collected[share] = message.partial
        pending = self._pending.get(index)
        if pending is not None and not pending.partial and pending.certificate is None and self.signer is not None:
            self._sign_late(index, pending, now)
            return
        self._try_combine(index)

    def _try_combine(self, index: int) -> None:
        pending = self._pending.get(index)
        collected = self._partials.get(index)
        if pending is None or collected is None or pending.certificate is not None:
            return
        if len(collected) < self.key.threshold:
            return
        signature, bad = self.key.combine(pending.message, collected)
        for share in bad:
            self.bad_partials += 1
            collected.pop(share, None)
            self.out.rejected.append(
                Rejection(self.members[share - 1], "DecisionPartial", f"partial for decision {index} does not verify")
            )
        if signature is None:
            return
        certificate = CoreCertificate(self.epoch, index, pending.encoded, signature)
        self.combined += 1
        self._store(certificate)
        pending.certificate = certificate
        pending.deadline = None
        self._partials.pop(index, None)
        for member in self.members:
            if member != self.me:
                self.out.messages.append((member, certificate))
        self.out.certified.append((certificate, pending.recipients))

    # -- certificates from others ----------------------------------------------------------
    def on_certificate(self, sender: NodeId, certificate: CoreCertificate) -> None:
        if certificate.epoch != self.epoch:
            self._reject(sender, certificate, f"certificate of epoch {certificate.epoch}, this is epoch {self.epoch}")
            return
        index = certificate.index
        if index in self._certificates:
            return
        if not isinstance(index, int) or not 1 <= index <= self.applied + self.config.partial_window:
            self._reject(sender, certificate, "certificate outside the window of decisions")
            return
        message = certificate_bytes(self.epoch, index, certificate.decision)
        if not self.key.verify(message, certificate.signature):
            self._reject(sender, certificate, "certificate does not verify")
            return
        self._store(certificate)
        pending = self._pending.get(index)
        if pending is not None:
            self._check_matches(certificate, pending)
            pending.certificate = certificate
            pending.deadline = None
            self._partials.pop(index, None)

    def _check_matches(self, certificate: CoreCertificate, pending: _Pending) -> None:
        invariant(
            certificate.decision == pending.encoded,
            f"core log fork: a certificate for decision {certificate.index} of epoch {self.epoch} "
            "certifies another decision than the one applied here",
        )

    def _store(self, certificate: CoreCertificate) -> None:
        self._certificates[certificate.index] = certificate
        while len(self._certificates) > self.config.certificates_kept:
            old, _ = self._certificates.popitem(last=False)
            self._pending.pop(old, None)
            txn_id = self._txn_of.pop(old, None)
            if txn_id is not None:
                indexes = self._by_txn.get(txn_id, [])
                if old in indexes:
                    indexes.remove(old)
                if not indexes:
                    self._by_txn.pop(txn_id, None)

    # -- time ---------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for index, pending in self._pending.items():
            if pending.certificate is not None or pending.deadline is None or pending.deadline > now:
                continue
            if not pending.partial:
                pending.deadline = None
                continue
            pending.attempt += 1
            self._send_partial(index, pending, now)
            self._try_combine(index)

    def wake_at(self) -> float | None:
        deadlines = [p.deadline for p in self._pending.values() if p.certificate is None and p.deadline is not None]
        return min(deadlines) if deadlines else None

    # -- queries --------------------------------------------------------------------------------
    def certificate(self, index: int) -> CoreCertificate | None:
        return self._certificates.get(index)

    def certificates_for(self, txn_id: bytes) -> list[CoreCertificate]:
        out = []
        for index in self._by_txn.get(txn_id, ()):
            certificate = self._certificates.get(index)
            if certificate is not None:
                out.append(certificate)
        return out

    def uncertified(self) -> list[int]:
        return sorted(i for i, p in self._pending.items() if p.certificate is None)

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self.out.rejected.append(Rejection(sender, type(message).__name__, reason))


def _decoded(encoded: bytes) -> Decision | None:
    try:
        return decode_decision(encoded)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class CoreKeyChain:
    """The core's group public keys by epoch, as a shard (or anyone) learns
    them: genesis, then each certified ``EpochChange`` (see the module docstring).

    ``verify_group`` is the threshold suite's (``ThresholdSuite.verify_group``).
    """

    def __init__(
        self,
        verify_group: Callable[[bytes, bytes, bytes], bool],
        genesis_epoch: int,
        genesis_key: bytes,
        genesis_members: Sequence[int] = (),
        *,
        keep_epochs: int = 16,
    ) -> None:
        self._verify_group = verify_group
        self._keys: OrderedDict[int, tuple[bytes, tuple[int, ...]]] = OrderedDict()
        self._keys[genesis_epoch] = (genesis_key, tuple(genesis_members))
        self.keep_epochs = keep_epochs

    @property
    def latest_epoch(self) -> int:
        return max(self._keys)

    def group_key(self, epoch: int) -> bytes | None:
        found = self._keys.get(epoch)
        return None if found is None else found[0]

    def members(self, epoch: int) -> tuple[int, ...]:
        found = self._keys.get(epoch)
        return () if found is None else found[1]

    def check(self, certificate: CoreCertificate) -> tuple[Decision | None, str]:
        """``(decision, '')`` if ``certificate`` verifies, else ``(None, reason)``."""
        key = self.group_key(certificate.epoch)
        if key is None:
            return None, f"unknown epoch {certificate.epoch}"
        message = certificate_bytes(certificate.epoch, certificate.index, certificate.decision)
        if not self._verify_group(key, message, certificate.signature):
            return None, "certificate does not verify with the epoch's group key"
        decision = _decoded(certificate.decision)
        if decision is None:
            return None, "malformed decision"
        if isinstance(decision, EpochChange) and decision.epoch != certificate.epoch + 1:
            return None, f"epoch change to {decision.epoch} certified by epoch {certificate.epoch}"
        return decision, ""

    def accept(self, certificate: CoreCertificate) -> tuple[Decision | None, str]:
        """``check``, and learn the next epoch's key from a certified ``EpochChange``."""
        decision, reason = self.check(certificate)
        if isinstance(decision, EpochChange) and decision.epoch not in self._keys:
            self._keys[decision.epoch] = (decision.group_public_key, tuple(decision.members))
            while len(self._keys) > self.keep_epochs:
                self._keys.popitem(last=False)
        return decision, reason
