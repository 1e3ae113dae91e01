"""Replaying a concurrent editing history on one text document.

Theory of operation
-------------------
A concurrent history is an *event graph* (Gentle & Kleppmann, "Collaborative
Text Editing with Eg-walker", EuroSys 2025, §2): transactions numbered in a
topological order, each made by one *agent* and naming its *parents*, the
earlier transactions whose merged document it was made on (none: the empty
document). Its edits are positions in that document. As in the editing-traces
format, each agent's transactions are ordered (an agent never works
concurrently with itself), so a *version* -- a set of transactions closed under
parents -- is a vector: for each agent, how many of its transactions it holds.
``EventGraph`` keeps each transaction's vector; a merge's is the pointwise
maximum of its parents'.

``TextHistory`` replays the graph on a single ``Text`` instead of one replica
per agent. The document holds every character ever inserted, and its *version
cursor* (a vector) says which transactions it currently shows. Every insert and
delete of an agent takes the agent's next counters, so the operations of an
agent's transactions ``s..t-1`` are one counter range. Before a transaction
is applied, the cursor moves to the transaction's parents: for each agent whose
count differs, that one range of its operations is *retreated* or *advanced*
(``Text._shift_operations``: a character's state counts its insert and its
deletions, and shifts commute). The edits then run as ordinary local edits of
the transaction's agent on the document as the parents saw it; an insert next
to characters the parents did not have is placed among them by the FugueMax
rule, exactly as a replica receiving both would place it. After the last
transaction the cursor moves to every head, and the document is the merge of
the whole history.

Cost: an edit costs what a local edit costs. Moving the cursor costs one range
per agent plus the characters in the two versions' difference -- not the number
of branches, the number of transactions or the document's size -- and a
transaction whose parents are the version shown (the common case) does not
move it at all.

Invariants: the cursor always equals the vector of the version shown; an
agent's counters at the start of each of its transactions are recorded, so its
operations in any run of its transactions are known exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from quorate.crdt.text import Text
from quorate.errors import LocalProtocolError

Patch = tuple[int, int, str]
"""``(position, characters deleted, text inserted)`` in the document as it is
just before the patch."""


class EventGraph:
    """Transactions ``0..n-1``: agent, parents and version vector of each.

    Agents get dense *slots* in order of appearance; a vector's entry ``k``
    counts the transactions of the agent in slot ``k`` (missing entries are 0).
    """

    __slots__ = ("agents", "by_slot", "parents", "slot_of", "slots", "vectors")

    def __init__(self) -> None:
        self.parents: list[tuple[int, ...]] = []
        self.agents: list[int] = []
        self.vectors: list[tuple[int, ...]] = []
        self.slot_of: dict[int, int] = {}
        self.slots: list[int] = []
        """The agent in each slot."""
        self.by_slot: list[list[int]] = []
        """The indexes of each slot's transactions, in order."""

    def __len__(self) -> int:
        return len(self.parents)

    def slot(self, agent: int) -> int:
        """The slot of ``agent`` (given one on first sight)."""
        slot = self.slot_of.get(agent)
        if slot is None:
            if type(agent) is not int or agent < 0:
                raise LocalProtocolError(f"agent must be an int >= 0, got {agent!r}")
            slot = self.slot_of[agent] = len(self.slots)
            self.slots.append(agent)
            self.by_slot.append([])
        return slot

    def version(self, parents: Sequence[int]) -> list[int]:
        """The vector of the merge of ``parents`` (checked: distinct, existing)."""
        count = len(self.parents)
        vectors = self.vectors
        out: list[int] = []
        for parent in parents:
            if type(parent) is not int or not 0 <= parent < count:
                raise LocalProtocolError(
                    f"parent {parent!r} is not an earlier transaction (0..{count - 1})"
                )
            vector = vectors[parent]
            if len(vector) > len(out):
                out.extend([0] * (len(vector) - len(out)))
            for k, n in enumerate(vector):
                if n > out[k]:
                    out[k] = n
        if len(set(parents)) != len(parents):
            raise LocalProtocolError(f"parents {list(parents)} name a transaction twice")
        return out

    def check_next(self, slot: int, version: Sequence[int]) -> None:
        """``LocalProtocolError`` unless ``version`` holds every transaction of
        ``slot``'s agent so far (its next transaction must follow them all)."""
        own = self.by_slot[slot]
        have = version[slot] if slot < len(version) else 0
        if have != len(own):
            raise LocalProtocolError(
                f"agent {self.slots[slot]} works concurrently with itself: its "
                f"parents do not include its transaction {own[have]}"
            )

    def append(self, agent: int, parents: tuple[int, ...], vector: tuple[int, ...]) -> int:
        """Record a transaction whose ``vector`` was computed and checked."""
        index = len(self.parents)
        self.parents.append(parents)
        self.agents.append(agent)
        self.vectors.append(vector)
        self.by_slot[self.slot_of[agent]].append(index)
        return index

    def add(self, agent: int, parents: Sequence[int]) -> int:
        """Check and record a transaction; return its index."""
        slot = self.slot(agent)
        parents = tuple(parents)
        version = self.version(parents)
        self.check_next(slot, version)
        if slot >= len(version):
            version.extend([0] * (slot + 1 - len(version)))
        version[slot] += 1
        return self.append(agent, parents, tuple(version))

    def missing(self, have: Sequence[int], want: Sequence[int]) -> list[int]:
        """The transactions in version ``want`` but not in ``have``, in index order."""
        out: list[int] = []
        for slot, n in enumerate(want):
            h = have[slot] if slot < len(have) else 0
            if n > h:
                out += self.by_slot[slot][h:n]
        out.sort()
        return out

    def heads(self) -> tuple[int, ...]:
        """The transactions no other names as a parent (the whole history's frontier)."""
        has_child = bytearray(len(self.parents))
        for parents in self.parents:
            for parent in parents:
                has_child[parent] = 1
        return tuple(i for i, child in enumerate(has_child) if not child)


