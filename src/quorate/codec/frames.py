"""Sans-IO length-prefixed framing.

A frame is a 4-byte big-endian payload length followed by the payload. The
decoder is fed whatever bytes arrived and yields complete payloads. It checks
the announced length against ``max_frame_bytes`` as soon as the 4-byte header
is in, *before* buffering the body, so a peer cannot make us hold a 4 GiB
buffer by announcing one. A violation raises ``RemoteProtocolError``; the
decoder is then poisoned and the runtime must close the connection.
"""

from __future__ import annotations

import struct

from quorate.errors import LocalProtocolError, RemoteProtocolError

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")
HEADER_BYTES = _HEADER.size


def encode_frame(payload: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """Prefix ``payload`` with its length. Refuses payloads the peer would reject."""
    if len(payload) > max_frame_bytes:
        raise LocalProtocolError(
            f"frame of {len(payload)} bytes exceeds the limit of {max_frame_bytes} bytes"
        )
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental frame decoder; one per connection."""

    __slots__ = ("_broken", "_buffer", "_need", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1:
            raise LocalProtocolError("max_frame_bytes must be positive")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._need: int | None = None  # body length once the header is read
        self._broken = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)

    @property
    def in_frame(self) -> bool:
        """True while a frame has begun (some of its bytes arrived) and is not complete."""
        return self._need is not None or bool(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every payload now complete, in order."""
        if self._broken:
            raise LocalProtocolError("decoder already rejected this stream; close the connection")
        out: list[bytes] = []
        buf = self._buffer
        buf += data
        pos = 0
        while True:
            if self._need is None:
                if len(buf) - pos < HEADER_BYTES:
                    break
                (length,) = _HEADER.unpack_from(buf, pos)
                if length > self.max_frame_bytes:
                    self._broken = True
                    buf.clear()
                    raise RemoteProtocolError(
                        f"peer announced a frame of {length} bytes; limit is {self.max_frame_bytes}"
                    )
                pos += HEADER_BYTES
                self._need = length
            if len(buf) - pos < self._need:
                break
            out.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = None
        if pos:
            del buf[:pos]
        return out

    def at_boundary(self) -> bool:
        """True when no partial frame is buffered (a clean place to close)."""
        return self._need is None and not self._buffer
