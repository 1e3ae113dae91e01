"""The add-wins observed-remove set (OR-Set) as a delta-state CRDT.

Theory of operation (Almeida et al., "Delta State Replicated Data Types", §6.1,
"AWORSet"): the store maps each element to the dots of the adds that are still
alive (a dot map of dot sets). ``add`` makes a fresh dot and, in its delta's
context, also covers the element's older dots (so they are replaced, keeping
one dot per element and replica). ``remove`` is a delta with an empty store whose
context holds the element's observed dots: joining it kills exactly those adds.
An add concurrent with a remove carries a dot the remover never saw, so it
survives: adds win. Removed elements leave nothing behind in the store; the
causal context remembers them compactly as a version vector.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import msgspec

from quorate.crdt.causal import CausalContext
from quorate.crdt.dotstore import CausalCRDT, DotMapKind, DotSetKind, decode_wire
from quorate.crdt.encoding import FormatTag, unwrap, wrap

OR_SET_KIND = DotMapKind(DotSetKind())


class ORSet(CausalCRDT):
    """An add-wins set of hashable, msgpack-encodable elements."""

    __slots__ = ()

    def __init__(
        self,
        replica: int,
        store: dict[Hashable, Any] | None = None,
        context: CausalContext | None = None,
        is_view: bool = False,
    ) -> None:
        super().__init__(OR_SET_KIND, replica, store, context, is_view)

    def __contains__(self, element: object) -> bool:
        return element in self.store

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)

    @property
    def elements(self) -> set[Hashable]:
        return set(self.store)

    def add(self, element: Hashable) -> ORSet:
        """Add ``element``; return the delta."""
        dot = self._fresh_dot()
        old = self.store.get(element, ())
        return self._commit(self._like({element: {dot}}, CausalContext.of([dot, *old])))

    def remove(self, element: Hashable) -> ORSet:
        """Remove the adds of ``element`` seen here; return the delta."""
        return self._commit(self._like({}, CausalContext.of(self.store.get(element, ()))))

    def clear(self) -> ORSet:
        """Remove every element seen here; return the delta."""
        return self._commit(self._like({}, CausalContext.of(self.kind.dots(self.store))))

    def encode(self) -> bytes:
        return wrap(FormatTag.OR_SET, msgspec.msgpack.encode(self._wire()))

    @classmethod
    def decode(cls, data: bytes, replica: int) -> ORSet:
        out = cls(replica)
        out._load_wire(decode_wire(unwrap(FormatTag.OR_SET, data)))
        return out

    @staticmethod
    def view(store: Any, context: CausalContext, replica: int) -> ORSet:
        return ORSet(replica, store, context, is_view=True)
