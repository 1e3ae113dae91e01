"""The base class of every message that crosses a process boundary.

Defined in ``core`` so that every layer (protocol cores, the state-machine
service, gossip) can declare wire messages without importing the codec. Each
subclass sets a unique ``tag`` (``class AppendEntries(WireMessage,
tag="raft.AppendEntries")``); ``quorate.codec.WireCodec`` builds a validating
decoder from a list of these types.
"""

from __future__ import annotations

import msgspec


class WireMessage(msgspec.Struct, tag=True, array_like=True, frozen=True):
    """Base of every message that crosses the network (msgpack ``[tag, fields...]``)."""

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__
