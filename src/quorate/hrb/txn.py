"""Cross-shard transactions as the core sees them: which shards a transaction
involves, and the core's side of two-phase commit (docs/hrb.md section 4).

Theory of operation. The core is the coordinator of a two-phase commit whose
log is the core's BFT log, so the coordinator cannot crash or lie as long as
the core holds: every core member applies the same ``TxnTable`` operations
in the same order and reaches the same decisions.

- ``shard_of_key``: a key belongs to the shard with the highest
  SHA-256(key ‖ shard) (rendezvous hashing: consistent, no table to agree on,
  a key moves only if its shard goes away).
- ``TxnTable.begin`` records a transaction (``CoreTxn``) with its involved
  shards and a deadline in core log time (``quorate.hrb.core.state``'s clock).
- ``TxnTable.vote`` records the first vote of each involved shard. The
  transaction is **decided exactly once**: abort at the first ``no``, commit
  when every involved shard voted ``yes``; later votes (duplicates, votes
  after the decision, a vote contradicting the shard's first) change nothing
  and say why (``VoteOutcome``).
- ``TxnTable.expire`` aborts what is still undecided at its deadline.
  Deadlines are set from a clock that never goes back, so the open table
  (in insertion order) is sorted by deadline and expiry stops at the first
  transaction still in time.
- Decided transaction ids are remembered (``decided``, the last
  ``decided_kept`` of them, oldest forgotten first) so a retried request or a
  late vote is recognised instead of starting the transaction again.

Choices the design left open, and why these: the coordinator is the core's
log, not a shard leader, so the classic blocking case of two-phase commit
(a coordinator that fails between prepare and decision) cannot happen
while the core holds; an undecided transaction is aborted at its deadline
(presumed abort) because a shard that never answers must not hold locks
forever, and because the abort is itself a logged decision, a late yes vote
cannot turn it into a commit; a decision is sent to the home shard too (not
only the involved shards) so the agent is answered even when its home
shard owns none of the keys.

Invariants (``check``): a commit has a ``yes`` vote from every involved
shard; a transaction is in ``open`` or in ``decided``, never both; every
recorded vote is from an involved shard.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Iterable

import msgspec

from quorate.errors import invariant
from quorate.hrb.messages import Transaction, TxnBegin, TxnDecision

__all__ = [
    "CoreTxn",
    "TxnTable",
    "TxnTableState",
    "VoteOutcome",
    "involved_shards",
    "shard_of_key",
]


KEY_SHARD_CACHE = 1 << 16
"""Keys whose shard ``shard_of_key`` remembers."""


@functools.lru_cache(maxsize=KEY_SHARD_CACHE)
def shard_of_key(key: str, shards: int) -> int:
    """The shard (1..shards) that owns ``key``: rendezvous hashing (one
    SHA-256 per shard, so answers are cached: the map is a pure function)."""
    if shards < 1:
        raise ValueError(f"there is at least one shard, got {shards}")
    data = key.encode()
    best, owner = b"", 1
    for shard in range(1, shards + 1):
        weight = hashlib.sha256(data + b"\x00" + shard.to_bytes(4, "big")).digest()
        if weight > best:
            best, owner = weight, shard
    return owner


def involved_shards(txn: Transaction, shards: int) -> tuple[int, ...]:
    """The shards owning the transaction's keys, in increasing order."""
    return tuple(sorted({shard_of_key(op.key, shards) for op in txn.ops}))


class CoreTxn(msgspec.Struct, array_like=True):
    """One undecided transaction at the core."""

    txn: Transaction
    shards: tuple[int, ...]
    deadline: int
    """Core log time (clock ticks) at which it aborts if still undecided."""
    votes: dict[int, bool] = msgspec.field(default_factory=dict)
    reasons: dict[int, str] = msgspec.field(default_factory=dict)


class TxnTableState(msgspec.Struct, array_like=True):
    """The table's whole state (part of the core's snapshot)."""

    open: dict[bytes, CoreTxn] = msgspec.field(default_factory=dict)
    decided: dict[bytes, bool] = msgspec.field(default_factory=dict)
    """txn id -> committed, oldest first."""


