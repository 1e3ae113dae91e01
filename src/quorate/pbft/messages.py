"""PBFT's data on the wire and on disk (Castro & Liskov, TOCS 2002, §4).

Theory of operation: every type is a frozen msgspec struct, so the codec checks
field *types* when it decodes a peer's bytes; ``PbftReplica.step`` still checks
every signature, view, sequence number and digest and drops what does not add up.

- Normal case (§4.2): ``Request`` (a command forwarded to the primary),
  ``PrePrepare`` (the primary assigns sequence number ``seq`` in ``view`` to a
  batch), ``Prepare`` and ``Commit`` (backups' votes on the batch digest).
- Every statement a replica must make at most once per slot — pre-prepare,
  prepare and commit for (view, seq), checkpoint for seq — is a
  ``quorate.core.evidence`` signed statement: the message carries the
  signature and the receiver rebuilds the ``SignedStatement`` from its fields,
  so two conflicting messages are at once a proof of equivocation.
- With ``authentication="macs"`` a ``PrePrepare``, ``Prepare`` or ``Commit``
  carries an authenticator (``macs``: one MAC per receiver over the bytes the
  signature would cover, ``authenticated_bytes``) and an empty signature; it
  is then not a statement a third party can check (see ``quorate.pbft.config``).
- ``Prepare.primary_signature`` repeats the primary's signature on the
  pre-prepare the backup accepted: a replica that accepted a different batch
  for the slot can then prove the primary equivocated (signatures mode only).
- A batch is identified by ``batch_digest(origin_view, batch)``. ``origin_view``
  is the view in which the batch was first ordered and travels unchanged
  through new-view messages, so every replica commits the same ``Entry`` (whose
  ``term`` is ``origin_view``) whichever view it commits it in.
- Checkpoints (§4.3) sign (seq, entry_index, state_digest): ``state_digest`` is
  a running hash of every committed entry up to ``entry_index``, which the core
  computes itself (commands are opaque bytes). 2f+1 matching checkpoints are a
  stable-checkpoint proof; they are also what a lagging replica checks a state
  transfer against (``StateTransfer``).
- View change (§4.4): ``ViewChange`` carries the sender's stable checkpoint
  proof and its prepared certificates P; ``NewView`` carries the 2f+1 view
  changes it was built from and the pre-prepares O, which every backup
  recomputes. Both are signed (they are forwarded as proofs).
- View change with MACs (TOCS 2002, "BFT: an algorithm without
  signatures"): there are no certificates to carry, so a ``ViewChange``
  states instead what its author saw, as ``SlotClaim`` values: for each
  sequence number the highest view in which it *prepared* a digest
  (``prepared_claims``, the paper's P) and, per digest, the highest view in
  which it *pre-prepared* it (``pre_prepared_claims``, Q), plus the batches
  those digests name (``batches``, so the new primary can re-propose them).
  The signature makes the author answer for these claims; the new primary's
  decision procedure (``quorate.pbft.view_change``) needs no more. The new
  fields default to empty, so a signatures-mode ``ViewChange`` is encoded and
  signed exactly as before them.
- Catching up: ``Status`` says where a replica stands; ``CommittedBatch`` (a
  commit certificate, or with MACs one replica's authenticated word that it
  executed the batch) and ``FetchState``/``StateTransfer`` (entries checked
  against a stable checkpoint's running hash) fill the gaps.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from quorate.core.evidence import (
    Evidence,
    SignedStatement,
    sign_statement,
    statement_bytes,
    verify_statement,
)
from quorate.core.ready import Entry
from quorate.core.signing import Signer, Verifier
from quorate.core.wire import WireMessage
from quorate.ids import NodeId

__all__ = [
    "KIND_CHECKPOINT",
    "KIND_COMMIT",
    "KIND_COMMITTED",
    "KIND_NEW_VIEW",
    "KIND_PREPARE",
    "KIND_PRE_PREPARE",
    "KIND_VIEW_CHANGE",
    "PBFT_MESSAGE_TYPES",
    "Checkpoint",
    "ClaimedBatch",
    "Commit",
    "CommittedBatch",
    "FetchState",
    "NewView",
    "PbftHardState",
    "PrePrepare",
    "Prepare",
    "PreparedCertificate",
    "Request",
    "SlotClaim",
    "StateTransfer",
    "Status",
    "ViewChange",
    "batch_digest",
    "command_digest",
]

KIND_PRE_PREPARE = "pbft.pre-prepare"
KIND_PREPARE = "pbft.prepare"
KIND_COMMIT = "pbft.commit"
KIND_COMMITTED = "pbft.committed"
KIND_CHECKPOINT = "pbft.checkpoint"
KIND_VIEW_CHANGE = "pbft.view-change"
KIND_NEW_VIEW = "pbft.new-view"

DIGEST_BYTES = 32
COMMAND_DIGEST_BYTES = 16
"""Commands are deduplicated by a 128-bit hash: collisions are not a concern
at any realistic command count, and the executed set stays small."""

_encoder = msgspec.msgpack.Encoder()


def batch_digest(origin_view: int, batch: tuple[bytes, ...]) -> bytes:
    """The digest that prepares and commits vote on (D(m) in the paper)."""
    return hashlib.blake2b(
        _encoder.encode(("pbft.batch", origin_view, batch)), digest_size=DIGEST_BYTES
    ).digest()


def command_digest(command: bytes) -> bytes:
    """The identity of a client command for deduplication."""
    return hashlib.blake2b(command, digest_size=COMMAND_DIGEST_BYTES).digest()


class Request(WireMessage, tag="pbft.Request", frozen=True):
    """A client command a backup forwards to the primary (§4.1)."""

    command: bytes


Macs = tuple[tuple[int, bytes], ...]
"""An authenticator on the wire: (receiver, MAC) pairs, one per receiver."""


class PrePrepare(WireMessage, tag="pbft.PrePrepare", frozen=True):
    """The primary of ``view`` assigns ``seq`` to ``batch`` (§4.2). The
    signature is a ``KIND_PRE_PREPARE`` statement on the batch digest; with
    ``authentication="macs"`` it is empty and ``macs`` authenticates the same
    bytes to each receiver. Inside a ``NewView`` (the set O) neither is
    needed: the primary's signature on the new-view covers them."""

    view: int
    seq: int
    origin_view: int
    batch: tuple[bytes, ...]
    signature: bytes
    macs: Macs = ()

    def digest(self) -> bytes:
        return batch_digest(self.origin_view, self.batch)

    def statement(self, primary: NodeId, digest: bytes) -> SignedStatement:
        return SignedStatement(int(primary), KIND_PRE_PREPARE, self.seq, self.view, digest, self.signature)

    def authenticated_bytes(self, digest: bytes) -> bytes:
        """What the MACs cover: the signed statement's bytes for ``digest``
        (the batch's digest, which the receiver computes itself)."""
        return statement_bytes(KIND_PRE_PREPARE, self.seq, self.view, digest)


