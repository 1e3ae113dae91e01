"""A shard's hash chain and the statements its members sign over it
(``docs/hrb.md`` section 2).

Theory of operation
-------------------
- **Digest.** As in Tangaroa's incremental hashing (Copeland & Zhong
  2014), entry i's digest is ``H(d(i-1) ‖ term ‖ i ‖ kind ‖ H(data))``
  (SHA-256, the header packed big-endian, ``d(0) = b""``), so a digest commits
  to the whole log before it. A ``ChainLink`` is what the digest needs of an
  entry besides its predecessor's digest: (term, kind, H(data)). Links let
  anyone recompute a later digest from an earlier one without the entries'
  data, which keeps proofs small.
- **Statements.** Every signature in a shard is an ordinary
  ``quorate.core.evidence.SignedStatement`` over ``(kind, height, round,
  payload)``, domain-separated by a kind that names the shard:

  ====================  ==============  =====  ===========  ================================
  kind                  height          round  payload      who signs, meaning
  ====================  ==============  =====  ===========  ================================
  ``chain``             index           term   digest       the leader of ``term``: "my log
                                                            holds ``digest`` at ``index``"
  ``ack``               index           term   digest ‖     a follower: "my log matches the
                                               lock         leader's through ``index``, and
                                                            I hold a certificate of this
                                                            term through ``lock``"
  ``nack``              prev index      term   hint         a follower refusing a batch
  ``empty``             prev index      term   prev term    the leader, an AppendEntries
                                                            without entries
  ``commit``            index           term   H(cert)      the leader announcing a commit
  ``vote``              term            0      candidate    a voter granting its vote
  ``suspect``           term            0      leader ‖     a member suspecting the leader
                                               reason
  ====================  ==============  =====  ===========  ================================

  A leader never rewrites its own log during its term, so an honest leader
  signs at most one digest per (term, index): two ``chain`` statements of one
  signer for one slot with different digests are equivocation evidence that
  ``quorate.core.evidence.verify_evidence`` checks with the signer's public
  key alone. An AppendEntries with entries is signed as the ``chain``
  statement of its last entry; the hash chain makes that one signature cover
  every entry before it. The commit index travels in certified announcements
  (``quorate.hrb.shard.proofs``), never on the strength of an AppendEntries,
  so the AppendEntries signature leaves ``leader_commit`` out on purpose.
- **Acknowledgements carry locks.** A follower's signed acknowledgement also
  says how far it holds a certificate of the term (its *lock*, 8 bytes
  big-endian after the digest), which is what lets the leader prove a quorum
  is locked before anyone applies (``quorate.hrb.shard.commit``). Raft carries
  a response's signature as opaque bytes, so the lock travels in front of
  the signature there: ``lock ‖ signature``.
- **Hooks.** ``ChainHooks`` plugs all of this into ``RaftNode`` through
  ``RaftHooks``: the leader chains and signs, followers check continuity from
  their own previous digest and verify, and every verified message is handed
  to the shard replica (``on_verified``), which keeps the statements as
  evidence, the acknowledgements for certificates, and validates entries
  (``validate``) before the core stores them.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from quorate.core.evidence import SignedStatement, sign_statement, statement_bytes
from quorate.core.ready import Entry
from quorate.core.signing import Signer, Verifier
from quorate.ids import NodeId
from quorate.raft.hooks import RaftHooks, unsigned
from quorate.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
)

if TYPE_CHECKING:
    from quorate.raft.node import RaftNode

__all__ = [
    "DIGEST_BYTES",
    "ChainHooks",
    "ChainLink",
    "ack_lock",
    "ack_payload",
    "chain_kind",
    "digests_after",
    "entry_digest",
    "link_digest",
    "link_of",
    "statement_kind",
]

DIGEST_BYTES = 32
_HEADER = struct.Struct(">QQB")
_LOCK = struct.Struct(">Q")
_encode = msgspec.msgpack.Encoder().encode
STATEMENT_KINDS = ("chain", "ack", "nack", "empty", "commit", "vote", "suspect")


class ChainLink(msgspec.Struct, array_like=True, frozen=True):
    """What entry i contributes to its digest besides d(i - 1)."""

    term: int
    kind: int
    data_hash: bytes


def link_digest(previous: bytes, index: int, link: ChainLink) -> bytes:
    """d(index) from d(index - 1) and the entry's link. ``ValueError`` if a
    field cannot be packed (negative or above 64 bits: peer input)."""
    try:
        header = _HEADER.pack(link.term, index, link.kind)
    except struct.error as exc:
        raise ValueError(f"entry {index}: {exc}") from None
    return hashlib.sha256(previous + header + link.data_hash).digest()


def link_of(entry: Entry) -> ChainLink:
    return ChainLink(entry.term, entry.kind, hashlib.sha256(entry.data).digest())


def entry_digest(previous: bytes, term: int, index: int, kind: int, data: bytes) -> bytes:
    try:
        header = _HEADER.pack(term, index, kind)
    except struct.error as exc:
        raise ValueError(f"entry {index}: {exc}") from None
    return hashlib.sha256(previous + header + hashlib.sha256(data).digest()).digest()


def digests_after(start_digest: bytes, start_index: int, links: Sequence[ChainLink]) -> list[bytes]:
    """The digests at ``start_index + 1 ..`` given d(start_index) and the links."""
    out = []
    digest = start_digest
    for offset, link in enumerate(links, start=1):
        digest = link_digest(digest, start_index + offset, link)
        out.append(digest)
    return out


def ack_lock(message: AppendEntriesResponse) -> int | None:
    """The lock a signed response carries in front of its signature, or None."""
    signature = message.signature
    if len(signature) < _LOCK.size:
        return None
    lock: int = _LOCK.unpack_from(signature)[0]
    return lock


def ack_payload(digest: bytes, lock: int) -> bytes:
    """An ``ack`` statement's payload: the digest at its index, then the lock."""
    return digest + _LOCK.pack(lock)


