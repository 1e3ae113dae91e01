"""Registers: last-writer-wins with hybrid logical clocks, and multi-value.

Theory of operation
-------------------
- ``HLC`` is a hybrid logical clock (Kulkarni et al., "Logical Physical Clocks",
  2014). A timestamp is ``(wall, logical, replica)``: ``wall`` is the largest
  physical time seen, ``logical`` orders events within one ``wall`` value, and the
  replica id breaks the remaining ties, so timestamps are totally ordered and
  unique per replica. The clock never reads time itself: callers pass the
  physical time (an integer in units of their choice, e.g. nanoseconds) to
  ``now`` and ``update``. A timestamp is never smaller than one already issued or
  received, even when the physical clock steps backwards.
- ``LWWRegister`` keeps the value of the largest timestamp; the join is "max by
  timestamp" and a write's delta is the register holding just that write.
- ``MVRegister`` (Almeida et al., §6.2) is a dot function: a write replaces every
  value it has observed; concurrent writes all survive until a later write
  observes them. Its value is the set of concurrent values.
"""

from __future__ import annotations

from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from quorate.crdt.causal import CausalContext
from quorate.crdt.dotstore import CausalCRDT, DotFunKind, decode_wire
from quorate.crdt.encoding import FormatTag, unwrap, wrap
from quorate.errors import RemoteProtocolError

V = TypeVar("V")


class HLCTimestamp(NamedTuple):
    """A hybrid logical timestamp; tuple order is the clock order."""

    wall: int
    logical: int
    replica: int


class HLC:
    """A hybrid logical clock owned by one replica."""

    __slots__ = ("logical", "replica", "wall")

    def __init__(self, replica: int, wall: int = 0, logical: int = 0) -> None:
        self.replica = replica
        self.wall = wall
        self.logical = logical

    def now(self, physical_time: int) -> HLCTimestamp:
        """A timestamp for a local event at ``physical_time``."""
        if physical_time > self.wall:
            self.wall, self.logical = physical_time, 0
        else:
            self.logical += 1
        return HLCTimestamp(self.wall, self.logical, self.replica)

    def update(self, received: HLCTimestamp, physical_time: int) -> HLCTimestamp:
        """Account for a timestamp received from a peer; return the receive event's."""
        wall = max(self.wall, received.wall, physical_time)
        if wall == self.wall and wall == received.wall:
            logical = max(self.logical, received.logical) + 1
        elif wall == self.wall:
            logical = self.logical + 1
        elif wall == received.wall:
            logical = received.logical + 1
        else:
            logical = 0
        self.wall, self.logical = wall, logical
        return HLCTimestamp(wall, logical, self.replica)


_LWW_DECODER = msgspec.msgpack.Decoder(tuple[tuple[int, int, int], Any] | None)


class LWWRegister(Generic[V]):
    """A register whose value is the write with the largest HLC timestamp."""

    __slots__ = ("timestamp", "value")

    def __init__(self, value: V | None = None, timestamp: HLCTimestamp | None = None) -> None:
        self.value = value
        self.timestamp = timestamp

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LWWRegister)
            and self.timestamp == other.timestamp
            and self.value == other.value
        )

    def __repr__(self) -> str:
        return f"LWWRegister({self.value!r}, {self.timestamp})"

    def copy(self) -> LWWRegister[V]:
        return LWWRegister(self.value, self.timestamp)

    def set(self, value: V, timestamp: HLCTimestamp) -> LWWRegister[V]:
        """Write ``value`` at ``timestamp`` (from ``HLC.now``); return the delta."""
        delta = LWWRegister(value, timestamp)
        self.merge(delta)
        return delta

    def merge(self, other: LWWRegister[V]) -> None:
        if other.timestamp is not None and (
            self.timestamp is None or other.timestamp > self.timestamp
        ):
            self.value, self.timestamp = other.value, other.timestamp

    def difference(self, known: LWWRegister[V]) -> LWWRegister[V]:
        if known.timestamp is not None and (
            self.timestamp is None or known.timestamp >= self.timestamp
        ):
            return LWWRegister()
        return self.copy()

    def is_bottom(self) -> bool:
        return self.timestamp is None

    def encode(self) -> bytes:
        body = None if self.timestamp is None else (tuple(self.timestamp), self.value)
        return wrap(FormatTag.LWW_REGISTER, msgspec.msgpack.encode(body))

    @classmethod
    def decode(cls, data: bytes) -> LWWRegister[Any]:
        try:
            body = _LWW_DECODER.decode(unwrap(FormatTag.LWW_REGISTER, data))
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"malformed LWW-Register: {exc}") from exc
        if body is None:
            return cls()
        stamp, value = body
        return cls(value, HLCTimestamp(*stamp))


DOT_FUN = DotFunKind()


class MVRegister(CausalCRDT):
    """A multi-value register: concurrent writes are all kept."""

    __slots__ = ()

    def __init__(
        self,
        replica: int,
        store: dict[Any, Any] | None = None,
        context: CausalContext | None = None,
        is_view: bool = False,
    ) -> None:
        super().__init__(DOT_FUN, replica, store, context, is_view)

    @property
    def values(self) -> list[Any]:
        """The concurrent values, in dot order (deterministic on every replica)."""
        return [self.store[d] for d in sorted(self.store)]

    def set(self, value: Any) -> MVRegister:
        """Write ``value`` over every value observed; return the delta."""
        dot = self._fresh_dot()
        return self._commit(self._like({dot: value}, CausalContext.of([dot, *self.store])))

    def reset(self) -> MVRegister:
        """Remove every observed value; return the delta."""
        return self._commit(self._like({}, CausalContext.of(self.store)))

    def encode(self) -> bytes:
        return wrap(FormatTag.MV_REGISTER, msgspec.msgpack.encode(self._wire()))

    @classmethod
    def decode(cls, data: bytes, replica: int) -> MVRegister:
        out = cls(replica)
        out._load_wire(decode_wire(unwrap(FormatTag.MV_REGISTER, data)))
        return out

    @staticmethod
    def view(store: Any, context: CausalContext, replica: int) -> MVRegister:
        return MVRegister(replica, store, context, is_view=True)
