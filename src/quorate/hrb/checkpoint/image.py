"""A shard's state as an image: short keys to bytes, and back.

Theory of operation. ``shard_image`` writes a ``ShardStore`` as one item per
data key, lock, prepare record, decision, pending request, client session,
evicted node and epoch, plus one item of counters (``META_KEY``);
``restore_shard_store`` reads it back: ``restore(image(s))`` holds what ``s``
holds (``fingerprint`` equal) and applies later entries exactly as ``s``
would. ``encode_image`` is canonical (items sorted by key), so members at
one index encode the same bytes. ``decode_item``, ``put_item`` and
``remove_item`` change one item of a live store (delta sync uses them).
"""


from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

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

Image = dict[str, bytes]

META_KEY = "m"
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
    image[META_KEY] = _enc.encode((store.applied_index, store.refused, store.epoch, store.violations))
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
    if META_KEY not in image:
        raise ValueError("the image has no counters item")
    decoded = [decode_item(key, value) for key, value in image.items()]
    store = ShardStore(rules, check_certificate, genesis)
    store._epochs = {}
    for item in decoded:
        put_item(store, item)
    if store.epoch not in store._epochs:
        raise ValueError(f"the image's current epoch {store.epoch} has no key")
    return store


ImageItem = tuple[str, str, Any]
"""(kind, name, decoded value) of one image item."""


def decode_item(key: str, value: bytes) -> ImageItem:
    """Decode one image item (``ValueError`` if it is not one), touching no store."""
    kind, _, name = key.partition("/")
    if key == META_KEY:
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


def put_item(store: ShardStore, item: ImageItem) -> None:
    kind, name, value = item
    if kind == META_KEY:
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
    else:  # "e", the only other kind decode_item lets through
        store._epochs[int(name)] = value


def remove_item(store: ShardStore, key: str) -> None:
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
