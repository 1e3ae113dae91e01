"""Framing and wire codec: round trips, incremental feeding, oversize and
malformed input rejected without buffering it."""

from __future__ import annotations

import contextlib
import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.codec import FrameDecoder, WireCodec, encode_frame
from quorate.core.wire import WireMessage
from quorate.errors import LocalProtocolError, RemoteProtocolError
from quorate.ids import NodeId


class Ping(WireMessage, tag="test.Ping", frozen=True):
    seq: int
    note: str = ""


class Blob(WireMessage, tag="test.Blob", frozen=True):
    data: bytes
    values: list[int] = msgspec.field(default_factory=list)


CODEC = WireCodec([Ping, Blob])


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(min_value=1, max_value=64))
def test_frames_round_trip_however_the_stream_is_cut(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out += decoder.feed(stream[i : i + chunk])
    assert out == payloads
    assert decoder.at_boundary()


def test_oversize_frame_is_refused_on_its_header_alone() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(RemoteProtocolError, match="limit"):
        decoder.feed(struct.pack(">I", 4 * 1024**3 - 1))
    assert decoder.buffered_bytes == 0
    with pytest.raises(LocalProtocolError):
        decoder.feed(b"more")


def test_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.feed(encode_frame(b"x" * 10, 10)) == [b"x" * 10]
    with pytest.raises(LocalProtocolError):
        encode_frame(b"x" * 11, 10)


def test_messages_round_trip_with_sender() -> None:
    for message in (Ping(7, "hi"), Blob(b"\x00\x01", [1, 2, 3])):
        sender, decoded = CODEC.decode(CODEC.encode(NodeId(3), message))
        assert sender == 3 and decoded == message


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        msgspec.msgpack.encode([1, 2, ["test.Nope", 1]]),  # unknown tag
        msgspec.msgpack.encode([1, 2, ["test.Ping", "not-an-int"]]),  # wrong field type
        msgspec.msgpack.encode([99, 2, ["test.Ping", 1]]),  # future version
        msgspec.msgpack.encode([1, -5, ["test.Ping", 1]]),  # bad sender
        msgspec.msgpack.encode({"a": 1}),
    ],
)
def test_malformed_bodies_raise_remote_protocol_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        CODEC.decode(body)


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_decoder_fuzz_only_ever_raises_remote_protocol_error(body: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        CODEC.decode(body)


def test_duplicate_tags_are_refused() -> None:
    class Other(WireMessage, tag="test.Ping", frozen=True):
        x: int

    with pytest.raises(LocalProtocolError, match="duplicate"):
        WireCodec([Ping, Other])


class Hello(WireMessage, tag="test.Hello", frozen=True):
    node: int


BATCHING = WireCodec([Hello, Ping, Blob], batch_types=[Ping, Blob])


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=1 << 20), st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1), st.binary(max_size=50)), max_size=30))
def test_a_batch_carries_its_messages_and_groups_in_order(items: list[tuple[int, int, bytes]]) -> None:
    messages = [(group, Ping(seq) if seq % 2 else Blob(data)) for group, seq, data in items]
    body = BATCHING.encode_batch(NodeId(4), [BATCHING.encode_item(m, g) for g, m in messages])
    sender, batch, group = BATCHING.decode_frame(body)
    assert (sender, group, type(batch)) == (4, 0, BATCHING.batch_type)
    assert BATCHING.batch_items(batch) == messages


def test_a_batch_holds_only_its_types_and_valid_groups() -> None:
    hello_inside = msgspec.msgpack.encode((1, 4, ["transport.Batch", [[0, ["test.Hello", 1]]]]))
    with pytest.raises(RemoteProtocolError):
        BATCHING.decode_frame(hello_inside)
    nested = msgspec.msgpack.encode((1, 4, ["transport.Batch", [[0, ["transport.Batch", []]]]]))
    with pytest.raises(RemoteProtocolError):
        BATCHING.decode_frame(nested)
    bad_group = msgspec.msgpack.encode((1, 4, ["transport.Batch", [[-1, ["test.Ping", 1, ""]]]]))
    _, batch, _ = BATCHING.decode_frame(bad_group)
    with pytest.raises(RemoteProtocolError):
        BATCHING.batch_items(batch)


def test_a_codec_without_batch_types_refuses_a_batch() -> None:
    assert CODEC.batch_type is None
    with pytest.raises(RemoteProtocolError):
        CODEC.decode_frame(msgspec.msgpack.encode((1, 4, ["transport.Batch", []])))
