"""Typed, versioned wire messages.

Every message type is a ``WireMessage`` subclass with a unique string ``tag``
(``"raft.AppendEntries"``); the encoding is msgpack ``[tag, field...]``
(array-like, so field names do not travel). A frame body is
``[WIRE_VERSION, sender, message]`` for a message of group 0 and
``[WIRE_VERSION, sender, message, group]`` for one of another group (a node
hosts many protocol groups, ``quorate.core.host``): the single-group encoding
is unchanged, and a frame without a group belongs to group 0. ``WireCodec`` is built from the list of
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


class WireCodec:
    """Encoder/decoder for a fixed set of message types."""

    def __init__(self, types: Iterable[type[WireMessage]]) -> None:
        self.types = tuple(types)
        if not self.types:
            raise LocalProtocolError("a WireCodec needs at least one message type")
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
