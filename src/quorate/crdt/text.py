"""A collaborative text CRDT with non-interleaving ordering (FugueMax).

Theory of operation
-------------------
Ordering follows Weidner & Kleppmann, "The Art of the Fugue: Minimizing
Interleaving in Collaborative Text Editing" (arXiv 2305.00583). Every character
has an id ``(replica, counter)`` and two *origins*: the characters immediately to
its left and right (tombstones included) when it was typed. A remote character is
placed between its origins by the list-based integration rule of FugueMax
(§5 of the paper; the same rule is known as "YjsMod"): scanning the characters
between the origins, a concurrent sibling with an earlier left origin ends the
scan, a sibling with the same left origin and a nearer right origin is skipped
together with its descendants, and exact ties go to the smaller replica id. Two
users typing at the same place, forwards or backwards, therefore end up with one
word after the other, never mixed -- unlike RGA, which interleaves backward
typing.

Representation
--------------
- **Runs.** Characters inserted by one replica in one go (and a user typing on
  at the end of what they just typed) share one ``_Item`` with a length: every
  character but the first has the previous character as left origin and the
  run's right origin. Runs are split on demand (an insert or delete inside them),
  and adjacent deleted pieces of one run are joined again.
- **Index.** Runs sit in document order in *chunks* of at most
  ``CHUNK_MAX_ITEMS`` items, each knowing its visible length; a Fenwick tree over
  the chunks' visible lengths finds the chunk holding visible position ``p`` in
  O(log n), then a scan of one bounded chunk finds the run. A chunked list was
  chosen over a balanced tree because Python pays per object touched: inserting
  into a 128-slot list is one C ``memmove``, and splitting a chunk (renumber the
  chunks after it, rebuild the Fenwick tree) happens once per ~64 new runs.
  Editing is local, so the last located run is cached and most lookups are a
  step or two from it.
- **Ids.** For each replica, the start counters of its runs as created (append
  only, as counters only grow) are bisected to find the original run, whose
  pieces list (sorted by counter) holds the split-off parts.
- **Operations.** Inserted characters and deletions both consume counters of the
  replica that makes them, so the version vector (next counter per replica)
  summarises every operation seen, and ``delta_since(version)`` returns exactly
  the operations a peer at that version lacks. A delete run records its own
  counter range, the target replica, the first target counter and a step of
  +1 (forward delete) or -1 (backspace), so a burst of backspaces is one entry.

Version cursor
--------------
Every run piece also has a *state*: ``NOT_INSERTED`` (0), ``INSERTED`` (1), or
``1 + k`` when ``k`` deletions of it have been applied. A document normally
shows every operation it holds, and then a piece is visible exactly when its
state is ``INSERTED``. ``quorate.crdt.history`` replays an event graph on one
document by moving the document to an earlier version and back: it subtracts
(*retreats*) or adds (*advances*) one to the state of the characters an
operation touched (``_shift_operations``), so positions are counted in the version
an edit was made in, as eg-walker does (Gentle & Kleppmann, "Collaborative Text
Editing with Eg-walker", EuroSys 2025, §3). A local insert whose neighbour is a
``NOT_INSERTED`` piece is concurrent with it and is placed by the FugueMax rule
among such pieces; everything else is the ordinary local edit.

Invariants: every character id maps to exactly one run piece; chunk visible
counts equal the sum of their live runs' lengths and the Fenwick tree holds them;
a piece is visible exactly when its state is ``INSERTED``; the counters of each
replica's operations are contiguous from 0 (deltas whose causal dependencies are
missing wait in a pending list until they arrive).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from operator import attrgetter, itemgetter

import msgspec

from quorate.crdt.causal import VersionVector
from quorate.crdt.encoding import FormatTag, unwrap, wrap
from quorate.errors import LocalProtocolError, RemoteProtocolError

CHUNK_MAX_ITEMS = 128
"""A chunk holding more runs than this is split in two halves."""

_END_KEY = (1 << 62, 0, 0)
"""Document-order key of the (virtual) end of the document."""
_START_KEY = (-1, 0, 0)
"""Document-order key of the (virtual) start of the document."""

CharId = tuple[int, int]
"""A character's id: (replica, counter)."""

NOT_INSERTED = 0
"""State of a piece whose insert is not in the document's current version."""
INSERTED = 1
"""State of a visible piece; ``INSERTED + k`` means deleted ``k`` times."""


class InsertRun(msgspec.Struct, array_like=True, frozen=True):
    """Characters ``text`` typed by ``replica`` with counters ``counter...``;
    the first has origins ``left``/``right``, the others the previous character
    and ``right``."""

    replica: int
    counter: int
    left: tuple[int, int] | None
    right: tuple[int, int] | None
    text: str