class VoteOutcome(enum.Enum):
    """What a shard's vote did."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate vote"
    CONFLICT = "vote contradicts the shard's earlier vote"
    UNKNOWN = "unknown transaction"
    NOT_INVOLVED = "shard not involved in the transaction"
    ALREADY_DECIDED = "transaction already decided"


class TxnTable:
    """The core's two-phase commit table (see the module docstring)."""

    __slots__ = ("decided_kept", "state")

    def __init__(self, state: TxnTableState | None = None, *, decided_kept: int = 1 << 20) -> None:
        self.state = state or TxnTableState()
        self.decided_kept = decided_kept

    @property
    def open(self) -> dict[bytes, CoreTxn]:
        return self.state.open

    def is_known(self, txn_id: bytes) -> bool:
        return txn_id in self.state.open or txn_id in self.state.decided

    def outcome(self, txn_id: bytes) -> bool | None:
        """True/False once decided (commit/abort), None otherwise or if forgotten."""
        return self.state.decided.get(txn_id)

    def begin(self, txn: Transaction, shards: tuple[int, ...], deadline: int) -> TxnBegin:
        invariant(not self.is_known(txn.txn_id), "a transaction began twice")
        invariant(bool(shards), "a transaction with no involved shard")
        self.state.open[txn.txn_id] = CoreTxn(txn, shards, deadline)
        return TxnBegin(txn, shards)

    def vote(
        self, txn_id: bytes, shard: int, vote: bool, reason: str
    ) -> tuple[VoteOutcome, tuple[TxnDecision, CoreTxn] | None]:
        """Record a shard's vote; returns what it did and, if it decided the
        transaction, the decision with the transaction's record."""
        record = self.state.open.get(txn_id)
        if record is None:
            if txn_id in self.state.decided:
                return VoteOutcome.ALREADY_DECIDED, None
            return VoteOutcome.UNKNOWN, None
        if shard not in record.shards:
            return VoteOutcome.NOT_INVOLVED, None
        earlier = record.votes.get(shard)
        if earlier is not None:
            return (VoteOutcome.DUPLICATE if earlier == vote else VoteOutcome.CONFLICT), None
        record.votes[shard] = vote
        if not vote:
            record.reasons[shard] = reason
            return VoteOutcome.RECORDED, self._decide(txn_id, False, f"shard {shard} voted no: {reason}")
        if len(record.votes) == len(record.shards):
            return VoteOutcome.RECORDED, self._decide(txn_id, True, "")
        return VoteOutcome.RECORDED, None

    def expire(self, now: int) -> list[tuple[TxnDecision, CoreTxn]]:
        """Abort every open transaction whose deadline is at or before ``now``."""
        out = []
        while self.state.open:
            txn_id, record = next(iter(self.state.open.items()))
            if record.deadline > now:
                break
            missing = [s for s in record.shards if s not in record.votes]
            out.append(self._decide(txn_id, False, f"timeout: no vote from shard(s) {missing}"))
        return out

    def abort(self, txn_id: bytes, reason: str) -> tuple[TxnDecision, CoreTxn]:
        """Abort open transaction ``txn_id`` now (a reshard moves one of its keys)."""
        invariant(txn_id in self.state.open, "abort of a transaction that is not open")
        return self._decide(txn_id, False, reason)

    def rebase(self, offset: int) -> None:
        """Move every deadline ``offset`` ticks earlier (a new epoch's clock
        starts at zero); order is kept."""
        for record in self.state.open.values():
            record.deadline = max(0, record.deadline - offset)

    def _decide(self, txn_id: bytes, commit: bool, reason: str) -> tuple[TxnDecision, CoreTxn]:
        record = self.state.open.pop(txn_id)
        if commit:
            invariant(
                set(record.votes) == set(record.shards) and all(record.votes.values()),
                "commit without a yes vote from every involved shard",
            )
        decided = self.state.decided
        decided[txn_id] = commit
        while len(decided) > self.decided_kept:
            del decided[next(iter(decided))]
        return TxnDecision(txn_id, commit, reason), record

    def check(self) -> None:
        """The table's invariants (see the module docstring)."""
        for txn_id, record in self.state.open.items():
            invariant(txn_id not in self.state.decided, "a transaction both open and decided")
            invariant(set(record.votes) <= set(record.shards), "a vote from an uninvolved shard")

    def undecided(self) -> Iterable[bytes]:
        return iter(self.state.open)
