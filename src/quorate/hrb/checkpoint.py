"""A shard's erasure-coded checkpoints, state reconstruction and delta
synchronization (the paper's section 3.4).

Theory of operation
-------------------
**The image.** A shard's state is its ``ShardStore``. ``shard_image`` writes
it as a map of short keys to bytes (one item per data key, lock, prepare
record, decision, pending request, client session, evicted node and epoch,
plus one item of counters), and ``restore_shard_store`` reads it back:
``restore(image(s))`` holds what ``s`` holds (``fingerprint`` equal) and
applies later entries exactly as ``s`` would. ``encode_image`` is canonical
(items sorted by key), so members at one index encode the same bytes.

**Periodic checkpoints.** Every ``CheckpointConfig.interval_entries`` applied
entries (``checkpoint_due``) a member cuts the encoded image with
``quorate.crypto.erasure`` into k data + m parity fragments and signs the
checkpoint root (``checkpoint_shard``); other members co-sign it after
computing the same root. Fragment i goes to the i-th member of the shard
(``distribute``), so each member stores 1/k of the state instead of all of
it and any k members can give it back.

**Reconstruction** (``CheckpointRecovery``, a sans-IO state machine of a
failed or new member): ask every peer for its newest manifest; accept the
first one whose root carries enough member signatures; fetch fragment i from
member i for k indexes at once (data fragments first: they decode cheapest);
a fragment that fails its checksum is rejected (counted, with its sender)
and another index is asked for, as is one whose holder does not answer
within ``request_timeout_s``; decode from k good ones and check the signed
state digest; then fetch the committed log after the checkpoint index and
hand both to the caller, who restores the store and replays the entries.
``CheckpointHolder`` is a member's side: it answers those requests.

**Delta synchronization.** A member that was down briefly still holds a
stale image. Both sides hash the image into ``buckets`` (a power of two; a
key's bucket is a prefix of its SHA-256) and build a Merkle tree over the
bucket digests. The stale member sends its applied index and its bucket
digests, truncated to ``LEAF_DIGEST_BYTES`` (``DeltaRequest``); the serving member compares them with its own
and prices both answers exactly, by their encoded size: the items of the
buckets that differ (the Merkle diff), or the committed entries after the
stale index (the log suffix), when it still has them. It sends the smaller,
or the whole image when that is smaller still (``answer_delta``). The stale member patches its image or replays the
entries, and checks the Merkle root of the result against the root the
server announced (``apply_delta``); the caller compares that root with one
it trusts (a signed checkpoint, or the digest of a later committed state).

Pure functions and one state machine: no clock (``now`` is passed in), no
I/O, no randomness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from quorate.core.ready import ChainedEntry, Entry, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.core.wire import WireMessage
from quorate.crypto.erasure import (
    CheckpointFragment,
    CheckpointManifest,
    ErasureCodec,
    cosign,
    encode_checkpoint,
    fragment_refusal,
    manifest_refusal,
    merkle_root,
    rebuild_state,
)
from quorate.errors import ConfigError, LocalProtocolError
from quorate.hrb.messages import EpochChange, Transaction
from quorate.hrb.shard.state import (
    CertificateCheck,
    EntryRules,
    PrepareRecord,
    ShardStore,
    TxnOutcome,
    Violation,
    _Epoch,
)
from quorate.ids import NodeId

__all__ = [
    "CheckpointConfig",
    "CheckpointHolder",
    "CheckpointRecovery",
    "DeltaPlan",
    "DeltaReply",
    "DeltaRequest",
    "DeltaSession",
    "FragmentRequest",
    "LogSuffix",
    "LogSuffixRequest",
    "ManifestRequest",
    "Recovered",
    "RecoveryReady",
    "answer_delta",
    "apply_delta",
    "bucket_count",
    "bucket_digests",
    "checkpoint_due",
    "checkpoint_shard",
    "countersign",
    "decode_image",
    "delta_refusal",
    "distribute",
    "encode_image",
    "image_root",
    "restore_shard_store",
    "shard_image",
    "start_delta",
]

KEYS_PER_BUCKET = 1
"""Target items per delta bucket: a changed key costs about this many items
sent (buckets are a power of two, so 1 to 2 in practice). Larger buckets
make the request smaller and the diff coarser: with writes spread over the
keys, 16 keys a bucket turn 6 % of keys changed into 63 % of buckets sent."""
LEAF_DIGEST_BYTES = 8
"""Bucket digests in a request are truncated: a collision only hides a
changed bucket, which the check of the full Merkle root after the delta
catches (the delta is then refused and the member falls back to a full copy)."""
MAX_BUCKETS = 1 << 22
DEFAULT_REQUEST_TIMEOUT_S = 2.0

Image = dict[str, bytes]

_META = "m"
_enc = msgspec.msgpack.Encoder()
_image_decoder = msgspec.msgpack.Decoder(list[tuple[str, bytes]])


# ---------------------------------------------------------------- the image
def shard_image(store: ShardStore) -> Image:
    """Everything ``store`` holds, as key -> bytes (see the module docstring)."""
    image: Image = {}
    for key, value in store.data.items():
        image["d/" + key] = value.encode()
    for key, txn_id in store.locks.items():
        image["l/" + key] = txn_id
    for txn_id, record in store.prepared.items():
        image["p/" + txn_id.hex()] = _enc.encode(record)
    for txn_id, commit in store.decided.items():
        image["x/" + txn_id.hex()] = b"\x01" if commit else b"\x00"
    for txn_id, txn in store.requested.items():
        image["r/" + txn_id.hex()] = _enc.encode(txn)
    for client, (seq, outcome) in store.sessions.items():
        image[f"s/{client}"] = _enc.encode((seq, outcome))
    for node in store.evicted:
        image[f"v/{node}"] = b""
    # The store's epochs are its own state (the keys that check certificates):
    # a rebuilt store must hold them too.
    for epoch, known in store._epochs.items():
        image[f"e/{epoch}"] = _enc.encode((known.threshold, known.group_public_key, known.members, known.ended_at))
    image[_META] = _enc.encode((store.applied_index, store.refused, store.epoch, store.violations))
    return image


def restore_shard_store(
    image: Mapping[str, bytes],
    *,
    rules: EntryRules,
    check_certificate: CertificateCheck,
    genesis: EpochChange,
) -> ShardStore:
    """The ``ShardStore`` an image describes. ``ValueError`` (a
    ``msgspec.ValidationError`` or ``DecodeError`` among them) on an image that
    is not one."""
    if _META not in image:
        raise ValueError("the image has no counters item")
    decoded = [_decode_item(key, value) for key, value in image.items()]
    store = ShardStore(rules, check_certificate, genesis)
    store._epochs = {}
    for item in decoded:
        _put_item(store, item)
    if store.epoch not in store._epochs:
        raise ValueError(f"the image's current epoch {store.epoch} has no key")
    return store


_Item = tuple[str, str, Any]
"""(kind, name, decoded value) of one image item."""


def _decode_item(key: str, value: bytes) -> _Item:
    """Decode one image item (``ValueError`` if it is not one), touching no store."""
    kind, _, name = key.partition("/")
    if key == _META:
        return kind, name, msgspec.msgpack.decode(value, type=tuple[int, int, int, list[Violation]])
    if kind == "d":
        return kind, name, value.decode()
    if kind == "l":
        return kind, name, value
    if kind == "p":
        return kind, bytes.fromhex(name).hex(), msgspec.msgpack.decode(value, type=PrepareRecord)
    if kind == "x":
        return kind, bytes.fromhex(name).hex(), value == b"\x01"
    if kind == "r":
        return kind, bytes.fromhex(name).hex(), msgspec.msgpack.decode(value, type=Transaction)
    if kind == "s":
        return kind, str(int(name)), msgspec.msgpack.decode(value, type=tuple[int, TxnOutcome])
    if kind == "v":
        return kind, str(int(name)), None
    if kind == "e":
        fields = msgspec.msgpack.decode(value, type=tuple[int, bytes, tuple[int, ...], int | None])
        return kind, str(int(name)), _Epoch(*fields)
    raise ValueError(f"unknown image item {key!r}")


def _put_item(store: ShardStore, item: _Item) -> None:
    kind, name, value = item
    if kind == _META:
        store.applied_index, store.refused, store._epoch, store.violations = value
    elif kind == "d":
        store.data[name] = value
    elif kind == "l":
        store.locks[name] = value
    elif kind == "p":
        store.prepared[bytes.fromhex(name)] = value
    elif kind == "x":
        store.decided[bytes.fromhex(name)] = value
    elif kind == "r":
        store.requested[bytes.fromhex(name)] = value
    elif kind == "s":
        store.sessions[int(name)] = value
    elif kind == "v":
        store.evicted.add(int(name))
    else:  # "e", the only other kind _decode_item lets through
        store._epochs[int(name)] = value


def _remove_item(store: ShardStore, key: str) -> None:
    kind, _, name = key.partition("/")
    tables: dict[str, dict[Any, Any]] = {
        "d": store.data, "l": store.locks, "p": store.prepared, "x": store.decided,
        "r": store.requested, "s": store.sessions, "e": store._epochs,
    }
    if kind in ("p", "x", "r"):
        tables[kind].pop(bytes.fromhex(name), None)
    elif kind in ("s", "e"):
        tables[kind].pop(int(name), None)
    elif kind in ("d", "l"):
        tables[kind].pop(name, None)
    elif kind == "v":
        store.evicted.discard(int(name))
    # the counters item is always replaced, never removed


def encode_image(image: Mapping[str, bytes]) -> bytes:
    """Canonical bytes of an image (items sorted by key)."""
    return _enc.encode(sorted(image.items()))


def decode_image(data: bytes) -> Image:
    """``msgspec.DecodeError`` / ``ValidationError`` on malformed bytes."""
    return dict(_image_decoder.decode(data))


# ---------------------------------------------------------------- checkpoints
@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """How often a shard checkpoints and how it codes the checkpoint."""

    interval_entries: int = 10_000
    k: int = 4
    m: int = 2
    required_signatures: int = 1
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.interval_entries < 1:
            raise ConfigError(f"checkpoint interval_entries must be >= 1, got {self.interval_entries}")
        if self.k < 1 or self.m < 1:
            raise ConfigError(f"a checkpoint needs k >= 1 and m >= 1, got k={self.k}, m={self.m}")
        if self.required_signatures < 1:
            raise ConfigError("a checkpoint needs at least one signature")
        if self.request_timeout_s <= 0:
            raise ConfigError("request_timeout_s must be > 0")


def checkpoint_due(applied_index: int, last_checkpoint_index: int, config: CheckpointConfig) -> bool:
    """True when ``interval_entries`` entries were applied since the last checkpoint."""
    return applied_index - last_checkpoint_index >= config.interval_entries


def checkpoint_shard(
    store: ShardStore,
    *,
    signer: Signer,
    codec: ErasureCodec,
    log_term: int = 0,
    log_digest: bytes = b"",
) -> tuple[CheckpointManifest, list[CheckpointFragment]]:
    """Cut ``store``'s image at its applied index into signed fragments."""
    return encode_checkpoint(
        encode_image(shard_image(store)),
        shard=store.rules.shard,
        log_index=store.applied_index,
        signer=signer,
        codec=codec,
        log_term=log_term,
        log_digest=log_digest,
    )