class DeleteRun(msgspec.Struct, array_like=True, frozen=True):
    """``length`` deletions by ``replica`` (counters ``counter...``); deletion k
    removes character ``(target_replica, target_counter + step * k)``."""

    replica: int
    counter: int
    target_replica: int
    target_counter: int
    length: int
    step: int


class TextDelta(msgspec.Struct, array_like=True):
    """A group of operations; applying it is idempotent and order-insensitive
    (operations whose dependencies are missing wait until they arrive)."""

    inserts: list[InsertRun] = msgspec.field(default_factory=list)
    deletes: list[DeleteRun] = msgspec.field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.inserts or self.deletes)

    def encode(self) -> bytes:
        """Versioned binary form of the delta."""
        return wrap(FormatTag.TEXT_DELTA, _ENCODER.encode(self))

    @classmethod
    def decode(cls, data: bytes) -> TextDelta:
        """Parse ``encode()`` output; ``RemoteProtocolError`` on bad bytes."""
        body = unwrap(FormatTag.TEXT_DELTA, data)
        try:
            return _DELTA_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"malformed text delta: {exc}") from exc


class _SavedText(msgspec.Struct, array_like=True):
    """The saved form of a whole document: runs in document order as columns.

    An origin is stored as ``None``, as an int (same replica as the run: the
    run's counter minus the origin's, 1 for "the previous character") or as a
    ``(replica, counter)`` pair. Text of deleted runs is not saved: a peer that
    lacks such a run also lacks its deletion, which travels with it, so those
    characters can never show; they load as ``DELETED_PLACEHOLDER``. Delete runs
    store their counter as the gap after the previous run of the same replica
    and their target relative to their own counter.
    """

    version: list[tuple[int, int]]
    run_replica: list[int]
    run_counter: list[int]
    run_length: list[int]
    run_deleted: list[bool]
    run_left: list[int | tuple[int, int] | None]
    run_right: list[int | tuple[int, int] | None]
    text: str
    delete_replica: list[int]
    delete_gap: list[int]
    delete_target_replica: list[int]
    delete_target_back: list[int]
    delete_length: list[int]
    delete_step: list[int]


DELETED_PLACEHOLDER = "\ufffd"
"""Stands in for the characters of deleted runs loaded from a saved document."""


def _pack_origin(replica: int, counter: int, origin: CharId | None) -> int | CharId | None:
    if origin is None:
        return None
    if origin[0] == replica:
        return counter - origin[1]
    return origin


def _unpack_origin(replica: int, counter: int, packed: int | CharId | None) -> CharId | None:
    if packed is None:
        return None
    if isinstance(packed, int):
        return (replica, counter - packed)
    return (packed[0], packed[1])


_ENCODER = msgspec.msgpack.Encoder()
_DELTA_DECODER = msgspec.msgpack.Decoder(TextDelta)
_SAVED_DECODER = msgspec.msgpack.Decoder(_SavedText)


class _Chunk:
    __slots__ = ("index", "items", "visible")

    def __init__(self, index: int, items: list[_Item], visible: int) -> None:
        self.index = index
        self.items = items
        self.visible = visible


class _Item:
    """A run piece: ``length`` characters with consecutive counters."""

    __slots__ = (
        "chunk",
        "counter",
        "deleted",
        "left",
        "length",
        "pieces",
        "replica",
        "right",
        "state",
        "text",
    )

    def __init__(
        self,
        replica: int,
        counter: int,
        length: int,
        left: CharId | None,
        right: CharId | None,
        text: str,
        deleted: bool,
        chunk: _Chunk,
        pieces: list[_Item] | None,
    ) -> None:
        self.replica = replica
        self.counter = counter
        self.length = length
        self.left = left
        self.right = right
        self.text = text
        self.deleted = deleted
        self.state = INSERTED + deleted
        self.chunk = chunk
        # The pieces of the run this item was split from, sorted by counter.
        self.pieces: list[_Item] = pieces if pieces is not None else [self]


_counter_of = attrgetter("counter")
_first = itemgetter(0)


