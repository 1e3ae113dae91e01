"""The observed-remove map (OR-Map) whose values are nested causal CRDTs.

Theory of operation (Almeida et al., "Delta State Replicated Data Types", §6.3):
the store maps keys to nested dot stores, and the whole map shares *one* causal
context with its values. Updating a key runs the value's own delta mutator
against the shared context (so fresh dots are unique map-wide) and wraps the
value delta under the key. ``remove(key)`` is a delta whose context holds every
dot inside the key's value: joining it empties that value, and a key whose value
is empty disappears. An update concurrent with the remove brings dots the
remover never saw, so that part survives (observed-remove: the concurrent update
wins, the rest of the old value is gone).

Values are described by a ``ValueSpec``: ``OR_SET_VALUES``,
``MV_REGISTER_VALUES`` or ``or_map_values(inner)`` for nested maps.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any, NamedTuple

import msgspec

from quorate.crdt.causal import CausalContext
from quorate.crdt.dotstore import CausalCRDT, DotMapKind, StoreKind, decode_wire
from quorate.crdt.encoding import FormatTag, unwrap, wrap
from quorate.crdt.orset import OR_SET_KIND, ORSet
from quorate.crdt.registers import DOT_FUN, MVRegister
from quorate.errors import LocalProtocolError


class ValueSpec(NamedTuple):
    """How an OR-Map stores and mutates its values."""

    kind: StoreKind
    view: Callable[[Any, CausalContext, int], CausalCRDT]


OR_SET_VALUES = ValueSpec(OR_SET_KIND, ORSet.view)
MV_REGISTER_VALUES = ValueSpec(DOT_FUN, MVRegister.view)


def or_map_values(inner: ValueSpec) -> ValueSpec:
    """Values that are themselves OR-Maps with ``inner`` values."""

    def view(store: Any, context: CausalContext, replica: int) -> CausalCRDT:
        return ORMap(replica, inner, store, context, is_view=True)

    return ValueSpec(DotMapKind(inner.kind), view)


class ORMap(CausalCRDT):
    """A map from hashable keys to nested causal CRDTs."""

    __slots__ = ("values_spec",)

    def __init__(
        self,
        replica: int,
        values: ValueSpec,
        store: dict[Hashable, Any] | None = None,
        context: CausalContext | None = None,
        is_view: bool = False,
    ) -> None:
        super().__init__(DotMapKind(values.kind), replica, store, context, is_view)
        self.values_spec = values

    def _init_like(self, out: Any) -> None:
        out.values_spec = self.values_spec

    def __contains__(self, key: object) -> bool:
        return key in self.store

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)

    def get(self, key: Hashable) -> CausalCRDT:
        """A read-only view of the value at ``key`` (empty when absent)."""
        spec = self.values_spec
        return spec.view(self.store.get(key, spec.kind.empty()), self.context, self.replica)

    def update(self, key: Hashable, mutate: Callable[[Any], CausalCRDT]) -> ORMap:
        """Apply one mutator of the value at ``key`` (e.g. ``lambda s: s.add(x)``);
        return the map delta."""
        spec = self.values_spec
        view = spec.view(self.store.get(key, spec.kind.empty()), self.context, self.replica)
        inner = mutate(view)
        if not isinstance(inner, CausalCRDT):
            raise LocalProtocolError("an OR-Map update must return one delta of the value type")
        store = {key: inner.store} if inner.store else {}
        return self._commit(self._like(store, inner.context))

    def remove(self, key: Hashable) -> ORMap:
        """Remove the value at ``key`` as observed here; return the delta."""
        nested = self.store.get(key)
        dots = self.values_spec.kind.dots(nested) if nested is not None else iter(())
        return self._commit(self._like({}, CausalContext.of(dots)))

    def encode(self) -> bytes:
        return wrap(FormatTag.OR_MAP, msgspec.msgpack.encode(self._wire()))

    @classmethod
    def decode(cls, data: bytes, replica: int, values: ValueSpec) -> ORMap:
        out = cls(replica, values)
        out._load_wire(decode_wire(unwrap(FormatTag.OR_MAP, data)))
        return out
