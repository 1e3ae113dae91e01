"""A replicated list of arbitrary (msgpack-encodable) values.

Theory of operation
-------------------
The list orders its elements exactly as ``Text`` orders characters (FugueMax,
Weidner & Kleppmann, arXiv 2305.00583: concurrent insertions at one place never
interleave, forwards or backwards), because it *is* a ``Text`` underneath: each
element is one character of an internal document, and the element's value is
kept beside it, keyed by the character's id ``(replica, counter)``. Ids, run
storage, the position index, deltas (``delta_since`` / ``apply``, idempotent,
any order, operations waiting for missing dependencies), version vectors and
the saved form are the text's; this module adds the values.

- ``insert(pos, values)`` types ``len(values)`` elements; ``delete(pos, n)``
  deletes ``n``; ``move(src, dst)`` is a delete and an insert of the same value
  (so two replicas moving one element concurrently both keep a copy); ``[i]``
  and ``[a:b]`` read ranges through the text's index.
- A ``ListDelta`` is a ``TextDelta`` plus, for each insert run, the values of
  its elements (``None`` for an element already deleted where the delta was
  made: its deletion travels in the same delta, so it is never read).
- The saved form is the text's saved form plus the values of the live
  elements, in order. Values of deleted elements are dropped by local deletes,
  by applied remote deletes and by saving.

Invariants: every live element has a value; an element's value never changes
(a replacement is a new element).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import msgspec

from quorate.crdt.causal import VersionVector
from quorate.crdt.encoding import FormatTag, unwrap, wrap
from quorate.crdt.text import CharId, Text, TextDelta
from quorate.errors import LocalProtocolError, RemoteProtocolError

ELEMENT = "\x00"
"""The internal document's character standing for one element."""


class ListDelta(msgspec.Struct, array_like=True):
    """Operations on a list: the order and deletions as a ``TextDelta``, and the
    values of each insert run's elements."""

    operations: TextDelta = msgspec.field(default_factory=TextDelta)
    values: list[list[Any]] = msgspec.field(default_factory=list)

    def is_empty(self) -> bool:
        return self.operations.is_empty()

    def encode(self) -> bytes:
        return wrap(FormatTag.LIST_DELTA, _ENCODER.encode(self))

    @classmethod
    def decode(cls, data: bytes) -> ListDelta:
        body = unwrap(FormatTag.LIST_DELTA, data)
        try:
            return _DELTA_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"malformed list delta: {exc}") from exc


class _SavedList(msgspec.Struct, array_like=True):
    document: bytes
    values: list[Any]


_ENCODER = msgspec.msgpack.Encoder()
_DELTA_DECODER = msgspec.msgpack.Decoder(ListDelta)
_SAVED_DECODER = msgspec.msgpack.Decoder(_SavedList)


