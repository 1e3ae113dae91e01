"""A shard's state machine: its keys, and its side of cross-shard
transactions (``docs/hrb.md`` section 4).

Theory of operation
-------------------
Every member applies the same certified entries in the same order, so
``ShardStore.apply`` is deterministic: no clock, no randomness, and every
decision it takes depends only on the store and the entry. The log carries
``ShardCommand`` values:

- ``IntraTxn(txn)``: a transaction whose every key this shard owns. Applied
  at once, all or nothing: the operations run in order on a scratch copy
  (``put``, ``get``, ``add`` with its ``minimum``, ``cas``); any failed
  condition, or a key locked by a prepared cross-shard transaction, aborts
  it with a reason. Exactly once per client session (``client``, ``seq``).
- ``TxnRequested(txn)``: the home shard's record of a transaction that names
  another shard's key. Applying it asks the leader to send the core a
  ``TxnRequest``; a leader elected later re-sends it from this record until
  the outcome arrives.
- ``CertifiedDecision(certificate)``: a core decision, applied only if its
  threshold signature verifies under the epoch's key (``certificate_refusal``).
  The epoch keys are the store's own state: the genesis key, then one per
  certified ``EpochChange``; a certificate of an epoch that ended (its
  ``EpochChange`` was applied) and ordered after that change is refused.

  * ``TxnBegin``: the **prepare record**. The shard's operations (the keys it
    owns) are evaluated against its data; if none of their keys is locked
    and every condition holds, the vote is yes, the keys are locked and the
    writes kept; otherwise the vote is no (no lock). The outcome, with the
    entry's (term, index, digest), is what the shard votes
    (``PrepareRecord``).
  * ``TxnDecision``: commit applies the kept writes, abort drops them; the
    locks are released either way; the home shard reports the outcome to
    its client. Idempotent: a second copy changes nothing.
  * ``Evict``: the node is out (the replica refuses it from then on);
    ``EpochChange``: the next epoch's key.

Any order of certified begins and decisions leaves the store consistent: an
abort that arrives before its begin is remembered, and the begin then
prepares nothing; a commit before its begin (the core cannot order one
unless this shard voted yes, so only a faulty core sends it) applies the
writes if the operations still hold and records a ``Violation`` if they do
not. A commit for a transaction this shard voted no on is a ``Violation``
too: the store never applies writes whose conditions failed, and reports
the broken atomicity instead of hiding it.

``entry_refusal`` is the shard's validation of an entry's bytes, the part
that needs no state (decoding, sizes, actions, which shard owns each key);
a leader that puts a refused entry into a signed AppendEntries has produced
invalid-entry evidence against itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.hrb.messages import (
    ACTIONS,
    TXN_ID_BYTES,
    CoreCertificate,
    EpochChange,
    Evict,
    MappedTxnBegin,
    Transaction,
    TxnBegin,
    TxnDecision,
    TxnOp,
    certificate_bytes,
    decode_decision,
)
from quorate.hrb.reshard import ReshardAbort, ReshardBegin, ReshardCommit
from quorate.hrb.shard.config import MAX_KEY_BYTES

__all__ = [
    "CertificateCheck",
    "CertifiedDecision",
    "ClientTxn",
    "CrossShardRequest",
    "EntryRules",
    "EpochLearned",
    "IntraTxn",
    "KeyShard",
    "NodeEvicted",
    "PrepareRecord",
    "Refusal",
    "ShardCommand",
    "ShardStore",
    "TxnOutcome",
    "TxnRequested",
    "Violation",
    "decode_command",
    "encode_command",
    "hash_key_shard",
]

KeyShard = Callable[[str], int]
"""key -> the id of the shard that owns it."""
CertificateCheck = Callable[[bytes, bytes, bytes], bool]
"""(group public key, signed bytes, threshold signature) -> valid? The
threshold scheme's verification (BLS in real nodes, the cost model in the
simulator), injected so the shard never depends on the core's package."""

_ENTRY_NOOP = 1


class ClientTxn(msgspec.Struct, tag="client_txn", array_like=True, frozen=True):
    """What an agent proposes to its home shard (never in the log itself)."""

    txn: Transaction


class IntraTxn(msgspec.Struct, tag="intra", array_like=True, frozen=True):
    txn: Transaction


class TxnRequested(msgspec.Struct, tag="requested", array_like=True, frozen=True):
    txn: Transaction


class CertifiedDecision(msgspec.Struct, tag="certified", array_like=True, frozen=True):
    certificate: CoreCertificate


ShardCommand = ClientTxn | IntraTxn | TxnRequested | CertifiedDecision

_command_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(ShardCommand)