class TextHistory:
    """A text document built by replaying an event graph of transactions.

    ``extend``/``apply`` add transactions (agents are the replica ids of the
    resulting document's operations); ``document()`` moves the cursor to the
    whole history and returns the merged ``Text``. After a
    ``LocalProtocolError`` (a bad agent or parent, or a patch outside the
    document) the history is unusable.
    """

    __slots__ = ("_cursor", "_frontier", "_starts", "doc", "graph", "moves")

    def __init__(self) -> None:
        self.graph = EventGraph()
        self.doc = Text(0)
        self._cursor: list[int] = []
        """The vector of the version shown."""
        self._frontier: tuple[int, ...] = ()
        """Transactions naming that version (any that do)."""
        self._starts: list[list[int]] = []
        """Per slot: the agent's counter at the start of each of its transactions."""
        self.moves = 0
        """Cursor moves so far (transactions whose parents were not the version shown)."""

    @property
    def frontier(self) -> tuple[int, ...]:
        """Transactions whose merge is the version the document shows now."""
        return self._frontier

    def checkout(self, frontier: Sequence[int]) -> None:
        """Show the merge of the transactions ``frontier`` names."""
        frontier = tuple(frontier)
        target = self.graph.version(frontier)
        self._move(target)
        self._frontier = frontier

    def _move(self, target: list[int]) -> None:
        """Retreat or advance, per agent, the operations between the cursor and
        ``target`` (a vector)."""
        cursor = self._cursor
        if len(target) < len(cursor):
            target.extend([0] * (len(cursor) - len(target)))
        elif len(cursor) < len(target):
            cursor.extend([0] * (len(target) - len(cursor)))
        shift = self.doc._shift_operations
        version = self.doc._version
        slots = self.graph.slots
        for slot, want in enumerate(target):
            have = cursor[slot]
            if have == want:
                continue
            agent = slots[slot]
            starts = self._starts[slot]
            low, high = (want, have) if want < have else (have, want)
            first = starts[low]
            last = starts[high] if high < len(starts) else version.get(agent, 0)
            shift(agent, first, last, -1 if want < have else 1)
            cursor[slot] = want
        self.moves += 1

    def apply(self, agent: int, parents: Sequence[int], patches: Iterable[Patch]) -> int:
        """Apply one transaction made by ``agent`` on the merge of ``parents``;
        return its index."""
        self.extend([(agent, tuple(parents), patches)])
        return len(self.graph) - 1

    def extend(self, transactions: Iterable[tuple[int, Sequence[int], Iterable[Patch]]]) -> None:
        """Apply ``(agent, parents, patches)`` transactions in order.

        ``LocalProtocolError`` names the transaction (by index) that has a bad
        agent or parent, an agent working concurrently with itself, or a patch
        reaching past the end of the document it was made on."""
        graph = self.graph
        slot_of = graph.slot_of
        by_slot = graph.by_slot
        graph_parents, graph_agents, graph_vectors = graph.parents, graph.agents, graph.vectors
        doc = self.doc
        insert, delete = doc.insert, doc.delete
        version = doc._version
        cursor = self._cursor
        all_starts = self._starts
        frontier = self._frontier
        current_agent = doc.replica_id if len(graph) else -1
        index = len(graph)
        patch: Patch = (0, 0, "")
        stage = "graph"
        try:
            for agent, parents, patches in transactions:
                stage = "graph"
                if type(parents) is not tuple:
                    parents = tuple(parents)
                slot = slot_of.get(agent)
                if slot is None:
                    slot = graph.slot(agent)
                    all_starts.append([])
                    cursor.append(0)
                if parents != frontier:
                    target = graph.version(parents)
                    graph.check_next(slot, target)
                    self._move(target)
                elif cursor[slot] != len(by_slot[slot]):
                    graph.check_next(slot, cursor)
                cursor[slot] += 1
                graph_parents.append(parents)
                graph_agents.append(agent)
                graph_vectors.append(tuple(cursor))
                by_slot[slot].append(index)
                if agent != current_agent:
                    doc.replica_id = current_agent = agent
                    doc._tail = None
                stage = "patches"
                all_starts[slot].append(version.get(agent, 0))
                for patch in patches:
                    pos, deleted, inserted = patch
                    if deleted:
                        delete(pos, deleted)
                    if inserted:
                        insert(pos, inserted)
                frontier = (index,)
                index += 1
        except LocalProtocolError as exc:
            if stage == "patches":
                reason = (
                    f"patch {list(patch)} reaches past the end of the document (length {len(doc)})"
                )
            else:
                reason = str(exc)
            raise LocalProtocolError(f"transaction {index}: {reason}") from None
        finally:
            self._frontier = frontier

    def document(self) -> Text:
        """The merge of every transaction (moves the cursor to all heads)."""
        heads = self.graph.heads()
        if heads != self._frontier:
            self.checkout(heads)
        return self.doc