class Text:
    """A replicated text document edited by replica ``replica_id``."""

    def __init__(self, replica_id: int) -> None:
        if replica_id < 0:
            raise LocalProtocolError(f"replica id must be >= 0, got {replica_id}")
        self.replica_id = replica_id
        self._chunks: list[_Chunk] = [_Chunk(0, [], 0)]
        self._tree: list[int] = [0, 0]
        self._tree_top = 1
        self._length = 0
        self._version: dict[int, int] = {}
        # replica -> (original run start counters, their pieces lists)
        self._runs: dict[int, tuple[list[int], list[list[_Item]]]] = {}
        # replica -> delete log entries [counter, target_replica, target_counter, length, step]
        self._deletes: dict[int, list[list[int]]] = {}
        self._pending: list[InsertRun | DeleteRun] = []
        # Locate cache: a chunk, its visible start, an item index in it and the
        # item's visible start. Valid until the next structural change it does
        # not account for.
        self._cache_chunk: _Chunk | None = None
        self._cache_chunk_start = 0
        self._cache_index = 0
        self._cache_start = 0
        # Typing cursor: the item the last local insert created or extended and
        # the visible position just after it. Typing there extends the run.
        self._tail: _Item | None = None
        self._tail_end = -1

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return self._length

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"Text(replica_id={self.replica_id}, length={self._length})"

    def to_string(self) -> str:
        """The visible text."""
        return "".join([it.text for ch in self._chunks for it in ch.items if not it.deleted])

    @property
    def version(self) -> VersionVector:
        """Operations seen: next counter per replica."""
        return VersionVector(self._version)

    @property
    def pending(self) -> int:
        """Received operations waiting for their causal dependencies."""
        return len(self._pending)

    def run_count(self) -> int:
        """Run pieces stored (live and deleted)."""
        return sum(len(ch.items) for ch in self._chunks)

    def id_runs(self) -> Iterator[tuple[int, int, int, bool]]:
        """``(replica, first counter, length, deleted)`` of every stored run
        piece in document order, tombstones included."""
        for ch in self._chunks:
            for it in ch.items:
                yield it.replica, it.counter, it.length, it.deleted

    def ids(self, start: int = 0, stop: int | None = None) -> list[CharId]:
        """The ids of visible characters ``start..stop-1`` (Python slice bounds
        clamped to the document, no negative indexes)."""
        stop = self._length if stop is None else min(stop, self._length)
        if start < 0 or start >= stop:
            return []
        chunk, index, offset = self._locate(start)
        out: list[CharId] = []
        want = stop - start
        chunks = self._chunks
        items = chunk.items
        while want:
            if index == len(items):
                chunk = chunks[chunk.index + 1]
                items, index = chunk.items, 0
                continue
            it = items[index]
            if not it.deleted:
                take = min(want, it.length - offset)
                replica, first = it.replica, it.counter + offset
                out.extend([(replica, c) for c in range(first, first + take)])
                want -= take
                offset = 0
            index += 1
        return out

    # ------------------------------------------------------- Fenwick over chunks
    def _rebuild_tree(self) -> None:
        chunks = self._chunks
        n = len(chunks)
        tree = [0] * (n + 1)
        for i, ch in enumerate(chunks, 1):
            ch.index = i - 1
            tree[i] += ch.visible
            j = i + (i & -i)
            if j <= n:
                tree[j] += tree[i]
        self._tree = tree
        top = 1
        while top * 2 <= n:
            top *= 2
        self._tree_top = top

    def _tree_add(self, index: int, delta: int) -> None:
        tree = self._tree
        n = len(tree) - 1
        i = index + 1
        while i <= n:
            tree[i] += delta
            i += i & -i

    def _chunk_start(self, index: int) -> int:
        tree = self._tree
        total = 0
        i = index
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    # ------------------------------------------------------------ positioning
    def _locate(self, pos: int) -> tuple[_Chunk, int, int]:
        """The chunk, item index and offset of visible character ``pos``
        (``0 <= pos < len``). Leaves the cache on that item."""
        chunk = self._cache_chunk
        if chunk is None or not (
            self._cache_chunk_start <= pos < self._cache_chunk_start + chunk.visible
        ):
            # Fenwick descent: the first chunk whose prefix exceeds pos.
            tree = self._tree
            n = len(tree) - 1
            index = 0
            rest = pos
            step = self._tree_top
            while step:
                nxt = index + step
                if nxt <= n and tree[nxt] <= rest:
                    index = nxt
                    rest -= tree[nxt]
                step >>= 1
            chunk = self._chunks[index]
            self._cache_chunk = chunk
            self._cache_chunk_start = pos - rest
            self._cache_index = 0
            self._cache_start = pos - rest
        items = chunk.items
        i = self._cache_index
        start = self._cache_start
        if pos >= start:
            while True:
                it = items[i]
                if not it.deleted:
                    end = start + it.length
                    if pos < end:
                        break
                    start = end
                i += 1
        else:
            while True:
                i -= 1
                it = items[i]
                if not it.deleted:
                    start -= it.length
                    if pos >= start:
                        break
        self._cache_index = i
        self._cache_start = start
        return chunk, i, pos - start

    def _next_item(self, chunk: _Chunk, index: int) -> _Item | None:
        """The item after ``chunk.items[index]`` in document order."""
        items = chunk.items
        if index + 1 < len(items):
            return items[index + 1]
        ci = chunk.index + 1
        return self._chunks[ci].items[0] if ci < len(self._chunks) else None

    def _find(self, replica: int, counter: int) -> _Item:
        """The run piece holding character ``(replica, counter)``."""
        entry = self._runs.get(replica)
        if entry is None:
            raise RemoteProtocolError(f"unknown character id ({replica}, {counter})")
        starts, pieces_lists = entry
        i = bisect_right(starts, counter) - 1
        if i < 0:
            raise RemoteProtocolError(f"unknown character id ({replica}, {counter})")
        pieces = pieces_lists[i]
        it = (
            pieces[0]
            if len(pieces) == 1
            else pieces[bisect_right(pieces, counter, key=_counter_of) - 1]
        )
        if counter >= it.counter + it.length:
            raise RemoteProtocolError(f"unknown character id ({replica}, {counter})")
        return it

    def _key(self, char: CharId | None, if_none: tuple[int, int, int]) -> tuple[int, int, int]:
        """A sortable document-order key of a character."""
        if char is None:
            return if_none
        it = self._find(char[0], char[1])
        chunk = it.chunk
        return (chunk.index, chunk.items.index(it), char[1] - it.counter)

    def _split(self, it: _Item, offset: int) -> _Item:
        """Cut ``it`` before ``offset`` (0 < offset < length); return the right
        piece, placed just after ``it``. May split the chunk."""
        chunk = it.chunk
        counter = it.counter + offset
        right = _Item(
            it.replica,
            counter,
            it.length - offset,
            (it.replica, counter - 1),
            it.right,
            it.text[offset:],
            it.deleted,
            chunk,
            it.pieces,
        )
        right.state = it.state
        it.text = it.text[:offset]
        it.length = offset
        pieces = it.pieces
        if len(pieces) == 1:
            pieces.append(right)
        else:
            pieces.insert(pieces.index(it) + 1, right)
        items = chunk.items
        items.insert(items.index(it) + 1, right)
        if len(items) > CHUNK_MAX_ITEMS:
            self._split_chunk(chunk)
        return right

    def _split_chunk(self, chunk: _Chunk) -> None:
        items = chunk.items
        half = len(items) // 2
        moved = items[half:]
        del items[half:]
        moved_visible = 0
        fresh = _Chunk(chunk.index + 1, moved, 0)
        for it in moved:
            it.chunk = fresh
            if not it.deleted:
                moved_visible += it.length
        fresh.visible = moved_visible
        chunk.visible -= moved_visible
        self._chunks.insert(chunk.index + 1, fresh)
        self._rebuild_tree()
        self._cache_chunk = None

    def _add_visible(self, chunk: _Chunk, delta: int) -> None:
        chunk.visible += delta
        self._length += delta
        self._tree_add(chunk.index, delta)

    def _register_run(self, it: _Item) -> None:
        entry = self._runs.get(it.replica)
        if entry is None:
            entry = self._runs[it.replica] = ([], [])
        entry[0].append(it.counter)
        entry[1].append(it.pieces)

    # ---------------------------------------------------------- local edits
    def insert(self, pos: int, text: str) -> TextDelta:
        """Insert ``text`` before visible position ``pos``; return the delta."""
        n = len(text)
        if not 0 <= pos <= self._length:
            raise LocalProtocolError(f"insert position {pos} outside 0..{self._length}")
        if n == 0:
            return TextDelta()
        me = self.replica_id
        counter = self._version.get(me, 0)
        tail = self._tail
        if tail is not None and pos == self._tail_end:
            # Typing on: the run grows, no new item.
            run = InsertRun(me, counter, (me, counter - 1), tail.right, text)
            tail.text += text
            tail.length += n
            chunk = tail.chunk
            chunk.visible += n
            self._length += n
            self._tree_add(chunk.index, n)
            self._tail_end = pos + n
            self._version[me] = counter + n
            return TextDelta([run], [])
        if pos == 0:
            chunk = self._chunks[0]
            index = 0
            left: CharId | None = None
            first = chunk.items[0] if chunk.items else None
            if first is not None and first.state == NOT_INSERTED:
                return self._insert_concurrent(pos, text, None, chunk, 0)
            right = None if first is None else (first.replica, first.counter)
        else:
            chunk, index, offset = self._locate(pos - 1)
            it = chunk.items[index]
            left = (it.replica, it.counter + offset)
            if offset + 1 < it.length:
                after = self._split(it, offset + 1)
                chunk = it.chunk
                index = chunk.items.index(it)
                right = (after.replica, after.counter)
            else:
                nxt = self._next_item(chunk, index)
                if nxt is not None and nxt.state == NOT_INSERTED:
                    return self._insert_concurrent(pos, text, left, nxt.chunk, -1, nxt)
                right = None if nxt is None else (nxt.replica, nxt.counter)
            index += 1
        item = _Item(me, counter, n, left, right, text, False, chunk, None)
        chunk.items.insert(index, item)
        self._register_run(item)
        self._add_visible(chunk, n)
        self._version[me] = counter + n
        if len(chunk.items) > CHUNK_MAX_ITEMS:
            self._split_chunk(chunk)
        else:
            self._cache_chunk = chunk
            self._cache_chunk_start = self._chunk_start(chunk.index)
            self._cache_index = index
            self._cache_start = pos
        self._tail = item
        self._tail_end = pos + n
        return TextDelta([InsertRun(me, counter, left, right, text)], [])

    def _insert_concurrent(
        self,
        pos: int,
        text: str,
        left: CharId | None,
        chunk: _Chunk,
        index: int,
        first: _Item | None = None,
    ) -> TextDelta:
        """Insert at ``pos`` when the pieces after the left origin are not in the
        current version (``first`` is the first of them, else ``chunk.items[index]``):
        the right origin is the first piece that is, and the FugueMax rule places
        the new run among the concurrent ones in between."""
        items = chunk.items
        i = items.index(first) if first is not None else index
        chunks = self._chunks
        right: CharId | None = None
        while True:
            if i == len(items):
                if chunk.index + 1 == len(chunks):
                    break
                chunk = chunks[chunk.index + 1]
                items, i = chunk.items, 0
                continue
            it = items[i]
            if it.state != NOT_INSERTED:
                right = (it.replica, it.counter)
                break
            i += 1
        me = self.replica_id
        run = InsertRun(me, self._version.get(me, 0), left, right, text)
        item = self._integrate(run)
        self._cache_chunk = None
        self._tail = item
        self._tail_end = pos + len(text)
        return TextDelta([run], [])

    def delete(self, pos: int, n: int = 1) -> TextDelta:
        """Delete ``n`` visible characters from ``pos``; return the delta."""
        if n < 0 or pos < 0 or pos + n > self._length:
            raise LocalProtocolError(f"delete of {n} at {pos} outside 0..{self._length}")
        self._tail = None
        me = self.replica_id
        runs: list[DeleteRun] = []
        log = self._deletes.get(me)
        if log is None:
            log = self._deletes[me] = []
        while n:
            chunk, index, offset = self._locate(pos)
            it = chunk.items[index]
            k = min(n, it.length - offset)
            target = it.counter + offset
            target_replica = it.replica
            self._isolate_and_delete(it, offset, k, pos)
            counter = self._version.get(me, 0)
            self._version[me] = counter + k
            runs.append(DeleteRun(me, counter, target_replica, target, k, 1))
            # Extend the last log entry when this continues a backspace or
            # forward-delete burst (same target run, next counters).
            last = log[-1] if log else None
            if (
                k == 1
                and last is not None
                and last[0] + last[3] == counter
                and last[1] == target_replica
                and (
                    (last[3] == 1 and (target == last[2] - 1 or target == last[2] + 1))
                    or target == last[2] + last[4] * last[3]
                )
            ):
                if last[3] == 1:
                    last[4] = target - last[2]
                last[3] += 1
            else:
                log.append([counter, target_replica, target, k, 1])
            n -= k
        return TextDelta([], runs)

    def _isolate_and_delete(self, it: _Item, offset: int, k: int, pos: int) -> None:
        """Mark characters ``offset..offset+k`` of ``it`` deleted; ``pos`` is the
        visible position of the first one (keeps the locate cache exact)."""
        if offset:
            it = self._split(it, offset)
        if k < it.length:
            self._split(it, k)
        it.deleted = True
        state = it.state = it.state + 1
        chunk = it.chunk
        self._add_visible(chunk, -k)
        items = chunk.items
        index = items.index(it)
        # Join adjacent deleted pieces of the same run: backspacing through a
        # word leaves one tombstone item, not one per character.
        if index + 1 < len(items):
            nxt = items[index + 1]
            if (
                nxt.state == state
                and nxt.pieces is it.pieces
                and nxt.counter == it.counter + it.length
            ):
                it.text += nxt.text
                it.length += nxt.length
                del items[index + 1]
                it.pieces.remove(nxt)
        if index > 0:
            prev = items[index - 1]
            if (
                prev.state == state
                and prev.pieces is it.pieces
                and prev.counter + prev.length == it.counter
            ):
                prev.text += it.text
                prev.length += it.length
                del items[index]
                it.pieces.remove(it)
                index -= 1
        if self._cache_chunk is not chunk:
            self._cache_chunk = chunk
            self._cache_chunk_start = self._chunk_start(chunk.index)
        self._cache_index = index
        self._cache_start = pos

    # --------------------------------------------------------- remote edits
    def apply(self, delta: TextDelta) -> None:
        """Merge a delta (from any replica, in any order, duplicates allowed).

        Raises ``RemoteProtocolError`` for a malformed delta (empty runs, bad
        steps) before changing anything, and for references to characters that
        do not exist (a peer's bug or malice)."""
        for run in delta.inserts:
            if not run.text or run.replica < 0 or run.counter < 0:
                raise RemoteProtocolError(f"malformed insert run {run!r}")
        for d in delta.deletes:
            if d.length < 1 or d.step not in (1, -1) or d.replica < 0 or d.counter < 0:
                raise RemoteProtocolError(f"malformed delete run {d!r}")
        ops: list[InsertRun | DeleteRun] = [*self._pending, *delta.inserts, *delta.deletes]
        self._pending = []
        if not ops:
            return
        self._tail = None
        self._cache_chunk = None
        queues: dict[int, list[InsertRun | DeleteRun]] = {}
        for op in ops:
            queues.setdefault(op.replica, []).append(op)
        for queue in queues.values():
            queue.sort(key=_counter_of, reverse=True)
        progress = True
        while progress and queues:
            progress = False
            for replica in list(queues):
                queue = queues[replica]
                while queue:
                    op = queue[-1]
                    have = self._version.get(replica, 0)
                    length = len(op.text) if isinstance(op, InsertRun) else op.length
                    if op.counter + length <= have:
                        queue.pop()  # already seen
                        continue
                    if op.counter > have:
                        break  # a gap: wait for the earlier operations
                    skip = have - op.counter
                    if isinstance(op, InsertRun):
                        if skip:
                            op = InsertRun(
                                replica, have, (replica, have - 1), op.right, op.text[skip:]
                            )
                        if not (self._has(op.left) and self._has(op.right)):
                            break
                        self._integrate(op)
                    else:
                        if skip:
                            op = DeleteRun(
                                replica,
                                have,
                                op.target_replica,
                                op.target_counter + op.step * skip,
                                op.length - skip,
                                op.step,
                            )
                        last = op.target_counter + op.step * (op.length - 1)
                        if max(op.target_counter, last) >= self._version.get(op.target_replica, 0):
                            break
                        self._apply_delete(op)
                    queue.pop()
                    progress = True
                if not queue:
                    del queues[replica]
        for queue in queues.values():
            self._pending.extend(queue)

    def _has(self, char: CharId | None) -> bool:
        return char is None or char[1] < self._version.get(char[0], 0)

    def _integrate(self, op: InsertRun) -> _Item:
        """Place a remote run between its origins by the FugueMax rule."""
        left, right, replica = op.left, op.right, op.replica
        if left is not None:
            it = self._find(left[0], left[1])
            offset = left[1] - it.counter
            if offset + 1 < it.length:
                self._split(it, offset + 1)
        right_item: _Item | None = None
        if right is not None:
            it = self._find(right[0], right[1])
            offset = right[1] - it.counter
            right_item = self._split(it, offset) if offset else it
        left_key = self._key(left, _START_KEY)
        right_key = self._key(right, _END_KEY)
        chunks = self._chunks
        if left is None:
            ci, i = 0, 0
        else:
            ci, i = left_key[0], left_key[1] + 1
        last_chunk = len(chunks) - 1
        dest_ci, dest_i = ci, i
        scanning = False
        while True:
            if i >= len(chunks[ci].items) and ci < last_chunk:
                ci, i = ci + 1, 0
                continue
            if not scanning:
                dest_ci, dest_i = ci, i
            if i >= len(chunks[ci].items):
                break  # end of the document
            other = chunks[ci].items[i]
            if other is right_item:
                break
            other_left = self._key(other.left, _START_KEY)
            if other_left < left_key:
                break
            if other_left == left_key:
                other_right = self._key(other.right, _END_KEY)
                if other_right < right_key:
                    scanning = True
                elif other_right == right_key:
                    if replica < other.replica:
                        break
                    scanning = False
                else:
                    scanning = False
            i += 1
        chunk = chunks[dest_ci]
        item = _Item(replica, op.counter, len(op.text), left, right, op.text, False, chunk, None)
        chunk.items.insert(dest_i, item)
        self._register_run(item)
        self._add_visible(chunk, item.length)
        self._version[replica] = op.counter + item.length
        if len(chunk.items) > CHUNK_MAX_ITEMS:
            self._split_chunk(chunk)
        return item

    def _apply_delete(self, op: DeleteRun) -> None:
        if op.step >= 0:
            low = op.target_counter
        else:
            low = op.target_counter - op.length + 1
        self._delete_ids(op.target_replica, low, low + op.length)
        self._version[op.replica] = op.counter + op.length
        log = self._deletes.setdefault(op.replica, [])
        log.append([op.counter, op.target_replica, op.target_counter, op.length, op.step])

    def _delete_ids(self, replica: int, low: int, high: int) -> None:
        while low < high:
            it = self._find(replica, low)
            offset = low - it.counter
            k = min(high - low, it.length - offset)
            if not it.deleted:
                if offset:
                    it = self._split(it, offset)
                if k < it.length:
                    self._split(it, k)
                it.deleted = True
                it.state += 1
                self._add_visible(it.chunk, -k)
            low += k
        self._cache_chunk = None

    def _shift_operations(self, replica: int, low: int, high: int, step: int) -> None:
        """Retreat (``step`` -1) or advance (+1) the operations ``replica`` made
        with counters ``low..high-1``: its inserted characters and the targets of
        its deletions (found in its delete log)."""
        log = self._deletes.get(replica, ())
        i = max(0, bisect_right(log, low, key=_first) - 1) if log else 0
        at = low
        while at < high:
            entry = log[i] if i < len(log) else None
            if entry is None or entry[0] >= high:
                self._shift_state(replica, at, high, step)
                return
            counter, target_replica, target, length, direction = entry
            if counter + length <= at:
                i += 1
                continue
            if counter > at:
                self._shift_state(replica, at, counter, step)
                at = counter
            first, last = at - counter, min(high, counter + length) - counter
            if direction >= 0:
                self._shift_state(target_replica, target + first, target + last, step)
            else:
                self._shift_state(target_replica, target - last + 1, target - first + 1, step)
            at = counter + last
            i += 1

    def _shift_state(self, replica: int, low: int, high: int, step: int) -> None:
        """Add ``step`` (+1 to advance, -1 to retreat an operation) to the state of
        characters ``(replica, low..high-1)``, showing or hiding them as their
        state becomes or stops being ``INSERTED``."""
        while low < high:
            it = self._find(replica, low)
            offset = low - it.counter
            if offset:
                it = self._split(it, offset)
            k = it.length
            if high - low < k:
                k = high - low
                self._split(it, k)
            before = it.state
            it.state = before + step
            if before == INSERTED:
                it.deleted = True
                self._add_visible(it.chunk, -k)
            elif before + step == INSERTED:
                it.deleted = False
                self._add_visible(it.chunk, k)
            low += k
        self._cache_chunk = None
        self._tail = None

    def merge(self, other: Text) -> None:
        """Join another replica's state into this one."""
        self.apply(other.delta_since(self.version))

    # -------------------------------------------------------------- deltas
    def delta_since(
        self, version: Mapping[int, int], until: Mapping[int, int] | None = None
    ) -> TextDelta:
        """Every operation a replica at ``version`` has not seen (with ``until``:
        only those below that version, which must be one this replica has seen
        as a whole, e.g. a merge of earlier versions)."""
        inserts: list[InsertRun] = []
        for replica, (starts, pieces_lists) in self._runs.items():
            have = version.get(replica, 0)
            stop = self._version.get(replica, 0) if until is None else until.get(replica, 0)
            if stop <= have:
                continue
            first = max(0, bisect_right(starts, have) - 1)
            for pieces in pieces_lists[first:]:
                head = pieces[0]
                if head.counter >= stop:
                    break
                text = head.text if len(pieces) == 1 else "".join([p.text for p in pieces])
                end = head.counter + len(text)
                if end <= have:
                    continue
                if end > stop:
                    text = text[: stop - head.counter]
                if head.counter >= have:
                    inserts.append(InsertRun(replica, head.counter, head.left, head.right, text))
                else:
                    skip = have - head.counter
                    inserts.append(
                        InsertRun(replica, have, (replica, have - 1), head.right, text[skip:])
                    )
        deletes: list[DeleteRun] = []
        for replica, log in self._deletes.items():
            have = version.get(replica, 0)
            stop = self._version.get(replica, 0) if until is None else until.get(replica, 0)
            if stop <= have:
                continue
            for counter, target_replica, target, length, step in log:
                if counter + length <= have:
                    continue
                if counter >= stop:
                    break
                skip = max(0, have - counter)
                length = min(length, stop - counter)
                deletes.append(
                    DeleteRun(
                        replica,
                        counter + skip,
                        target_replica,
                        target + step * skip,
                        length - skip,
                        step,
                    )
                )
        return TextDelta(inserts, deletes)

    def fork(self, new_replica_id: int) -> Text:
        """An independent copy of this document edited by ``new_replica_id``."""
        copy = Text(new_replica_id)
        copy._load(self._saved(), self._pending)
        # The saved form drops deleted text; a fork keeps it to serve deltas.
        for mine, theirs in zip(copy._iter_items(), self._iter_items()):
            mine.text = theirs.text
        return copy

    # ----------------------------------------------------------- encoding
    def _iter_items(self) -> Iterator[_Item]:
        for ch in self._chunks:
            yield from ch.items

    def _saved(self) -> _SavedText:
        items = list(self._iter_items())
        d_replica: list[int] = []
        d_gap: list[int] = []
        d_target_replica: list[int] = []
        d_target_back: list[int] = []
        d_length: list[int] = []
        d_step: list[int] = []
        for replica in sorted(self._deletes):
            end = 0
            for counter, target_replica, target, length, step in self._deletes[replica]:
                d_replica.append(replica)
                d_gap.append(counter - end)
                d_target_replica.append(target_replica)
                d_target_back.append(counter - target)
                d_length.append(length)
                d_step.append(step)
                end = counter + length
        return _SavedText(
            version=sorted(self._version.items()),
            run_replica=[it.replica for it in items],
            run_counter=[it.counter for it in items],
            run_length=[it.length for it in items],
            run_deleted=[it.deleted for it in items],
            run_left=[_pack_origin(it.replica, it.counter, it.left) for it in items],
            run_right=[_pack_origin(it.replica, it.counter, it.right) for it in items],
            text="".join([it.text for it in items if not it.deleted]),
            delete_replica=d_replica,
            delete_gap=d_gap,
            delete_target_replica=d_target_replica,
            delete_target_back=d_target_back,
            delete_length=d_length,
            delete_step=d_step,
        )

    def encode(self) -> bytes:
        """The whole document (with its history of ids) in versioned binary form."""
        return wrap(FormatTag.TEXT_STATE, _ENCODER.encode(self._saved()))

    @classmethod
    def decode(cls, data: bytes, replica_id: int) -> Text:
        """Load a document saved by ``encode()``, to be edited by ``replica_id``."""
        body = unwrap(FormatTag.TEXT_STATE, data)
        try:
            saved = _SAVED_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"malformed text document: {exc}") from exc
        doc = cls(replica_id)
        doc._load(saved, [])
        return doc

    def _load(self, saved: _SavedText, pending: list[InsertRun | DeleteRun]) -> None:
        columns = (saved.run_replica, saved.run_counter, saved.run_length, saved.run_deleted)
        count = len(saved.run_replica)
        if any(len(c) != count for c in (*columns, saved.run_left, saved.run_right)):
            raise RemoteProtocolError("text document columns differ in length")
        live = sum(n for n, gone in zip(saved.run_length, saved.run_deleted) if not gone)
        if live != len(saved.text) or min(saved.run_length, default=1) < 1:
            raise RemoteProtocolError("text document run lengths do not match its text")
        per_chunk = CHUNK_MAX_ITEMS // 2
        chunks: list[_Chunk] = []
        text = saved.text
        position = 0
        visible_total = 0
        by_replica: dict[int, list[_Item]] = {}
        for start in range(0, max(count, 1), per_chunk):
            chunk = _Chunk(len(chunks), [], 0)
            items = chunk.items
            visible = 0
            for j in range(start, min(start + per_chunk, count)):
                length = saved.run_length[j]
                replica = saved.run_replica[j]
                counter = saved.run_counter[j]
                deleted = saved.run_deleted[j]
                if deleted:
                    content = DELETED_PLACEHOLDER * length
                else:
                    content = text[position : position + length]
                    position += length
                    visible += length
                it = _Item(
                    replica,
                    counter,
                    length,
                    _unpack_origin(replica, counter, saved.run_left[j]),
                    _unpack_origin(replica, counter, saved.run_right[j]),
                    content,
                    deleted,
                    chunk,
                    None,
                )
                items.append(it)
                by_replica.setdefault(it.replica, []).append(it)
            chunk.visible = visible
            visible_total += visible
            chunks.append(chunk)
        self._chunks = chunks
        self._length = visible_total
        self._rebuild_tree()
        # Rebuild runs: pieces that continue each other (next counter, left
        # origin on the previous character, same right origin) form one run.
        runs: dict[int, tuple[list[int], list[list[_Item]]]] = {}
        for replica, items in by_replica.items():
            items.sort(key=_counter_of)
            starts: list[int] = []
            lists: list[list[_Item]] = []
            previous: _Item | None = None
            for it in items:
                if (
                    previous is not None
                    and previous.counter + previous.length == it.counter
                    and it.right == previous.right
                    and it.left == (replica, it.counter - 1)
                ):
                    pieces = previous.pieces
                    pieces.append(it)
                    it.pieces = pieces
                else:
                    if previous is not None and previous.counter + previous.length > it.counter:
                        raise RemoteProtocolError("text document has overlapping character ids")
                    starts.append(it.counter)
                    lists.append(it.pieces)
                previous = it
            runs[replica] = (starts, lists)
        self._runs = runs
        self._version = dict(saved.version)
        self._deletes = {}
        delete_columns = (
            saved.delete_replica,
            saved.delete_gap,
            saved.delete_target_replica,
            saved.delete_target_back,
            saved.delete_length,
            saved.delete_step,
        )
        if len({len(c) for c in delete_columns}) != 1:
            raise RemoteProtocolError("text document delete columns differ in length")
        previous_replica = -1
        end = 0
        for replica, gap, target_replica, back, length, step in zip(*delete_columns):
            if replica != previous_replica:
                previous_replica, end = replica, 0
            counter = end + gap
            self._deletes.setdefault(replica, []).append(
                [counter, target_replica, counter - back, length, step]
            )
            end = counter + length
        self._pending = list(pending)
        self._cache_chunk = None
        self._tail = None
