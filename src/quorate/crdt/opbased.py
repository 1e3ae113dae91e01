"""Operation-based counters, sets, registers and lists over causal broadcast.

Theory of operation
-------------------
An operation-based CRDT (Shapiro, Preguiça, Baquero & Zawirski, "Conflict-free
Replicated Data Types", SSS 2011, §2.4) splits an update in two. *Prepare*
runs at the source only: it reads the local state and builds an operation
carrying what the source observed. The *effect* runs at every replica, the
source included, when causal broadcast (``quorate.crdt.broadcast``) delivers
the operation. Causal delivery orders the operations that are causally
related; the effects of concurrent ones commute by design, so replicas that
delivered the same operations are equal, whatever causal order they used.
Each operation is named by its message's dot ``(origin, seq)``.

- **Counter** (Spec 5): ``increment(n)``; the effect adds ``n``.
- **Add-wins set** (Spec 15, the op-based OR-Set): ``add(e)`` is tagged with its
  dot; ``remove(e)`` carries the tags of ``e`` the source observed and its
  effect removes only those, so an add concurrent with the remove -- a tag the
  remover never saw -- survives.
- **Multi-value register**: ``write(v)`` carries the dots of the values the
  source observed; the effect removes those and keeps ``(dot, v)``, so
  concurrent writes all remain until a write that observed them.
- **Last-writer-wins register**: ``write_lww(v, timestamp)`` with a hybrid
  logical timestamp (``registers.HLC``); the effect keeps the larger.
- **List** (``sequence.ReplicatedList``): a list delta already names what it
  depends on, so it travels unchanged and the effect is ``apply``.

Objects are named; an ``OpReplica`` holds any number of each kind, created on
first use. A delivered operation whose payload does not decode is skipped and
recorded in ``rejected`` -- by every replica alike, so they stay equal.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from enum import IntEnum
from typing import Any

import msgspec

from quorate.core.ready import Rejection
from quorate.crdt.broadcast import CausalBroadcast, CausalMessage
from quorate.crdt.causal import Dot
from quorate.crdt.encoding import FormatTag, unwrap, wrap
from quorate.crdt.registers import HLCTimestamp
from quorate.crdt.sequence import ListDelta, ReplicatedList
from quorate.errors import LocalProtocolError, QuorateError, RemoteProtocolError
from quorate.ids import NodeId


class OpKind(IntEnum):
    """What an operation's payload holds (its first field)."""

    COUNTER_ADD = 1
    SET_ADD = 2
    SET_REMOVE = 3
    MV_WRITE = 4
    LWW_WRITE = 5
    LIST = 6


_ENCODER = msgspec.msgpack.Encoder()


def _hashable(raw: Any) -> Hashable:
    """A decoded msgpack value as a set element (arrays become tuples)."""
    if isinstance(raw, list):
        return tuple(_hashable(x) for x in raw)
    if isinstance(raw, dict):
        raise RemoteProtocolError("a map cannot be a set element")
    return raw  # type: ignore[no-any-return]


def _dots(raw: Any) -> list[Dot]:
    if not isinstance(raw, list):
        raise RemoteProtocolError("observed dots must be a list")
    out: list[Dot] = []
    for d in raw:
        if not (isinstance(d, list) and len(d) == 2 and all(type(x) is int for x in d)):
            raise RemoteProtocolError(f"malformed dot {d!r}")
        out.append((d[0], d[1]))
    return out


