"""The core state machine's whole state, as data (``CoreSnapshot``).

Theory of operation. Everything ``CoreState`` decides from lives in one
msgspec struct, so the state can be encoded canonically: a new epoch's core
starts from the old core's final snapshot (``CoreHandover``), a restarted
member rebuilds from its epoch's starting snapshot plus its log, and two
members hold the same state exactly when their encodings are equal
(``snapshot_digest``). Sets are kept as sorted tuples and every dict is
filled in log order, so equal histories give equal bytes.

``DynamicCoreSnapshot`` adds the shard map and the reshard table
(``quorate.hrb.reshard``) under dynamic sharding; a deployment without it
encodes exactly as before (the decoder tells the two apart by the length of
the encoded array).

``CoreStart`` is what a member persists when it joins an epoch (the storage
snapshot of the core group, index 0 so it covers no log entry): the starting
snapshot's bytes and the member's own key share.
"""

from __future__ import annotations

import hashlib

import msgspec

from quorate.hrb.core.commands import DkgItem
from quorate.hrb.core.config import CoreRules
from quorate.hrb.reputation import NodeFacts
from quorate.hrb.reshard import ReshardState
from quorate.hrb.txn import TxnTableState

__all__ = [
    "CoreSnapshot",
    "CoreStart",
    "DynamicCoreSnapshot",
    "NodeRecord",
    "ShardRecord",
    "Transition",
    "decode_snapshot",
    "encode_snapshot",
    "reshard_state",
    "snapshot_digest",
]


class NodeRecord(msgspec.Struct, array_like=True):
    """A node of the deployment: its shard (kept after an eviction) and its
    X25519 key for key generation."""

    shard: int
    encryption_key: bytes


class ShardRecord(msgspec.Struct, array_like=True):
    """A shard as the core knows it."""

    members: tuple[int, ...]
    """Current members, sorted (evicted ones removed)."""
    term: int = 0
    """The highest leader term the core has accepted from the shard."""
    leader: int = 0
    """The node that claimed ``term`` (0: none known)."""
    report_period: int = 0
    """The last ``ReputationReport`` number taken from the shard."""


class Transition(msgspec.Struct, array_like=True):
    """An epoch change in progress: the next members' key generation, run
    through this core's log."""

    epoch: int
    """The epoch being prepared (current + 1)."""
    attempt: int
    session: bytes
    members: tuple[int, ...]
    threshold: int
    deadline: int
    """Log clock tick at which this attempt starts over."""
    items: list[DkgItem] = msgspec.field(default_factory=list)
    """Every item ordered for ``epoch`` (all attempts); a relay's seq indexes it."""
    submitted: dict[int, list[bytes]] = msgspec.field(default_factory=dict)
    """Sender -> digests of its key generation messages this attempt."""
    timeouts: dict[str, list[int]] = msgspec.field(default_factory=dict)
    """Phase -> members that asked to close it."""
    closed: list[str] = msgspec.field(default_factory=list)
    outcomes: dict[int, bytes] = msgspec.field(default_factory=dict)
    """Sender -> digest of its outcome (b'' for a failure)."""
    keys: dict[bytes, tuple[tuple[bytes, ...], tuple[int, ...]]] = msgspec.field(default_factory=dict)
    """Outcome digest -> (commitments, qualified)."""


class CoreSnapshot(msgspec.Struct, array_like=True):
    """The core state machine's state (see the module docstring)."""

    epoch: int
    members: tuple[int, ...]
    """This epoch's core, sorted (share index i is the i-th)."""
    threshold: int
    commitments: tuple[bytes, ...]
    """This epoch's threshold key (``commitments[0]``: the group public key)."""
    rules: CoreRules
    beacon: bytes
    """The genesis beacon (ties in core selection hash it with the epoch)."""
    nodes: dict[int, NodeRecord]
    shards: dict[int, ShardRecord]
    facts: dict[int, NodeFacts] = msgspec.field(default_factory=dict)
    txns: TxnTableState = msgspec.field(default_factory=TxnTableState)
    ticks: dict[int, int] = msgspec.field(default_factory=dict)
    """Member -> the highest tick count it proposed this epoch."""
    clock: int = 0
    """Core log time in ticks: the (f + 1)-th largest of ``ticks``."""
    decisions: int = 0
    """Decisions made this epoch (the last one's certificate index)."""
    chain: bytes = b""
    """SHA-256 chain over every decision ever made (a fingerprint of history)."""
    transition: Transition | None = None
    epoch_change_wanted: bool = False
    """A core member was evicted: change epochs now."""
    closed: bool = False
    """The epoch change is decided: this epoch orders nothing more."""
    refusals: dict[str, int] = msgspec.field(default_factory=dict)
    """Refused commands by reason (every epoch, cumulative)."""


class DynamicCoreSnapshot(CoreSnapshot):
    """A core snapshot under dynamic sharding: also the shard map and the
    change in flight."""

    reshard: ReshardState | None = None


def reshard_state(snapshot: CoreSnapshot) -> ReshardState | None:
    """The reshard data of ``snapshot`` (None without dynamic sharding)."""
    return snapshot.reshard if isinstance(snapshot, DynamicCoreSnapshot) else None


class CoreStart(msgspec.Struct, array_like=True):
    """What a member persists when it joins an epoch (see the module docstring)."""

    index: int
    """Always 0: the snapshot covers no entry of the epoch's log."""
    epoch: int
    state: bytes
    share_index: int
    """0 when the member holds no share (its key generation gave it none)."""
    share_secret: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CoreSnapshot)
_dynamic_decoder = msgspec.msgpack.Decoder(DynamicCoreSnapshot)
_DYNAMIC_HEADER = _encoder.encode([None] * len(DynamicCoreSnapshot.__struct_fields__))[:3]


def encode_snapshot(snapshot: CoreSnapshot) -> bytes:
    return _encoder.encode(snapshot)


def decode_snapshot(data: bytes) -> CoreSnapshot:
    """``msgspec.DecodeError`` / ``ValidationError`` on malformed bytes."""
    if data[:3] == _DYNAMIC_HEADER:
        dynamic: DynamicCoreSnapshot = _dynamic_decoder.decode(data)
        return dynamic
    snapshot: CoreSnapshot = _decoder.decode(data)
    return snapshot


def snapshot_digest(snapshot: CoreSnapshot) -> bytes:
    return hashlib.sha256(encode_snapshot(snapshot)).digest()