class Prepare(WireMessage, tag="pbft.Prepare", frozen=True):
    """Backup ``replica`` accepted the pre-prepare for (view, seq, digest)."""

    view: int
    seq: int
    digest: bytes
    replica: int
    signature: bytes
    primary_signature: bytes = b""
    """The primary's signature on the pre-prepare this backup accepted."""
    macs: Macs = ()
    """With ``authentication="macs"``: the authenticator (the signature and
    ``primary_signature`` are then empty)."""

    def statement(self) -> SignedStatement:
        return SignedStatement(self.replica, KIND_PREPARE, self.seq, self.view, self.digest, self.signature)

    def authenticated_bytes(self) -> bytes:
        """What the MACs cover: the signed statement's bytes."""
        return statement_bytes(KIND_PREPARE, self.seq, self.view, self.digest)


class Commit(WireMessage, tag="pbft.Commit", frozen=True):
    """``replica`` holds a prepared certificate for (view, seq, digest).
    Signed, or (``authentication="macs"``) with an empty signature and an
    authenticator: (receiver, MAC) pairs over ``authenticated_bytes()``."""

    view: int
    seq: int
    digest: bytes
    replica: int
    signature: bytes
    macs: Macs = ()

    def statement(self) -> SignedStatement:
        return SignedStatement(self.replica, KIND_COMMIT, self.seq, self.view, self.digest, self.signature)

    def authenticated_bytes(self) -> bytes:
        """What the MACs cover: the signed statement's bytes (the MAC itself
        binds sender and receiver)."""
        return statement_bytes(KIND_COMMIT, self.seq, self.view, self.digest)