def countersign(manifest: CheckpointManifest, store: ShardStore, signer: Signer) -> CheckpointManifest | None:
    """A member adds its signature only if its own state at the checkpoint
    index encodes to the signed state digest (``None`` otherwise)."""
    if store.applied_index != manifest.log_index or store.rules.shard != manifest.shard:
        return None
    digest = hashlib.sha256(encode_image(shard_image(store))).digest()
    return cosign(manifest, signer) if digest == manifest.state_digest else None


def distribute(
    fragments: Sequence[CheckpointFragment], members: Sequence[int]
) -> list[tuple[int, CheckpointFragment]]:
    """Fragment i to the i-th member (members sorted)."""
    ordered = sorted(members)
    if len(ordered) != len(fragments):
        raise ConfigError(
            f"{len(fragments)} fragments for {len(ordered)} members: choose k + m = the shard's size"
        )
    return [(member, fragment) for member, fragment in zip(ordered, fragments, strict=True)]


# ---------------------------------------------------------------- messages
class ManifestRequest(WireMessage, tag="hrb.ManifestRequest", frozen=True):
    shard: int


class FragmentRequest(WireMessage, tag="hrb.FragmentRequest", frozen=True):
    shard: int
    log_index: int
    index: int


class LogSuffixRequest(WireMessage, tag="hrb.LogSuffixRequest", frozen=True):
    shard: int
    from_index: int


