"""Delta synchronization of a briefly stale shard member (paper section 3.4).

Theory of operation. Both sides hash the image into ``buckets`` (a power of
two; a key's bucket is a prefix of its SHA-256) and build a Merkle tree over
the bucket digests. The stale member sends its applied index and its bucket
digests, truncated to ``LEAF_DIGEST_BYTES`` (``start_delta``); the serving
member prices the Merkle diff (the items of the buckets that differ), the
log suffix (when it still holds the entries after the stale index) and the
whole image by their encoded size, and sends the smallest
(``answer_delta``). The stale member checks the result against the
announced Merkle root (``apply_delta``): a Merkle reply before it touches
the store, and then item by item; a log or full reply on a copy. The caller
compares that root with one it trusts (a signed checkpoint, or the digest
of a later committed state).
"""


from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from quorate.core.ready import ChainedEntry, Entry
from quorate.core.wire import WireMessage
from quorate.crypto.erasure import (
    merkle_root,
)
from quorate.errors import LocalProtocolError
from quorate.hrb.checkpoint.image import (
    META_KEY,
    decode_item,
    encode_image,
    put_item,
    remove_item,
    restore_shard_store,
    shard_image,
)
from quorate.hrb.messages import EpochChange
from quorate.hrb.shard.state import (
    CertificateCheck,
    ShardStore,
)

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

_enc = msgspec.msgpack.Encoder()


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
        by_log = DeltaReply(shard, "log", applied_index, root, entries=tuple(as_chained(e) for e in suffix))
        log_bytes = len(_enc.encode(by_log))
        candidates.append((log_bytes, by_log))
    candidates.append((full_bytes, None))
    chosen = min(candidates, key=lambda pair: pair[0])[1]
    if chosen is None:
        chosen = DeltaReply(shard, "full", applied_index, root, items=tuple(sorted(image.items())))
    return DeltaPlan(chosen, merkle_bytes, log_bytes, full_bytes)


def as_chained(entry: Entry) -> ChainedEntry:
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
        decoded = [decode_item(key, value) for key, value in items.items()]
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"the delta does not give a shard state: {exc}"
    meta = next((item for item in decoded if item[0] == META_KEY), None)
    applied = store.applied_index if meta is None else meta[2][0]
    epoch = store.epoch if meta is None else meta[2][2]
    if applied != reply.applied_index:
        return None, f"the delta leads to index {applied}, the server announced {reply.applied_index}"
    removed = {key for b in changed for key in session.keys_by_bucket[b]}
    epochs = {e for e in store._epochs if f"e/{e}" not in removed} | {int(n) for k, n, _ in decoded if k == "e"}
    if epoch not in epochs:
        return None, f"the delta's current epoch {epoch} has no key"
    for key in removed:
        remove_item(store, key)
    for item in decoded:
        put_item(store, item)
    return store, None