class Checkpoint(WireMessage, tag="pbft.Checkpoint", frozen=True):
    """``replica`` executed every batch up to ``seq``: entries up to
    ``entry_index`` with running hash ``state_digest`` (§4.3)."""

    seq: int
    entry_index: int
    state_digest: bytes
    replica: int
    signature: bytes

    def payload(self) -> bytes:
        return checkpoint_payload(self.entry_index, self.state_digest)

    def statement(self) -> SignedStatement:
        return SignedStatement(self.replica, KIND_CHECKPOINT, self.seq, 0, self.payload(), self.signature)


def checkpoint_payload(entry_index: int, state_digest: bytes) -> bytes:
    return _encoder.encode((entry_index, state_digest))


class PreparedCertificate(msgspec.Struct, frozen=True, array_like=True):
    """A pre-prepare and 2f matching prepares from other backups (§4.2)."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]


class SlotClaim(msgspec.Struct, frozen=True, array_like=True):
    """A view-change claim (MAC mode): the author prepared (P) or
    pre-prepared (Q) ``digest`` at ``seq`` in ``view``, and in no later view
    (for P: no later view at all; for Q: not this digest)."""

    seq: int
    digest: bytes
    view: int


class ClaimedBatch(msgspec.Struct, frozen=True, array_like=True):
    """The contents of a digest a view change claims: ``digest()`` is the
    ``batch_digest`` the claims name."""

    origin_view: int
    batch: tuple[bytes, ...]

    def digest(self) -> bytes:
        return batch_digest(self.origin_view, self.batch)


class ViewChange(WireMessage, tag="pbft.ViewChange", frozen=True):
    """``replica`` moves to ``new_view`` (§4.4): its stable checkpoint proof
    (empty for the initial state, seq 0) and, above it, either its prepared
    certificates (signatures mode) or its P and Q claims with the batches
    they name (MAC mode; ``prepared`` is then empty)."""

    new_view: int
    checkpoint_proof: tuple[Checkpoint, ...]
    prepared: tuple[PreparedCertificate, ...]
    replica: int
    signature: bytes = b""
    prepared_claims: tuple[SlotClaim, ...] = ()
    """P: per sequence number, the digest prepared in the highest view."""
    pre_prepared_claims: tuple[SlotClaim, ...] = ()
    """Q: per sequence number and digest, the highest view it was pre-prepared in."""
    batches: tuple[ClaimedBatch, ...] = ()
    """The batch of every digest claimed above (one per digest)."""

    @property
    def stable_seq(self) -> int:
        return self.checkpoint_proof[0].seq if self.checkpoint_proof else 0

    @property
    def has_claims(self) -> bool:
        return bool(self.prepared_claims or self.pre_prepared_claims or self.batches)

    def content_digest(self) -> bytes:
        # Without claims the signed content is exactly what it was before
        # claims existed, so signatures-mode view changes are unchanged.
        content: tuple[Any, ...] = (self.new_view, self.checkpoint_proof, self.prepared, self.replica)
        if self.has_claims:
            content += (self.prepared_claims, self.pre_prepared_claims, self.batches)
        return hashlib.blake2b(_encoder.encode(content), digest_size=DIGEST_BYTES).digest()

    def signed(self, signer: Signer) -> ViewChange:
        st = sign_statement(signer, KIND_VIEW_CHANGE, self.new_view, 0, self.content_digest())
        return msgspec.structs.replace(self, signature=st.signature)

    def signature_valid(self, verifier: Verifier) -> bool:
        st = SignedStatement(
            self.replica, KIND_VIEW_CHANGE, self.new_view, 0, self.content_digest(), self.signature
        )
        return verify_statement(st, verifier)


class NewView(WireMessage, tag="pbft.NewView", frozen=True):
    """The primary of ``view`` starts it (§4.4): the view changes V it used and
    the pre-prepares O it computed from them."""

    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    replica: int
    signature: bytes = b""

    def content_digest(self) -> bytes:
        return hashlib.blake2b(
            _encoder.encode((self.view, [vc.signature for vc in self.view_changes], self.pre_prepares)),
            digest_size=DIGEST_BYTES,
        ).digest()

    def signed(self, signer: Signer) -> NewView:
        st = sign_statement(signer, KIND_NEW_VIEW, self.view, 0, self.content_digest())
        return msgspec.structs.replace(self, signature=st.signature)

    def signature_valid(self, verifier: Verifier) -> bool:
        st = SignedStatement(self.replica, KIND_NEW_VIEW, self.view, 0, self.content_digest(), self.signature)
        return verify_statement(st, verifier)


class CommittedBatch(WireMessage, tag="pbft.CommittedBatch", frozen=True):
    """A commit certificate: the pre-prepare and q matching commits. It
    proves the batch committed at ``seq`` (no other batch can), so a replica
    that missed the slot — even one waiting in a view change — executes it.

    With ``authentication="macs"`` commits prove nothing to a third party, so
    the message is instead the sender's own word that it executed the batch
    at ``seq``: no commits, and ``macs`` authenticating ``vouched_bytes()``
    to its one receiver. f + 1 matching ones from distinct replicas include
    an honest replica's, and an honest replica executes only committed
    batches, so together they are as good as a certificate."""

    pre_prepare: PrePrepare
    commits: tuple[Commit, ...]
    macs: Macs = ()

    def vouched_bytes(self, digest: bytes) -> bytes:
        """What the MAC covers: "the batch ``digest`` committed at seq"."""
        return statement_bytes(KIND_COMMITTED, self.pre_prepare.seq, 0, digest)


class Status(WireMessage, tag="pbft.Status", frozen=True):
    """A replica that made no progress for a while tells where it stands:
    peers answer with what it is missing (their messages for the slots above
    ``executed_seq``, their stable checkpoint proof, or the new-view)."""

    view: int
    view_active: bool
    executed_seq: int


class FetchState(WireMessage, tag="pbft.FetchState", frozen=True):
    """A replica that fell behind a stable checkpoint asks for the committed
    entries from ``from_index`` on (§5.3.2)."""

    from_index: int


class StateTransfer(WireMessage, tag="pbft.StateTransfer", frozen=True):
    """Entries ``first_index..`` up to the proof's ``entry_index``; the receiver
    checks them against the proof's running hash, so one reply suffices."""

    checkpoint_proof: tuple[Checkpoint, ...]
    first_index: int
    entries: tuple[Entry, ...]