def encode_command(command: ShardCommand) -> bytes:
    return _command_encoder.encode(command)


def decode_command(data: bytes) -> ShardCommand:
    """``msgspec.DecodeError`` / ``ValidationError`` on malformed bytes."""
    command: ShardCommand = _command_decoder.decode(data)
    return command


def hash_key_shard(shards: int) -> KeyShard:
    """A fixed key -> shard map (SHA-256 of the key modulo ``shards``, plus one),
    until consistent hashing moves keys between shards."""

    def key_shard(key: str) -> int:
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % shards + 1

    return key_shard


# ---------------------------------------------------------------- effects
@dataclass(frozen=True, slots=True)
class TxnOutcome:
    """A transaction's result for its client (reported by the home shard)."""

    txn_id: bytes
    client: int
    seq: int
    committed: bool
    reason: str = ""
    reads: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class PrepareRecord:
    """This shard prepared ``txn_id`` at log (term, index, digest): its vote."""

    txn_id: bytes
    vote: bool
    reason: str
    term: int
    index: int
    digest: bytes
    ops: tuple[TxnOp, ...] = ()
    writes: tuple[tuple[str, str], ...] = ()
    reads: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class CrossShardRequest:
    """The home shard ordered ``txn``: the leader sends the core a ``TxnRequest``."""

    txn: Transaction


@dataclass(frozen=True, slots=True)
class NodeEvicted:
    node: int


@dataclass(frozen=True, slots=True)
class EpochLearned:
    epoch: int
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Entry ``index`` changed nothing, for ``reason``."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Violation:
    """The store was told to break atomicity and did not (see the docstring)."""

    txn_id: bytes
    reason: str


Effect = TxnOutcome | PrepareRecord | CrossShardRequest | NodeEvicted | EpochLearned | Refusal | Violation