class LogSuffix(WireMessage, tag="hrb.LogSuffix", frozen=True):
    """Committed entries ``from_index``, ``from_index + 1``, ... of ``shard``."""

    shard: int
    from_index: int
    entries: tuple[ChainedEntry, ...]


class DeltaRequest(WireMessage, tag="hrb.DeltaRequest", frozen=True):
    """A stale member's applied index and the digests of its image's buckets."""

    shard: int
    applied_index: int
    buckets: int
    leaf_digests: tuple[bytes, ...]


class DeltaReply(WireMessage, tag="hrb.DeltaReply", frozen=True):
    """``mode`` is ``current`` (nothing to send), ``merkle`` (the items of the
    ``changed`` buckets), ``log`` (the entries after the stale index) or
    ``full`` (every item: when the state changed more than its size)."""

    shard: int
    mode: str
    applied_index: int
    """The serving member's applied index: the result's."""
    root: bytes
    """Merkle root of the serving member's image, over the request's buckets."""
    changed: tuple[int, ...] = ()
    items: tuple[tuple[str, bytes], ...] = ()
    entries: tuple[ChainedEntry, ...] = ()


# ---------------------------------------------------------------- Merkle buckets
def bucket_count(items: int) -> int:
    """A power of two near ``items / KEYS_PER_BUCKET`` (1 .. ``MAX_BUCKETS``)."""
    target = max(1, items // KEYS_PER_BUCKET)
    return min(MAX_BUCKETS, 1 << (target - 1).bit_length())


def _bucket_of(key: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & (buckets - 1)


def _by_bucket(image: Mapping[str, bytes], buckets: int) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(buckets)]
    for key in image:
        out[_bucket_of(key, buckets)].append(key)
    return out


def _bucket_digest(image: Mapping[str, bytes], keys: Sequence[str]) -> bytes:
    h = hashlib.sha256()
    for key in sorted(keys):
        raw = key.encode()
        value = image[key]
        h.update(len(raw).to_bytes(4, "big") + raw + len(value).to_bytes(8, "big"))
        h.update(value)
    return h.digest()


def bucket_digests(image: Mapping[str, bytes], buckets: int) -> list[bytes]:
    """SHA-256 of each bucket's sorted items."""
    return [_bucket_digest(image, keys) for keys in _by_bucket(image, buckets)]


def image_root(image: Mapping[str, bytes], buckets: int) -> bytes:
    return merkle_root(bucket_digests(image, buckets))


@dataclass
class DeltaSession:
    """What a stale member keeps while its ``request`` is out: its buckets'
    full digests and keys, so a Merkle reply is checked and applied touching
    only the buckets that changed."""

    request: DeltaRequest
    digests: list[bytes]
    keys_by_bucket: list[list[str]]


def start_delta(store: ShardStore, buckets: int | None = None) -> DeltaSession:
    """A stale member's request (``buckets`` defaults to ``bucket_count``)."""
    image = shard_image(store)
    count = bucket_count(len(image)) if buckets is None else buckets
    if count < 1 or count > MAX_BUCKETS or count & (count - 1):
        raise LocalProtocolError(f"buckets must be a power of two in 1..{MAX_BUCKETS}, got {count}")
    grouped = _by_bucket(image, count)
    digests = [_bucket_digest(image, keys) for keys in grouped]
    request = DeltaRequest(
        store.rules.shard, store.applied_index, count, tuple(d[:LEAF_DIGEST_BYTES] for d in digests)
    )
    return DeltaSession(request, digests, grouped)


def delta_refusal(request: DeltaRequest, shard: int, applied_index: int) -> str | None:
    """Why a serving member cannot answer ``request``, or ``None``."""
    b = request.buckets
    if request.shard != shard:
        return f"a delta request for shard {request.shard}, this is shard {shard}"
    if b < 1 or b > MAX_BUCKETS or b & (b - 1):
        return f"buckets must be a power of two in 1..{MAX_BUCKETS}, got {b}"
    if len(request.leaf_digests) != b:
        return f"{len(request.leaf_digests)} bucket digests for {b} buckets"
    if any(len(d) != LEAF_DIGEST_BYTES for d in request.leaf_digests):
        return f"bucket digests must be {LEAF_DIGEST_BYTES} bytes"
    if request.applied_index < 0 or request.applied_index > applied_index:
        return f"stale index {request.applied_index} is not in 0..{applied_index}"
    return None


@dataclass(frozen=True, slots=True)
class DeltaPlan:
    """The answer chosen and what each alternative would have cost (bytes encoded)."""

    reply: DeltaReply
    merkle_bytes: int
    log_bytes: int | None
    """None when the log no longer holds the entries after the stale index."""
    full_bytes: int
    """The whole image: sent instead when it is smaller than both."""


def answer_delta(
    request: DeltaRequest,
    image: Mapping[str, bytes],
    applied_index: int,
    log: Sequence[Entry],
) -> DeltaPlan:
    """The smallest of the Merkle diff, the log suffix and (when both cost
    more) the whole image (``request`` passed ``delta_refusal``). ``log``
    holds committed entries up to ``applied_index`` (any prefix may be
    compacted away)."""
    buckets = request.buckets
    mine = bucket_digests(image, buckets)
    root = merkle_root(mine)
    shard = request.shard
    theirs = request.leaf_digests
    changed = tuple(b for b in range(buckets) if mine[b][:LEAF_DIGEST_BYTES] != theirs[b])
    if not changed and request.applied_index == applied_index:
        reply = DeltaReply(shard, "current", applied_index, root)
        size = len(_enc.encode(reply))
        return DeltaPlan(reply, size, size, size)
    grouped = _by_bucket(image, buckets)
    items = tuple(sorted((key, image[key]) for b in changed for key in grouped[b]))
    merkle = DeltaReply(shard, "merkle", applied_index, root, changed, items)
    merkle_bytes = len(_enc.encode(merkle))
    # The whole image is priced without building its reply: its items encode
    # as the image does (an array of [key, value] pairs).
    empty = DeltaReply(shard, "full", applied_index, root)
    full_bytes = len(_enc.encode(empty)) - len(_enc.encode(())) + len(encode_image(image))
    candidates: list[tuple[int, DeltaReply | None]] = [(merkle_bytes, merkle)]
    suffix = [e for e in log if e.index > request.applied_index]
    # The log explains a difference only from an older index: at the same
    # index a different state diverged, and only items can repair it.
    covered = 0 < len(suffix) == applied_index - request.applied_index and all(
        e.index == request.applied_index + 1 + i for i, e in enumerate(suffix)
    )
    log_bytes: int | None = None
    if covered:
        by_log = DeltaReply(shard, "log", applied_index, root, entries=tuple(_chained(e) for e in suffix))
        log_bytes = len(_enc.encode(by_log))
        candidates.append((log_bytes, by_log))
    candidates.append((full_bytes, None))
    chosen = min(candidates, key=lambda pair: pair[0])[1]
    if chosen is None:
        chosen = DeltaReply(shard, "full", applied_index, root, items=tuple(sorted(image.items())))
    return DeltaPlan(chosen, merkle_bytes, log_bytes, full_bytes)


def _chained(entry: Entry) -> ChainedEntry:
    if isinstance(entry, ChainedEntry):
        return entry
    return ChainedEntry(entry.term, entry.index, entry.kind, entry.data)


def apply_delta(
    store: ShardStore,
    reply: DeltaReply,
    session: DeltaSession,
    *,
    check_certificate: CertificateCheck,
    genesis: EpochChange,
) -> tuple[ShardStore | None, str | None]:
    """The stale ``store`` brought to ``reply``'s state, checked against
    ``reply.root``: ``(store, None)``, or ``(None, reason)`` for a reply that
    does not lead there, and then ``store`` is left as it was.

    A Merkle reply is checked before anything changes (the changed buckets'
    new digests with the unchanged ones' kept digests give the root) and then
    applied to ``store`` itself, item by item: its cost follows the change,
    not the state. A log or full reply is applied to a copy."""
    if session.request.applied_index != store.applied_index:
        raise LocalProtocolError("the delta session was started at another index of this store")
    buckets = session.request.buckets
    if reply.mode == "current":
        ok = merkle_root(session.digests) == reply.root and reply.applied_index == store.applied_index
        return (store, None) if ok else (None, "a 'current' reply whose root is not this member's")
    if reply.mode == "merkle":
        return _apply_merkle(store, reply, session)
    try:
        if reply.mode == "full":
            result = restore_shard_store(dict(reply.items), rules=store.rules, check_certificate=check_certificate, genesis=genesis)
        elif reply.mode == "log":
            image = shard_image(store)
            result = restore_shard_store(image, rules=store.rules, check_certificate=check_certificate, genesis=genesis)
            for entry in reply.entries:
                if entry.index != result.applied_index + 1:
                    return None, f"log entry {entry.index} does not follow {result.applied_index}"
                result.apply(entry)
        else:
            return None, f"unknown delta mode {reply.mode!r}"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"the delta does not give a shard state: {exc}"
    if result.applied_index != reply.applied_index:
        return None, f"the delta leads to index {result.applied_index}, the server announced {reply.applied_index}"
    if image_root(shard_image(result), buckets) != reply.root:
        return None, "the state after the delta does not match the announced Merkle root"
    return result, None


def _apply_merkle(store: ShardStore, reply: DeltaReply, session: DeltaSession) -> tuple[ShardStore | None, str | None]:
    buckets = session.request.buckets
    changed = set(reply.changed)
    if len(changed) != len(reply.changed) or any(not 0 <= b < buckets for b in changed):
        return None, "a bucket outside the request's range, or named twice"
    items = dict(reply.items)
    if len(items) != len(reply.items):
        return None, "an item named twice"
    grouped: dict[int, list[str]] = {b: [] for b in changed}
    for key in items:
        b = _bucket_of(key, buckets)
        if b not in changed:
            return None, f"item {key!r} is not in a changed bucket"
        grouped[b].append(key)
    digests = list(session.digests)
    for b, keys in grouped.items():
        digests[b] = _bucket_digest(items, keys)
    if merkle_root(digests) != reply.root:
        return None, "the state after the delta does not match the announced Merkle root"
    try:
        decoded = [_decode_item(key, value) for key, value in items.items()]
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"the delta does not give a shard state: {exc}"
    meta = next((item for item in decoded if item[0] == _META), None)
    applied = store.applied_index if meta is None else meta[2][0]
    epoch = store.epoch if meta is None else meta[2][2]
    if applied != reply.applied_index:
        return None, f"the delta leads to index {applied}, the server announced {reply.applied_index}"
    removed = {key for b in changed for key in session.keys_by_bucket[b]}
    epochs = {e for e in store._epochs if f"e/{e}" not in removed} | {int(n) for k, n, _ in decoded if k == "e"}
    if epoch not in epochs:
        return None, f"the delta's current epoch {epoch} has no key"
    for key in removed:
        _remove_item(store, key)
    for item in decoded:
        _put_item(store, item)
    return store, None


# ---------------------------------------------------------------- a member's side
@dataclass
class CheckpointHolder:
    """What one member keeps for others: the newest manifest, its own fragment
    of it, and the committed log since (``log``, oldest first)."""

    node: int
    shard: int
    manifest: CheckpointManifest | None = None
    fragment: CheckpointFragment | None = None
    log: list[Entry] = field(default_factory=list)

    def store(self, manifest: CheckpointManifest, fragment: CheckpointFragment) -> None:
        """Keep a newer checkpoint (and drop the log it covers)."""
        if self.manifest is not None and manifest.log_index <= self.manifest.log_index:
            return
        self.manifest, self.fragment = manifest, fragment
        self.log = [e for e in self.log if e.index > manifest.log_index]

    def answer(self, message: WireMessage) -> WireMessage | None:
        """The reply to a recovering member's request (``None``: nothing to give)."""
        if isinstance(message, ManifestRequest):
            return self.manifest if message.shard == self.shard else None
        if isinstance(message, FragmentRequest):
            f = self.fragment
            if f is None or message.shard != self.shard:
                return None
            return f if (f.log_index, f.index) == (message.log_index, message.index) else None
        if isinstance(message, LogSuffixRequest):
            if message.shard != self.shard:
                return None
            entries = tuple(_chained(e) for e in self.log if e.index >= message.from_index)
            return LogSuffix(self.shard, message.from_index, entries)
        return None


# ---------------------------------------------------------------- reconstruction
@dataclass(frozen=True, slots=True)
class Recovered:
    """The checkpointed state (encoded image) and the log after it."""

    manifest: CheckpointManifest
    state: bytes
    entries: tuple[ChainedEntry, ...]


@dataclass
class RecoveryReady:
    messages: list[tuple[NodeId, WireMessage]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    recovered: Recovered | None = None
    wake_at: float | None = None


_PHASES = ("idle", "manifest", "fragments", "log", "done")


class CheckpointRecovery:
    """A failed or new member's rebuild from its peers (see the module docstring).

    ``members`` are the shard's members, sorted: fragment i lives on
    ``members[i]``. Inputs: ``start``, ``step``, ``tick``; output: ``ready``."""

    def __init__(
        self,
        node: int,
        shard: int,
        members: Sequence[int],
        verifier: Verifier,
        config: CheckpointConfig,
        codec: ErasureCodec | None = None,
    ) -> None:
        self.node, self.shard = node, shard
        self.members = tuple(sorted(members))
        if len(set(self.members)) != len(self.members) or not self.members:
            raise ConfigError("recovery needs the shard's members, each once")
        self._verifier = verifier
        self._config = config
        self._codec = codec
        self.phase = "idle"
        self.manifest: CheckpointManifest | None = None
        self._state: bytes | None = None
        self._good: dict[int, CheckpointFragment] = {}
        self._asked: dict[int, float] = {}
        """Fragment index -> deadline of the outstanding request."""
        self._failed: set[int] = set()
        self._log_peers: list[int] = []
        self._deadline = 0.0
        self._out = RecoveryReady()
        self.rejected_count = 0
        self.fragments_rejected = 0

    # ------------------------------------------------------------ inputs
    def start(self, now: float) -> None:
        if self.phase != "idle":
            raise LocalProtocolError("recovery already started")
        self.phase = "manifest"
        self._deadline = now + self._config.request_timeout_s
        for member in self.members:
            if member != self.node:
                self._send(member, ManifestRequest(self.shard))

    def step(self, sender: int, message: WireMessage, now: float) -> None:
        """A peer's reply; bad ones are dropped and counted, never raised."""
        if isinstance(message, CheckpointManifest):
            self._on_manifest(sender, message, now)
        elif isinstance(message, CheckpointFragment):
            self._on_fragment(sender, message, now)
        elif isinstance(message, LogSuffix):
            self._on_log(sender, message, now)
        else:
            self._reject(sender, message, "not a recovery reply")

    def tick(self, now: float) -> None:
        if self.phase == "fragments":
            for index, deadline in list(self._asked.items()):
                if now >= deadline:
                    del self._asked[index]
                    self._failed.add(index)
            if self._asked or now >= self._deadline:
                self._ask_fragments(now)
        elif self.phase == "log" and now >= self._deadline:
            self._ask_log(now)
        elif self.phase == "manifest" and now >= self._deadline:
            self._deadline = now + self._config.request_timeout_s
            for member in self.members:
                if member != self.node:
                    self._send(member, ManifestRequest(self.shard))

    def ready(self) -> RecoveryReady:
        out, self._out = self._out, RecoveryReady()
        out.wake_at = self._wake_at()
        return out

    # ------------------------------------------------------------ handlers
    def _on_manifest(self, sender: int, manifest: CheckpointManifest, now: float) -> None:
        if self.phase != "manifest":
            return  # a later offer: the log suffix covers what it would add
        if manifest.shard != self.shard:
            self._reject(sender, manifest, f"a manifest of shard {manifest.shard}")
            return
        if len(manifest.fragment_hashes) != len(self.members):
            self._reject(sender, manifest, f"{len(manifest.fragment_hashes)} fragments for {len(self.members)} members")
            return
        reason = manifest_refusal(manifest, self._verifier, self.members, self._config.required_signatures)
        if reason is not None:
            self._reject(sender, manifest, f"checkpoint refused: {reason}")
            return
        self.manifest = manifest
        self.phase = "fragments"
        self._failed = self._own_index()
        self._ask_fragments(now)

    def _on_fragment(self, sender: int, fragment: CheckpointFragment, now: float) -> None:
        manifest = self.manifest
        if self.phase != "fragments" or manifest is None:
            return
        index = fragment.index
        if not 0 <= index < len(self.members) or self.members[index] != sender:
            self._reject(sender, fragment, f"fragment {index} is not node {sender}'s to give")
            return
        if index in self._good:
            return  # a late copy of one already taken
        # A late answer to a request that timed out is as good as a prompt one:
        # its checksum decides.
        self._asked.pop(index, None)
        reason = fragment_refusal(manifest, fragment)
        if reason is not None:
            self.fragments_rejected += 1
            self._failed.add(index)
            self._reject(sender, fragment, reason)
            self._ask_fragments(now)
            return
        self._good[index] = fragment
        if len(self._good) < manifest.k:
            return
        rebuilt = rebuild_state(manifest, self._good.values(), self._codec)
        if rebuilt.state is None:
            # Fragments that hash right but do not decode to the signed state:
            # the checkpoint's signer encoded them wrongly. Nothing more to try.
            self._reject(sender, fragment, f"checkpoint unusable: {rebuilt.reason}")
            self.phase = "manifest"
            self.manifest = None
            self._good.clear()
            self._asked.clear()
            self._failed.clear()
            return
        self._state = rebuilt.state
        self.phase = "log"
        self._log_peers = [m for m in self.members if m != self.node]
        self._ask_log(now)

    def _on_log(self, sender: int, suffix: LogSuffix, now: float) -> None:
        manifest = self.manifest
        if self.phase != "log" or manifest is None or self._state is None:
            return
        expected = manifest.log_index + 1
        if suffix.shard != self.shard or suffix.from_index != expected:
            self._reject(sender, suffix, f"a log suffix from {suffix.from_index}, expected {expected}")
            return
        if any(e.index != expected + i for i, e in enumerate(suffix.entries)):
            self._reject(sender, suffix, "a log suffix with a gap")
            self._ask_log(now)
            return
        self.phase = "done"
        self._out.recovered = Recovered(manifest, self._state, suffix.entries)

    # ------------------------------------------------------------ requests
    def _ask_fragments(self, now: float) -> None:
        manifest = self.manifest
        assert manifest is not None
        need = manifest.k - len(self._good) - len(self._asked)
        for index in range(len(self.members)):
            if need <= 0:
                break
            if index in self._good or index in self._asked or index in self._failed:
                continue
            self._asked[index] = now + self._config.request_timeout_s
            self._send(self.members[index], FragmentRequest(self.shard, manifest.log_index, index))
            need -= 1
        if need > 0 and not self._asked:
            # Every index tried once and too few were good: forget the
            # failures and ask again after a timeout (a holder may have been
            # restarting).
            self._failed = self._own_index()
            self._deadline = now + self._config.request_timeout_s

    def _own_index(self) -> set[int]:
        """This member's own fragment index, if it is a member: it lost that one."""
        return {self.members.index(self.node)} if self.node in self.members else set()

    def _ask_log(self, now: float) -> None:
        manifest = self.manifest
        assert manifest is not None
        if not self._log_peers:
            self._log_peers = [m for m in self.members if m != self.node]
        peer = self._log_peers.pop(0)
        self._deadline = now + self._config.request_timeout_s
        self._send(peer, LogSuffixRequest(self.shard, manifest.log_index + 1))

    def _wake_at(self) -> float | None:
        if self.phase == "fragments":
            return min(self._asked.values()) if self._asked else self._deadline
        if self.phase in ("log", "manifest"):
            return self._deadline
        return None

    def _send(self, to: int, message: WireMessage) -> None:
        self._out.messages.append((NodeId(to), message))

    def _reject(self, sender: int, message: object, reason: str) -> None:
        self.rejected_count += 1
        self._out.rejected.append(Rejection(NodeId(sender), type(message).__name__, reason))