class PbftHardState(msgspec.Struct, frozen=True, array_like=True):
    """What a replica makes durable before it speaks, so that after a crash it
    never makes a conflicting statement nor forgets a prepared certificate
    (or, in MAC mode, what it prepared and pre-prepared)."""

    view: int
    view_active: bool
    executed_seq: int
    entry_index: int
    checkpoint_proof: tuple[Checkpoint, ...]
    prepared: tuple[PreparedCertificate, ...]
    signed: tuple[tuple[str, int, int, bytes], ...]
    """Own statements above the stable checkpoint: (kind, view, seq, digest)."""
    sent_view_change: ViewChange | None = None
    prepared_claims: tuple[SlotClaim, ...] = ()
    """MAC mode: P above the stable checkpoint (``prepared`` is then empty)."""
    pre_prepared_claims: tuple[SlotClaim, ...] = ()
    """MAC mode: Q above the stable checkpoint."""
    claimed_batches: tuple[ClaimedBatch, ...] = ()
    """MAC mode: the batches P and Q name."""


PBFT_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (
    Request,
    PrePrepare,
    Prepare,
    Commit,
    Checkpoint,
    ViewChange,
    NewView,
    CommittedBatch,
    Status,
    FetchState,
    StateTransfer,
    Evidence,
)
"""Every message a PBFT replica sends (``Evidence`` is the shared
``quorate.core.evidence`` type: leave it out when combining with another
protocol's tuple that already has it)."""
