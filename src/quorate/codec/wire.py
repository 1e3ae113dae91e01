"""Typed, versioned wire messages.

Every message type is a ``WireMessage`` subclass with a unique string ``tag``
(``"raft.AppendEntries"``); the encoding is msgpack ``[tag, field...]``
(array-like, so field names do not travel). A frame body is
``[WIRE_VERSION, sender, message]`` for a message of group 0 and
``[WIRE_VERSION, sender, message, group]`` for one of another group (a node
hosts many protocol groups, ``quorate.core.host``): the single-group encoding
is unchanged, and a frame without a group belongs to group 0.

*Batches.* A codec built with ``batch_types`` also speaks one more message,
``transport.Batch``: ``[tag, [[group, message], ...]]``, many messages of
many groups from one sender in one frame body (a node's turn sends each peer
the messages of all its groups at once, so one frame and one decode carry
them all). A batch's messages are of ``batch_types`` only (never another
batch); ``batch_items`` checks their group ids. ``encode_item`` encodes one
``[group, message]`` pair ahead of time and ``encode_batch`` joins such
pairs into a frame body without encoding them again. ``WireCodec`` is built from the list of
message types a node speaks; decoding validates every field's type and raises
``RemoteProtocolError`` for malformed bytes, unknown tags or wrong versions.
Untrusted bytes are never unpickled.

Adding a field: append it at the end with a default, so older peers' messages
still decode. Changing a field's meaning needs a new tag.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Union

import msgspec

from quorate.core.wire import WireMessage
from quorate.errors import LocalProtocolError, RemoteProtocolError
from quorate.ids import MAX_GROUP_ID, NodeId

WIRE_VERSION = 1
BATCH_TAG = "transport.Batch"


class _RawBatch(msgspec.Struct, tag=BATCH_TAG, array_like=True):
    """A batch whose ``[group, message]`` pairs are encoded already (encoding only)."""

    items: list[msgspec.Raw]


class WireCodec:
    """Encoder/decoder for a fixed set of message types."""

    def __init__(self, types: Iterable[type[WireMessage]], batch_types: Iterable[type[WireMessage]] = ()) -> None:
        self.types = tuple(types)
        if not self.types:
            raise LocalProtocolError("a WireCodec needs at least one message type")
        inner = tuple(batch_types)
        self.batch_type: type[WireMessage] | None = None
        """The ``transport.Batch`` message of this codec (``None`` without ``batch_types``)."""
        if inner:
            inner_union: Any = Union[inner] if len(inner) > 1 else inner[0]  # noqa: UP007
            batch: Any = msgspec.defstruct(
                "Batch", [("items", list[tuple[int, inner_union]])], bases=(WireMessage,), tag=BATCH_TAG
            )
            self.batch_type = batch
            self.types = (*self.types, batch)
        tags: dict[object, type[WireMessage]] = {}
        for t in self.types:
            tag = t.__struct_config__.tag
            if tag in tags:
                raise LocalProtocolError(f"duplicate wire tag {tag!r}: {tags[tag]} and {t}")
            tags[tag] = t
        union: Any = Union[self.types] if len(self.types) > 1 else self.types[0]  # noqa: UP007
        frame = msgspec.defstruct(
            "Frame",
            [("version", int), ("sender", int), ("message", union), ("group", int, 0)],
            array_like=True,
        )
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(frame)
        self._message_decoder = msgspec.msgpack.Decoder(union)

    def encode(self, sender: NodeId, message: WireMessage, group: int = 0) -> bytes:
        """Encode ``message`` of ``group`` from ``sender`` as one frame body."""
        if group:
            return self._encoder.encode((WIRE_VERSION, sender, message, group))
        return self._encoder.encode((WIRE_VERSION, sender, message))

    def encode_item(self, message: WireMessage, group: int = 0) -> msgspec.Raw:
        """One ``[group, message]`` pair of a batch, encoded (``encode_batch`` joins them)."""
        return msgspec.Raw(self._encoder.encode((group, message)))

    def encode_batch(self, sender: NodeId, items: list[msgspec.Raw]) -> bytes:
        """One frame body carrying every pair of ``items`` (from ``encode_item``)."""
        return self._encoder.encode((WIRE_VERSION, sender, _RawBatch(items)))

    def batch_items(self, batch: Any) -> list[tuple[int, WireMessage]]:
        """The ``(group, message)`` pairs of a decoded batch; ``RemoteProtocolError``
        when a group id is out of range."""
        items: list[tuple[int, WireMessage]] = batch.items
        for group, _ in items:
            if not 0 <= group <= MAX_GROUP_ID:
                raise RemoteProtocolError(f"invalid group id {group} in a batch")
        return items

    def decode(self, body: bytes) -> tuple[NodeId, WireMessage]:
        """Decode one frame body of group 0; ``RemoteProtocolError`` on
        anything malformed or of another group."""
        sender, message, group = self.decode_frame(body)
        if group:
            raise RemoteProtocolError(f"a message of group {group} where only group 0 is spoken")
        return sender, message

    def decode_frame(self, body: bytes) -> tuple[NodeId, WireMessage, int]:
        """Decode one frame body into (sender, message, group);
        ``RemoteProtocolError`` on anything malformed."""
        try:
            frame: Any = self._decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RemoteProtocolError(f"malformed message: {exc}") from None
        if frame.version != WIRE_VERSION:
            raise RemoteProtocolError(f"unsupported wire version {frame.version} (we speak {WIRE_VERSION})")
        if frame.sender < 0:
            raise RemoteProtocolError(f"invalid sender id {frame.sender}")
        if not 0 <= frame.group <= MAX_GROUP_ID:
            raise RemoteProtocolError(f"invalid group id {frame.group}")
        return NodeId(frame.sender), frame.message, frame.group

    def encode_message(self, message: WireMessage) -> bytes:
        """Encode a bare message (no envelope), e.g. to measure its size."""
        return self._encoder.encode(message)

    def decode_message(self, data: bytes) -> WireMessage:
        """Decode a bare message; ``RemoteProtocolError`` on anything malformed."""
        try:
            return self._message_decoder.decode(data)  # type: ignore[no-any-return]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RemoteProtocolError(f"malformed message: {exc}") from None