class OpReplica:
    """One replica's operation-based objects and its end of causal broadcast."""

    __slots__ = ("broadcast", "counters", "lists", "lww", "registers", "rejected", "sets")

    def __init__(self, replica: int, members: Iterable[int] = ()) -> None:
        self.broadcast = CausalBroadcast(replica, members)
        self.counters: dict[str, int] = {}
        self.sets: dict[str, dict[Hashable, set[Dot]]] = {}
        """Per set: each element's live add tags."""
        self.registers: dict[str, dict[Dot, Any]] = {}
        """Per multi-value register: the concurrent values by the dot of their write."""
        self.lww: dict[str, tuple[HLCTimestamp, Any]] = {}
        self.lists: dict[str, ReplicatedList] = {}
        self.rejected: list[Rejection] = []

    @property
    def replica(self) -> int:
        return self.broadcast.replica

    # ------------------------------------------------------------ reading
    def counter(self, name: str) -> int:
        return self.counters.get(name, 0)

    def elements(self, name: str) -> frozenset[Hashable]:
        return frozenset(self.sets.get(name, {}))

    def values(self, name: str) -> list[Any]:
        """The multi-value register's concurrent values, in dot order."""
        register = self.registers.get(name, {})
        return [register[d] for d in sorted(register)]

    def value(self, name: str) -> Any:
        """The last-writer-wins register's value (None if never written)."""
        entry = self.lww.get(name)
        return None if entry is None else entry[1]

    def sequence(self, name: str) -> ReplicatedList:
        """The list ``name`` (created empty on first use)."""
        items = self.lists.get(name)
        if items is None:
            items = self.lists[name] = ReplicatedList(self.replica)
        return items

    def snapshot(self) -> dict[str, Any]:
        """Every object's value, canonically ordered (equal replicas: equal snapshots)."""
        return {
            "counters": dict(sorted(self.counters.items())),
            "sets": {k: sorted(map(repr, v)) for k, v in sorted(self.sets.items()) if v},
            "registers": {k: self.values(k) for k in sorted(self.registers) if self.registers[k]},
            "lww": {k: v[1] for k, v in sorted(self.lww.items())},
            "lists": {k: v.to_list() for k, v in sorted(self.lists.items()) if len(v)},
        }

    # ------------------------------------------------------------ prepare
    def _send(self, *op: Any) -> CausalMessage:
        try:
            payload = _ENCODER.encode(op)
        except (TypeError, msgspec.EncodeError) as exc:
            raise LocalProtocolError(f"operation values must be msgpack-encodable: {exc}") from None
        message = self.broadcast.broadcast(payload)
        self._effect(message)
        return message

    def increment(self, name: str, amount: int = 1) -> CausalMessage:
        """Add ``amount`` (negative subtracts) to counter ``name``."""
        if type(amount) is not int:
            raise LocalProtocolError(f"a counter adds integers, got {amount!r}")
        return self._send(OpKind.COUNTER_ADD, name, amount)

    def add(self, name: str, element: Hashable) -> CausalMessage:
        """Add ``element`` to set ``name``."""
        return self._send(OpKind.SET_ADD, name, element)

    def remove(self, name: str, element: Hashable) -> CausalMessage:
        """Remove the adds of ``element`` observed here (a concurrent add wins)."""
        observed = sorted(self.sets.get(name, {}).get(_hashable(element), ()))
        return self._send(OpKind.SET_REMOVE, name, element, observed)

    def write(self, name: str, value: Any) -> CausalMessage:
        """Write ``value`` over every value of register ``name`` observed here."""
        observed = sorted(self.registers.get(name, {}))
        return self._send(OpKind.MV_WRITE, name, value, observed)

    def write_lww(self, name: str, value: Any, timestamp: HLCTimestamp) -> CausalMessage:
        """Write ``value`` at ``timestamp`` (from the replica's ``HLC``)."""
        return self._send(OpKind.LWW_WRITE, name, value, tuple(timestamp))

    def list_insert(self, name: str, pos: int, values: list[Any]) -> CausalMessage:
        return self._send(OpKind.LIST, name, self.sequence(name).insert(pos, values).encode())

    def list_delete(self, name: str, pos: int, n: int = 1) -> CausalMessage:
        return self._send(OpKind.LIST, name, self.sequence(name).delete(pos, n).encode())

    def list_move(self, name: str, source: int, destination: int) -> CausalMessage:
        delta = self.sequence(name).move(source, destination)
        return self._send(OpKind.LIST, name, delta.encode())

    # ------------------------------------------------------------ effect
    def receive(self, sender: NodeId | int, message: object) -> list[CausalMessage]:
        """Hand a message to causal broadcast; apply the effects of every
        message it delivers. Returns those messages."""
        delivered = self.broadcast.receive(sender, message)
        for m in delivered:
            self._effect(m)
        return delivered

    def _effect(self, message: CausalMessage) -> None:
        try:
            op = msgspec.msgpack.decode(message.payload)
            if not (isinstance(op, list) and len(op) >= 3 and isinstance(op[1], str)):
                raise RemoteProtocolError("an operation is [kind, name, ...]")
            self._apply(OpKind(op[0]), op[1], op[2:], (message.origin, message.seq))
        except (QuorateError, LookupError, ValueError, TypeError, msgspec.DecodeError) as exc:
            self.rejected.append(
                Rejection(NodeId(message.origin), "operation", f"undecodable operation: {exc}")
            )

    def _apply(self, kind: OpKind, name: str, args: list[Any], dot: Dot) -> None:
        if kind is OpKind.COUNTER_ADD:
            if type(args[0]) is not int:
                raise RemoteProtocolError("a counter adds integers")
            self.counters[name] = self.counters.get(name, 0) + args[0]
        elif kind is OpKind.SET_ADD:
            self.sets.setdefault(name, {}).setdefault(_hashable(args[0]), set()).add(dot)
        elif kind is OpKind.SET_REMOVE:
            element, observed = _hashable(args[0]), _dots(args[1])
            members = self.sets.get(name, {})
            tags = members.get(element)
            if tags is not None:
                tags.difference_update(observed)
                if not tags:
                    del members[element]
        elif kind is OpKind.MV_WRITE:
            value, observed = args[0], _dots(args[1])
            register = self.registers.setdefault(name, {})
            for d in observed:
                register.pop(d, None)
            register[dot] = value
        elif kind is OpKind.LWW_WRITE:
            stamp = HLCTimestamp(*args[1])
            current = self.lww.get(name)
            if current is None or stamp > current[0]:
                self.lww[name] = (stamp, args[0])
        elif kind is OpKind.LIST:
            self.sequence(name).apply(ListDelta.decode(args[0]))

    # ------------------------------------------------------------ durability
    def encode(self) -> bytes:
        """The whole replica (broadcast state included), to resume after a restart."""
        body = (
            self.broadcast.encode(),
            sorted(self.counters.items()),
            [(k, [(e, sorted(t)) for e, t in v.items()]) for k, v in sorted(self.sets.items())],
            [(k, sorted(v.items())) for k, v in sorted(self.registers.items())],
            [(k, tuple(v[0]), v[1]) for k, v in sorted(self.lww.items())],
            [(k, v.encode()) for k, v in sorted(self.lists.items())],
        )
        return wrap(FormatTag.OP_REPLICA, _ENCODER.encode(body))

    @classmethod
    def decode(cls, data: bytes) -> OpReplica:
        try:
            raw = msgspec.msgpack.decode(unwrap(FormatTag.OP_REPLICA, data))
            broadcast, counters, sets, registers, lww, lists = raw
            out = cls(0)
            out.broadcast = CausalBroadcast.decode(broadcast)
            out.counters = {str(k): int(v) for k, v in counters}
            out.sets = {k: {_hashable(e): set(_dots(t)) for e, t in v} for k, v in sets}
            out.registers = {k: {_dots([d])[0]: value for d, value in v} for k, v in registers}
            out.lww = {k: (HLCTimestamp(*stamp), value) for k, stamp, value in lww}
            out.lists = {k: ReplicatedList.decode(v, out.broadcast.replica) for k, v in lists}
        except (ValueError, TypeError, msgspec.DecodeError) as exc:
            raise RemoteProtocolError(f"malformed operation-based replica: {exc}") from exc
        return out
