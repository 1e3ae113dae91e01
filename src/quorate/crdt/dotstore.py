"""Dot stores: the causal building blocks of MV-Register, OR-Set and OR-Map.

Theory of operation (Almeida et al., "Delta State Replicated Data Types", §6):
a *causal* CRDT is a pair (store, causal context). The store holds the dots of
events still "alive"; the context holds every dot ever seen, alive or not. When
two states join, a dot survives if both stores have it, or if one store has it
and the other context has never seen it; a dot that one side has seen but no
longer stores was removed there, and stays removed. This is why an observed
remove needs no tombstones: the context (a compact version vector, see
``causal.CausalContext``) already remembers what was seen.

Three store shapes compose every causal type here:

- ``DotSetKind``: a set of dots (presence of an OR-Set element),
- ``DotFunKind``: dots mapped to values (the concurrent writes of an MV-Register),
- ``DotMapKind``: keys mapped to nested stores (OR-Set elements, OR-Map entries);
  a key whose nested store becomes empty disappears.

``CausalCRDT`` is the shared base: ``merge`` is the join above, mutators build
a delta (a small store plus the context it covers) and join it in.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import msgspec

from quorate.crdt.causal import CausalContext, Dot
from quorate.errors import RemoteProtocolError


class StoreKind(Protocol):
    """The lattice operations of one store shape."""

    def empty(self) -> Any: ...
    def join(self, a: Any, ca: CausalContext, b: Any, cb: CausalContext) -> Any: ...
    def dots(self, store: Any) -> Iterator[Dot]: ...
    def to_wire(self, store: Any) -> Any: ...
    def from_wire(self, wire: Any) -> Any: ...


def _dot(raw: Any) -> Dot:
    if not (isinstance(raw, list | tuple) and len(raw) == 2 and all(type(x) is int for x in raw)):
        raise RemoteProtocolError(f"malformed dot {raw!r}")
    return (raw[0], raw[1])


def _key(raw: Any) -> Hashable:
    # msgpack turns tuples into lists; keys must stay hashable.
    if isinstance(raw, list):
        return tuple(_key(x) for x in raw)
    if isinstance(raw, dict):
        raise RemoteProtocolError("a map cannot be a key")
    return raw  # type: ignore[no-any-return]


class DotSetKind:
    """A set of dots."""

    def empty(self) -> set[Dot]:
        return set()

    def join(self, a: set[Dot], ca: CausalContext, b: set[Dot], cb: CausalContext) -> set[Dot]:
        out = a & b
        out.update(d for d in a if d not in cb)
        out.update(d for d in b if d not in ca)
        return out

    def dots(self, store: set[Dot]) -> Iterator[Dot]:
        return iter(store)

    def to_wire(self, store: set[Dot]) -> Any:
        return sorted(store)

    def from_wire(self, wire: Any) -> set[Dot]:
        if not isinstance(wire, list):
            raise RemoteProtocolError("malformed dot set")
        return {_dot(d) for d in wire}


class DotFunKind:
    """Dots mapped to values (a value written by the event of its dot)."""

    def empty(self) -> dict[Dot, Any]:
        return {}

    def join(
        self, a: dict[Dot, Any], ca: CausalContext, b: dict[Dot, Any], cb: CausalContext
    ) -> dict[Dot, Any]:
        out = {d: v for d, v in a.items() if d in b or d not in cb}
        out.update((d, v) for d, v in b.items() if d not in ca)
        return out

    def dots(self, store: dict[Dot, Any]) -> Iterator[Dot]:
        return iter(store)

    def to_wire(self, store: dict[Dot, Any]) -> Any:
        return [[d, v] for d, v in sorted(store.items(), key=lambda kv: kv[0])]

    def from_wire(self, wire: Any) -> dict[Dot, Any]:
        if not isinstance(wire, list) or not all(isinstance(p, list) and len(p) == 2 for p in wire):
            raise RemoteProtocolError("malformed dot function")
        return {_dot(d): v for d, v in wire}


class DotMapKind:
    """Keys mapped to nested stores of one kind."""

    def __init__(self, value: StoreKind) -> None:
        self.value = value

    def empty(self) -> dict[Hashable, Any]:
        return {}

    def join(
        self, a: dict[Hashable, Any], ca: CausalContext, b: dict[Hashable, Any], cb: CausalContext
    ) -> dict[Hashable, Any]:
        value = self.value
        out: dict[Hashable, Any] = {}
        # a's keys in their order, then b's new ones: a set union's order would
        # follow string hashing and reach the wire, breaking replay by seed.
        for key in [*a, *(k for k in b if k not in a)]:
            joined = value.join(a.get(key, value.empty()), ca, b.get(key, value.empty()), cb)
            if joined:
                out[key] = joined
        return out

    def dots(self, store: dict[Hashable, Any]) -> Iterator[Dot]:
        for nested in store.values():
            yield from self.value.dots(nested)

    def to_wire(self, store: dict[Hashable, Any]) -> Any:
        return [[k, self.value.to_wire(v)] for k, v in store.items()]

    def from_wire(self, wire: Any) -> dict[Hashable, Any]:
        if not isinstance(wire, list) or not all(isinstance(p, list) and len(p) == 2 for p in wire):
            raise RemoteProtocolError("malformed dot map")
        return {_key(k): self.value.from_wire(v) for k, v in wire}


C = TypeVar("C", bound="CausalCRDT")


class CausalCRDT:
    """A causal CRDT: a store of ``kind`` plus a causal context.

    A *view* (``is_view``) shares its store and context with an enclosing OR-Map:
    its mutators only return deltas, the map joins them in.
    """

    __slots__ = ("context", "is_view", "kind", "replica", "store")

    def __init__(
        self,
        kind: StoreKind,
        replica: int,
        store: Any = None,
        context: CausalContext | None = None,
        is_view: bool = False,
    ) -> None:
        self.kind = kind
        self.replica = replica
        self.store = kind.empty() if store is None else store
        self.context = context if context is not None else CausalContext()
        self.is_view = is_view

    def _like(self: C, store: Any, context: CausalContext) -> C:
        """A state of the same type (a delta) with ``store`` and ``context``."""
        out = object.__new__(type(self))
        CausalCRDT.__init__(out, self.kind, self.replica, store, context)
        self._init_like(out)
        return out

    def _init_like(self, out: Any) -> None:
        """Copy type-specific settings into a new state of this type."""

    def _commit(self: C, delta: C) -> C:
        if not self.is_view:
            self.merge(delta)
        return delta

    def _fresh_dot(self) -> Dot:
        return self.context.next_dot(self.replica)

    def merge(self, other: CausalCRDT) -> None:
        """Join ``other`` (a state or a delta) into this state."""
        self.store = self.kind.join(self.store, self.context, other.store, other.context)
        self.context.merge_in(other.context)

    def copy(self: C) -> C:
        out = self._like(
            self.kind.join(self.store, self.context, self.kind.empty(), CausalContext()),
            self.context.copy(),
        )
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CausalCRDT)
            and type(other) is type(self)
            and self.store == other.store
            and self.context == other.context
        )

    def is_bottom(self) -> bool:
        return not self.store and not self.context.vector and not self.context.cloud

    def _wire(self) -> Any:
        return [self.kind.to_wire(self.store), self.context.to_wire()]

    def _load_wire(self, wire: Any) -> None:
        try:
            store_wire, (vector, cloud) = wire
            self.store = self.kind.from_wire(store_wire)
            self.context = CausalContext(
                {int(r): int(c) for r, c in vector}, (_dot(d) for d in cloud)
            )
        except (TypeError, ValueError) as exc:
            raise RemoteProtocolError(f"malformed causal state: {exc}") from exc


def decode_wire(body: bytes) -> Any:
    """Untyped msgpack decode of a causal body (shapes are checked by the kinds)."""
    try:
        return msgspec.msgpack.decode(body)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"malformed causal state: {exc}") from exc


def context_of(dots: Iterable[Dot]) -> CausalContext:
    """The causal context holding exactly ``dots``."""
    return CausalContext.of(dots)
