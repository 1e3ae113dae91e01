"""The versioned envelope of every encoded CRDT state and delta.

Byte 0 is ``FORMAT_VERSION`` (bump it when a body layout changes; old readers
then refuse new bytes instead of misreading them), byte 1 a ``FormatTag`` naming
the type, the rest a msgpack body whose layout the type owns. Decoding checks
both bytes, so a counter's bytes are never loaded as a set.
"""

from __future__ import annotations

from enum import IntEnum

from quorate.errors import RemoteProtocolError

FORMAT_VERSION = 1
"""Layout version of every body below."""


class FormatTag(IntEnum):
    """Which type an encoding holds."""

    G_COUNTER = 1
    PN_COUNTER = 2
    LWW_REGISTER = 3
    MV_REGISTER = 4
    OR_SET = 5
    OR_MAP = 6
    TEXT_STATE = 7
    TEXT_DELTA = 8
    LIST_STATE = 9
    LIST_DELTA = 10
    CAUSAL_BATCH = 11
    CAUSAL_STATE = 12
    OP_REPLICA = 13


def wrap(tag: FormatTag, body: bytes) -> bytes:
    """Prefix ``body`` with the format version and ``tag``."""
    return bytes((FORMAT_VERSION, tag)) + body


def unwrap(tag: FormatTag, data: bytes) -> bytes:
    """The body of ``data`` if it holds a ``tag`` of this format version."""
    if len(data) < 2:
        raise RemoteProtocolError("encoded CRDT too short: missing the format header")
    if data[0] != FORMAT_VERSION:
        raise RemoteProtocolError(
            f"unsupported CRDT format version {data[0]} (this build reads {FORMAT_VERSION})"
        )
    if data[1] != tag:
        try:
            found = FormatTag(data[1]).name
        except ValueError:
            found = f"unknown tag {data[1]}"
        raise RemoteProtocolError(f"expected an encoded {tag.name}, found {found}")
    return data[2:]
