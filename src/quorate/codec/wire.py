"""Typed, versioned wire messages.

Every message type is a ``WireMessage`` subclass with a unique string ``tag``
(``"raft.AppendEntries"``); the encoding is msgpack ``[tag, field...]``
(array-like, so field names do not travel). A frame body is
``[WIRE_VERSION, sender, message]``. ``WireCodec`` is built from the list of
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
from quorate.ids import NodeId

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
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(tuple[int, int, union])
        self._message_decoder = msgspec.msgpack.Decoder(union)

    def encode(self, sender: NodeId, message: WireMessage) -> bytes:
        """Encode ``message`` from ``sender`` as one frame body."""
        return self._encoder.encode((WIRE_VERSION, sender, message))

    def decode(self, body: bytes) -> tuple[NodeId, WireMessage]:
        """Decode one frame body; ``RemoteProtocolError`` on anything malformed."""
        try:
            version, sender, message = self._decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RemoteProtocolError(f"malformed message: {exc}") from None
        if version != WIRE_VERSION:
            raise RemoteProtocolError(f"unsupported wire version {version} (we speak {WIRE_VERSION})")
        if sender < 0:
            raise RemoteProtocolError(f"invalid sender id {sender}")
        return NodeId(sender), message

    def encode_message(self, message: WireMessage) -> bytes:
        """Encode a bare message (no envelope), e.g. to measure its size."""
        return self._encoder.encode(message)

    def decode_message(self, data: bytes) -> WireMessage:
        """Decode a bare message; ``RemoteProtocolError`` on anything malformed."""
        try:
            return self._message_decoder.decode(data)  # type: ignore[no-any-return]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RemoteProtocolError(f"malformed message: {exc}") from None