def statement_kind(shard: int, name: str) -> str:
    """The statement kind ``name`` (see the table above) of shard ``shard``."""
    return f"hrb.shard.{shard}.{name}"


def chain_kind(shard: int) -> str:
    return statement_kind(shard, "chain")


def _term_bytes(value: int) -> bytes:
    return _encode(value)


class ChainHooks(RaftHooks):
    """The watched-Raft hooks of one shard member (see the module docstring).

    ``node`` is the ``RaftNode`` the hooks serve, set right after it is built
    (the hooks read digests from its log). ``on_verified(sender, message)``
    sees every AppendEntries and response whose signature verified;
    ``validate(previous_digest, entries)`` returns why a batch that continues
    the chain must still be refused (an invalid entry, an entry that would
    overwrite an applied one), or ``None``."""

    __slots__ = (
        "_ack", "_chain", "_empty", "_nack", "acked", "keep", "lock", "node", "on_verified", "replace",
        "shard", "signer", "validate", "verifier",
    )

    def __init__(
        self,
        shard: int,
        signer: Signer,
        verifier: Verifier,
        *,
        on_verified: Callable[[NodeId, AppendEntries | AppendEntriesResponse], None],
        validate: Callable[[bytes, Sequence[Entry]], str | None],
        lock: Callable[[int], int],
        replace: Callable[[Entry, Entry], bool],
        keep: Callable[[int], int] | None = None,
    ) -> None:
        self.shard = shard
        self.signer = signer
        self.verifier = verifier
        self.on_verified = on_verified
        self.validate = validate
        self.lock = lock
        self.replace = replace
        self.keep = keep
        self.acked: tuple[int, int] = (-1, 0)
        """(term, highest index) this member acknowledged in its latest term."""
        self.node: RaftNode | None = None
        self._chain = chain_kind(shard)
        self._ack = statement_kind(shard, "ack")
        self._nack = statement_kind(shard, "nack")
        self._empty = statement_kind(shard, "empty")

    # ------------------------------------------------------------ leader side
    def entry_digest(self, previous_digest: bytes, entry: Entry) -> bytes:
        return entry_digest(previous_digest, entry.term, entry.index, entry.kind, entry.data)

    def append_statement(self, message: AppendEntries) -> bytes:
        """The bytes an AppendEntries' signature covers."""
        entries = message.entries
        if entries:
            last = entries[-1]
            return statement_bytes(self._chain, last.index, message.term, last.digest)
        return statement_bytes(
            self._empty, message.prev_log_index, message.term, _term_bytes(message.prev_log_term)
        )

    def sign_append(self, message: AppendEntries) -> bytes:
        return self.signer.sign(self.append_statement(message))

    def chain_statement(self, term: int, index: int, digest: bytes) -> SignedStatement:
        """This node's signed ``chain`` statement (a leader's head)."""
        return sign_statement(self.signer, self._chain, index, term, digest)

    # ------------------------------------------------------------ follower side
    def check_chain(self, previous_digest: bytes, entries: Sequence[Entry]) -> str | None:
        digest = previous_digest
        for entry in entries:
            try:
                digest = entry_digest(digest, entry.term, entry.index, entry.kind, entry.data)
            except ValueError as exc:
                return str(exc)
            if entry.digest != digest:
                return f"entry {entry.index} breaks the hash chain"
        return self.validate(previous_digest, entries)

    def _digest_at(self, index: int) -> bytes | None:
        if index == 0:
            return b""
        node = self.node
        entry = node.entry_at(index) if node is not None else None
        return None if entry is None else entry.digest

    def response_statement(self, message: AppendEntriesResponse, digest: bytes, lock: int = 0) -> bytes:
        """The bytes a response's signature covers (``digest``: at its index)."""
        if message.success:
            return statement_bytes(self._ack, message.index, message.term, digest + _LOCK.pack(lock))
        return statement_bytes(
            self._nack, message.index, message.term, _encode((message.hint_index, message.hint_term))
        )

    def sign_ack(self, term: int, index: int, digest: bytes, lock: int) -> bytes:
        """A success response's signature bytes: ``lock ‖ signature``."""
        data = statement_bytes(self._ack, index, term, digest + _LOCK.pack(lock))
        return _LOCK.pack(lock) + self.signer.sign(data)

    def sign_append_response(self, message: AppendEntriesResponse) -> bytes:
        if not message.success:
            return _LOCK.pack(0) + self.signer.sign(self.response_statement(message, b""))
        term, index = message.term, message.index
        acked_term, acked_index = self.acked
        if term != acked_term or index > acked_index:
            self.acked = (term, index if term != acked_term else max(index, acked_index))
        lock = min(self.lock(term), index)
        return self.sign_ack(term, index, self._digest_at(index) or b"", lock)

    def replace_entry(self, held: Entry, entry: Entry) -> bool:
        return self.replace(held, entry)

    def kept_on_leading(self, last_index: int) -> int:
        return last_index if self.keep is None else self.keep(last_index)

    # ------------------------------------------------------------ verification
    def verify_append(self, sender: NodeId, message: AppendEntries) -> str | None:
        if type(message) is not SignedAppendEntries:
            return "unsigned AppendEntries in a watched shard"
        plain = unsigned(message)
        assert isinstance(plain, AppendEntries)
        try:
            data = self.append_statement(plain)
        except (TypeError, ValueError):
            return "malformed AppendEntries"
        if not self.verifier.verify(sender, data, message.signature):
            return "bad signature"
        return None

    def verify_append_response(self, sender: NodeId, message: AppendEntriesResponse) -> str | None:
        if type(message) is not SignedAppendEntriesResponse:
            return "unsigned AppendEntries response in a watched shard"
        lock = ack_lock(message)
        if lock is None:
            return "malformed response signature"
        digest = b""
        if message.success:
            held = self._digest_at(message.index)
            if held is None:
                return f"acknowledges index {message.index}, which this leader does not hold"
            if lock > message.index:
                return f"claims a lock at {lock} beyond the acknowledged index {message.index}"
            digest = held
        plain = unsigned(message)
        assert isinstance(plain, AppendEntriesResponse)
        data = self.response_statement(plain, digest, lock)
        if not self.verifier.verify(sender, data, message.signature[_LOCK.size :]):
            return "bad signature"
        return None

    def verified(self, sender: NodeId, message: AppendEntries | AppendEntriesResponse) -> None:
        self.on_verified(sender, message)