# ---------------------------------------------------------------- validation
@dataclass(frozen=True, slots=True)
class EntryRules:
    """The shard's stateless validation of entries and transactions."""

    shard: int
    shards: int
    key_shard: KeyShard
    max_txn_ops: int = 64
    max_txn_bytes: int = 64 * 1024
    dynamic: bool = False
    """The map changes through the log (``quorate.hrb.reshard``): which shard
    owns a key is judged when an entry is applied, not when it is appended."""

    def owner(self, key: str) -> int | None:
        """The shard that owns ``key``, or ``None`` if the map names no shard."""
        try:
            owner = self.key_shard(key)
        except Exception:  # an injected map that fails on odd keys names no shard
            return None
        return owner if isinstance(owner, int) and 1 <= owner <= self.shards else None

    def txn_refusal(self, txn: Transaction) -> str | None:
        """Why this shard must not order ``txn`` as its home shard, or ``None``."""
        if len(txn.txn_id) != TXN_ID_BYTES:
            return f"txn_id must be {TXN_ID_BYTES} bytes, got {len(txn.txn_id)}"
        if txn.home_shard != self.shard:
            return f"the transaction's home shard is {txn.home_shard}, not shard {self.shard}"
        if not txn.ops:
            return "a transaction needs at least one operation"
        if len(txn.ops) > self.max_txn_ops:
            return f"the transaction has {len(txn.ops)} operations, at most {self.max_txn_ops} are allowed"
        return _ops_refusal(txn.ops, self)

    def is_local(self, txn: Transaction) -> bool:
        return all(self.owner(op.key) == self.shard for op in txn.ops)

    def command_refusal(self, command: ShardCommand) -> str | None:
        if isinstance(command, IntraTxn | TxnRequested) and self.dynamic:
            return self.txn_refusal(command.txn)
        if isinstance(command, IntraTxn):
            reason = self.txn_refusal(command.txn)
            if reason is None and not self.is_local(command.txn):
                foreign = next(op.key for op in command.txn.ops if self.owner(op.key) != self.shard)
                return f"an intra-shard transaction names key {foreign!r} of shard {self.owner(foreign)}"
            return reason
        if isinstance(command, TxnRequested):
            reason = self.txn_refusal(command.txn)
            if reason is None and self.is_local(command.txn):
                return "a cross-shard request that names only this shard's keys"
            return reason
        if isinstance(command, CertifiedDecision):
            cert = command.certificate
            if cert.epoch < 0 or cert.index < 0:
                return "a certificate with a negative epoch or index"
            try:
                decode_decision(cert.decision)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return "a certificate whose decision does not decode"
            return None
        return "a client's request is not a log entry"  # ClientTxn

    def entry_refusal(self, kind: int, data: bytes) -> str | None:
        """Why an entry of ``kind`` with ``data`` is invalid in this shard's log."""
        if kind == _ENTRY_NOOP:
            return None if not data else "a no-op entry with data"
        if kind != ENTRY_NORMAL:
            return None  # Raft's own (configuration) entries: Raft checks them
        if len(data) > self.max_txn_bytes:
            return f"an entry of {len(data)} bytes exceeds max_txn_bytes ({self.max_txn_bytes})"
        try:
            command = decode_command(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return f"an entry that is not a shard command ({exc})"
        return self.command_refusal(command)


def _ops_refusal(ops: Iterable[TxnOp], rules: EntryRules | None) -> str | None:
    for op in ops:
        if op.action not in ACTIONS:
            return f"unknown action {op.action!r}; one of {', '.join(ACTIONS)}"
        if not op.key or len(op.key.encode()) > MAX_KEY_BYTES:
            return f"a key must have 1..{MAX_KEY_BYTES} bytes"
        if rules is not None and rules.owner(op.key) is None:
            return f"key {op.key!r} maps to no shard of 1..{rules.shards}"
    return None


# ---------------------------------------------------------------- the store
@dataclass(slots=True)
class _Epoch:
    threshold: int
    group_public_key: bytes
    members: tuple[int, ...]
    ended_at: int | None = None
    """Core index of the ``EpochChange`` that ended this epoch."""


@dataclass(slots=True)
class ShardStore:
    """The data a shard owns and its 2PC records (see the module docstring)."""

    rules: EntryRules
    check_certificate: CertificateCheck
    genesis: EpochChange
    data: dict[str, str] = field(default_factory=dict)
    locks: dict[str, bytes] = field(default_factory=dict)
    """key -> the prepared transaction holding it."""
    prepared: dict[bytes, PrepareRecord] = field(default_factory=dict)
    """Prepared and not yet decided, whatever the vote."""
    decided: dict[bytes, bool] = field(default_factory=dict)
    requested: dict[bytes, Transaction] = field(default_factory=dict)
    """Home-shard transactions sent to the core and not yet decided."""
    sessions: dict[int, tuple[int, TxnOutcome]] = field(default_factory=dict)
    evicted: set[int] = field(default_factory=set)
    applied_index: int = 0
    refused: int = 0
    violations: list[Violation] = field(default_factory=list)
    _epochs: dict[int, _Epoch] = field(default_factory=dict)
    _epoch: int = 0
    handoff: Any = None
    """A ``quorate.hrb.reshard.ShardHandoff`` under dynamic sharding."""

    def __post_init__(self) -> None:
        g = self.genesis
        self._epochs[g.epoch] = _Epoch(g.threshold, g.group_public_key, g.members)
        self._epoch = g.epoch

    # ------------------------------------------------------------ views
    @property
    def epoch(self) -> int:
        return self._epoch

    def epoch_members(self, epoch: int | None = None) -> tuple[int, ...]:
        known = self._epochs.get(self._epoch if epoch is None else epoch)
        return () if known is None else known.members

    def knows_epoch(self, epoch: int) -> bool:
        return epoch in self._epochs

    def certificate_refusal(self, certificate: CoreCertificate) -> str | None:
        """Why ``certificate`` is not a valid core decision for this store, or ``None``."""
        known = self._epochs.get(certificate.epoch)
        if known is None:
            return f"certificate of unknown epoch {certificate.epoch} (this shard knows up to {self._epoch})"
        if known.ended_at is not None and certificate.index > known.ended_at:
            return f"certificate ordered after epoch {certificate.epoch} ended (core index {known.ended_at})"
        message = certificate_bytes(certificate.epoch, certificate.index, certificate.decision)
        try:
            ok = self.check_certificate(known.group_public_key, message, certificate.signature)
        except Exception:  # a verifier must not raise on peer bytes; treat as invalid
            ok = False
        return None if ok else "the certificate's threshold signature does not verify"

    def knows_decision(self, certificate: CoreCertificate) -> bool:
        """True if applying ``certificate`` would change nothing (already applied)."""
        try:
            decision = decode_decision(certificate.decision)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        if isinstance(decision, TxnBegin):
            txn_id = decision.txn.txn_id
            return txn_id in self.prepared or txn_id in self.decided or self.rules.shard not in decision.shards
        if isinstance(decision, TxnDecision):
            return decision.txn_id in self.decided
        if isinstance(decision, Evict):
            return decision.node in self.evicted
        if isinstance(decision, ReshardBegin | ReshardCommit | ReshardAbort):
            return self.handoff is None or bool(self.handoff.knows(decision))
        return decision.epoch <= self._epoch

    def knows_txn(self, txn: Transaction) -> bool:
        """True if this shard already ordered ``txn`` as its home shard."""
        if txn.txn_id in self.decided or txn.txn_id in self.requested:
            return True
        session = self.sessions.get(txn.client)
        return txn.client != 0 and session is not None and txn.seq <= session[0]

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def fingerprint(self) -> bytes:
        """A digest of everything the store holds (replicas at one index agree)."""
        state: tuple[Any, ...] = (
            sorted(self.data.items()),
            sorted(self.locks.items()),
            sorted((k, r.vote, r.index) for k, r in self.prepared.items()),
            sorted(self.decided.items()),
            sorted(self.requested),
            sorted(self.evicted),
            self._epoch,
        )
        if self.handoff is not None:
            state = (*state, self.handoff.fingerprint())
        return hashlib.sha256(_command_encoder.encode(state)).digest()

    # ------------------------------------------------------------ applying
    def apply(self, entry: Entry) -> list[Effect]:
        """Apply certified ``entry`` (the next index); return what it caused."""
        if entry.index != self.applied_index + 1:
            raise ValueError(f"entry {entry.index} applied after {self.applied_index}")
        self.applied_index = entry.index
        if entry.kind != ENTRY_NORMAL:
            return []
        reason = self.rules.entry_refusal(entry.kind, entry.data)
        if reason is not None:
            self.refused += 1
            return [Refusal(entry.index, reason)]
        command = decode_command(entry.data)
        if isinstance(command, IntraTxn):
            return [self._apply_intra(command.txn)]
        if isinstance(command, TxnRequested):
            return self._apply_requested(command.txn)
        assert isinstance(command, CertifiedDecision)
        return self._apply_certified(command.certificate, entry)

    def _apply_intra(self, txn: Transaction) -> TxnOutcome:
        session = self.sessions.get(txn.client) if txn.client else None
        if session is not None and txn.seq <= session[0]:
            if txn.seq == session[0]:
                return session[1]
            return TxnOutcome(txn.txn_id, txn.client, txn.seq, False, "a later request of this session was applied")
        locked = next((op.key for op in txn.ops if op.key in self.locks), None)
        moved = None if self.handoff is None else self.handoff.write_refusal(op.key for op in txn.ops)
        if moved is not None:
            outcome = TxnOutcome(txn.txn_id, txn.client, txn.seq, False, moved)
        elif locked is not None:
            outcome = TxnOutcome(
                txn.txn_id, txn.client, txn.seq, False,
                f"key {locked!r} is locked by a prepared cross-shard transaction",
            )
        else:
            ok, reason, writes, reads = self._evaluate(txn.ops)
            if ok:
                self.data.update(writes)
            outcome = TxnOutcome(txn.txn_id, txn.client, txn.seq, ok, reason, reads)
        if txn.client:
            self.sessions[txn.client] = (txn.seq, outcome)
        return outcome

    def _apply_requested(self, txn: Transaction) -> list[Effect]:
        if txn.txn_id in self.decided or txn.txn_id in self.requested:
            return []
        if self.handoff is not None:
            # The home shard answers with its own reads: a read of a key it does not own (the
            # client's map is older than this shard's) goes back to the client, not to the core.
            read = next((op.key for op in txn.ops if op.action == "get" and self.rules.owner(op.key) != self.rules.shard), None)
            if read is not None:
                reason = f"wrong shard: key {read!r} is read on shard {self.rules.owner(read)} (map {self.handoff.map.version})"
                return [TxnOutcome(txn.txn_id, txn.client, txn.seq, False, reason)]
        self.requested[txn.txn_id] = txn
        return [CrossShardRequest(txn)]

    def _apply_certified(self, certificate: CoreCertificate, entry: Entry) -> list[Effect]:
        reason = self.certificate_refusal(certificate)
        if reason is not None:
            self.refused += 1
            return [Refusal(entry.index, reason)]
        decision = decode_decision(certificate.decision)
        if isinstance(decision, TxnBegin):
            return self._prepare(decision, entry)
        if isinstance(decision, TxnDecision):
            return self._decide(decision)
        if isinstance(decision, Evict):
            if decision.node in self.evicted:
                return []
            self.evicted.add(decision.node)
            return [NodeEvicted(decision.node)]
        if isinstance(decision, ReshardBegin | ReshardCommit | ReshardAbort):
            problem = None if self.handoff is None else self.handoff.apply(decision, self)
            if problem is not None:
                self.refused += 1
                return [Refusal(entry.index, problem)]
            return []
        assert isinstance(decision, EpochChange)
        return self._change_epoch(certificate, decision, entry)

    def _my_ops(self, txn: Transaction) -> tuple[TxnOp, ...]:
        return tuple(op for op in txn.ops if self.rules.owner(op.key) == self.rules.shard)

    def _prepare(self, begin: TxnBegin, entry: Entry) -> list[Effect]:
        txn = begin.txn
        txn_id = txn.txn_id
        if self.rules.shard not in begin.shards or txn_id in self.prepared:
            return []
        decided = self.decided.get(txn_id)
        if decided is False:
            return []  # aborted before this shard heard of it: nothing to lock
        ops = self._my_ops(txn)
        reason = _ops_refusal(txn.ops, None)
        writes: dict[str, str] = {}
        reads: tuple[tuple[str, str | None], ...] = ()
        if reason is None and self.handoff is not None:
            version = begin.map_version if isinstance(begin, MappedTxnBegin) else None
            reason = self.handoff.prepare_refusal(version, (op.key for op in ops))
        if reason is None:
            locked = next((op.key for op in ops if op.key in self.locks), None)
            if locked is not None:
                reason = f"key {locked!r} is locked by transaction {self.locks[locked].hex()}"
            else:
                ok, why, writes, reads = self._evaluate(ops)
                reason = None if ok else why
        vote = reason is None
        record = PrepareRecord(
            txn_id, vote, reason or "", entry.term, entry.index, entry.digest, ops,
            tuple(sorted(writes.items())), reads,
        )
        if decided is True:
            # A commit ordered before this shard prepared (only a faulty core).
            if not vote:
                return self._violate(txn_id, f"commit decided for a transaction this shard cannot prepare: {reason}")
            self.data.update(writes)
            return [record]
        self.prepared[txn_id] = record
        if vote:
            for op in ops:
                self.locks[op.key] = txn_id
        return [record]

    def _decide(self, decision: TxnDecision) -> list[Effect]:
        txn_id = decision.txn_id
        if txn_id in self.decided:
            return []
        self.decided[txn_id] = decision.commit
        effects: list[Effect] = []
        record = self.prepared.pop(txn_id, None)
        if record is not None:
            if record.vote:
                for op in record.ops:
                    if self.locks.get(op.key) == txn_id:
                        del self.locks[op.key]
                if decision.commit:
                    self.data.update(record.writes)
                if self.handoff is not None:
                    self.handoff.drained(self)
            elif decision.commit:
                effects += self._violate(txn_id, f"commit decided for a transaction this shard voted no on: {record.reason}")
        txn = self.requested.pop(txn_id, None)
        if txn is not None:
            reads = record.reads if record is not None and decision.commit else ()
            effects.append(TxnOutcome(txn_id, txn.client, txn.seq, decision.commit, decision.reason, reads))
        return effects

    def _change_epoch(self, certificate: CoreCertificate, change: EpochChange, entry: Entry) -> list[Effect]:
        if change.epoch <= self._epoch:
            return []
        if certificate.epoch != self._epoch or change.epoch != self._epoch + 1:
            self.refused += 1
            return [Refusal(entry.index, f"epoch {change.epoch} must be decided by epoch {change.epoch - 1}")]
        self._epochs[self._epoch].ended_at = certificate.index
        self._epoch = change.epoch
        self._epochs[change.epoch] = _Epoch(change.threshold, change.group_public_key, change.members)
        return [EpochLearned(change.epoch, change.members)]

    def _violate(self, txn_id: bytes, reason: str) -> list[Effect]:
        violation = Violation(txn_id, reason)
        self.violations.append(violation)
        return [violation]

    def _evaluate(
        self, ops: Iterable[TxnOp]
    ) -> tuple[bool, str, dict[str, str], tuple[tuple[str, str | None], ...]]:
        """Run ``ops`` on a scratch copy: (ok, reason, writes, reads)."""
        scratch: dict[str, str] = {}
        reads: list[tuple[str, str | None]] = []
        data = self.data
        for op in ops:
            key = op.key
            current = scratch[key] if key in scratch else data.get(key)
            action = op.action
            if action == "get":
                reads.append((key, current))
            elif action == "put":
                scratch[key] = op.value
            elif action == "add":
                try:
                    base = 0 if current is None else int(current)
                except ValueError:
                    return False, f"key {key!r} does not hold an integer", {}, ()
                value = base + op.delta
                if op.minimum is not None and value < op.minimum:
                    return False, f"key {key!r} would fall to {value}, below {op.minimum}", {}, ()
                scratch[key] = str(value)
            else:  # cas
                if current != op.expected:
                    return False, f"key {key!r} holds {current!r}, not {op.expected!r}", {}, ()
                scratch[key] = op.value
        return True, "", scratch, tuple(reads)
