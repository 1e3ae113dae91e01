"""Wire format: typed, versioned messages (msgspec) and length-prefixed frames."""

from quorate.codec.frames import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encode_frame
from quorate.codec.wire import WIRE_VERSION, WireCodec
from quorate.core.wire import WireMessage

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "WIRE_VERSION",
    "FrameDecoder",
    "WireCodec",
    "WireMessage",
    "encode_frame",
]