class ReplicatedList:
    """A list CRDT edited by replica ``replica_id``."""

    __slots__ = ("_doc", "_values")

    def __init__(self, replica_id: int) -> None:
        self._doc = Text(replica_id)
        self._values: dict[CharId, Any] = {}

    # ------------------------------------------------------------ reading
    @property
    def replica_id(self) -> int:
        return self._doc.replica_id

    def __len__(self) -> int:
        return len(self._doc)

    def __repr__(self) -> str:
        return f"ReplicatedList(replica_id={self.replica_id}, length={len(self)})"

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self.to_list()[index]
            return self.range(start, stop)
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"list index {index} out of range 0..{n - 1}")
        return self._values[self._doc.ids(index, index + 1)[0]]

    def range(self, start: int, stop: int) -> list[Any]:
        """The values at positions ``start..stop-1`` (clamped to the list)."""
        values = self._values
        return [values[i] for i in self._doc.ids(max(0, start), stop)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.to_list())

    def to_list(self) -> list[Any]:
        return self.range(0, len(self))

    @property
    def version(self) -> VersionVector:
        """Operations seen: next counter per replica."""
        return self._doc.version

    @property
    def pending(self) -> int:
        """Received operations waiting for their causal dependencies."""
        return self._doc.pending

    # ------------------------------------------------------------ local edits
    def insert(self, pos: int, values: Sequence[Any]) -> ListDelta:
        """Insert ``values`` before position ``pos``; return the delta."""
        values = list(values)
        try:
            _ENCODER.encode(values)
        except (TypeError, msgspec.EncodeError) as exc:
            raise LocalProtocolError(f"list values must be msgpack-encodable: {exc}") from None
        doc = self._doc
        me = doc.replica_id
        counter = doc.version.get(me, 0)
        ops = doc.insert(pos, ELEMENT * len(values))
        for k, value in enumerate(values):
            self._values[(me, counter + k)] = value
        return ListDelta(ops, [values] if values else [])

    def append(self, value: Any) -> ListDelta:
        return self.insert(len(self), [value])

    def delete(self, pos: int, n: int = 1) -> ListDelta:
        """Delete ``n`` elements from ``pos``; return the delta."""
        ops = self._doc.delete(pos, n)
        self._forget(ops)
        return ListDelta(ops, [])

    def move(self, source: int, destination: int) -> ListDelta:
        """Move the element at ``source`` so that it ends at ``destination``
        (a position in the list after the move); return the delta."""
        n = len(self)
        if not (0 <= source < n and 0 <= destination < n):
            raise LocalProtocolError(f"move {source} -> {destination} outside 0..{n - 1}")
        value = self[source]
        removed = self.delete(source)
        added = self.insert(destination, [value])
        return ListDelta(
            TextDelta(added.operations.inserts, removed.operations.deletes), added.values
        )

    def _forget(self, ops: TextDelta) -> None:
        values = self._values
        for run in ops.deletes:
            for k in range(run.length):
                values.pop((run.target_replica, run.target_counter + run.step * k), None)

    # ------------------------------------------------------------ remote edits
    def apply(self, delta: ListDelta) -> None:
        """Merge a delta (any order, duplicates allowed). ``RemoteProtocolError``
        for a malformed one, before anything changes."""
        inserts = delta.operations.inserts
        if len(delta.values) != len(inserts) or any(
            len(v) != len(run.text) for v, run in zip(delta.values, inserts)
        ):
            raise RemoteProtocolError("list delta values do not match its insert runs")
        doc = self._doc
        seen = doc.version
        doc.apply(delta.operations)
        values = self._values
        for run, run_values in zip(inserts, delta.values):
            first = seen.get(run.replica, 0)
            for k, value in enumerate(run_values):
                if run.counter + k >= first:
                    values.setdefault((run.replica, run.counter + k), value)
        after = doc.version
        applied = [
            d for d in delta.operations.deletes if after.get(d.replica, 0) >= d.counter + d.length
        ]
        self._forget(TextDelta([], applied))

    def merge(self, other: ReplicatedList) -> None:
        """Join another replica's state into this one."""
        self.apply(other.delta_since(self.version))

    def delta_since(self, version: Mapping[int, int]) -> ListDelta:
        """Every operation a replica at ``version`` has not seen."""
        ops = self._doc.delta_since(version)
        values = self._values
        return ListDelta(
            ops,
            [
                [values.get((run.replica, run.counter + k)) for k in range(len(run.text))]
                for run in ops.inserts
            ],
        )

    def fork(self, new_replica_id: int) -> ReplicatedList:
        """An independent copy edited by ``new_replica_id``."""
        out = ReplicatedList.__new__(ReplicatedList)
        out._doc = self._doc.fork(new_replica_id)
        out._values = dict(self._values)
        return out

    # ------------------------------------------------------------ encoding
    def encode(self) -> bytes:
        """The whole list (with its history of ids) in versioned binary form."""
        saved = _SavedList(self._doc.encode(), self.to_list())
        return wrap(FormatTag.LIST_STATE, _ENCODER.encode(saved))

    @classmethod
    def decode(cls, data: bytes, replica_id: int) -> ReplicatedList:
        """Load a list saved by ``encode()``, to be edited by ``replica_id``."""
        try:
            saved = _SAVED_DECODER.decode(unwrap(FormatTag.LIST_STATE, data))
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"malformed list: {exc}") from exc
        out = cls.__new__(cls)
        out._doc = Text.decode(saved.document, replica_id)
        ids = out._doc.ids(0, len(out._doc))
        if len(ids) != len(saved.values):
            raise RemoteProtocolError("saved list values do not match its elements")
        out._values = dict(zip(ids, saved.values))
        return out
