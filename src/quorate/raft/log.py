"""The in-memory Raft log: a Python list behind a snapshot offset.

Theory of operation (§5.3, §7): ``entries[k]`` holds index ``snapshot_index + 1 + k``;
everything at or below ``snapshot_index`` lives only in the snapshot, whose last
entry's term is ``snapshot_term``. The log owns three cursors the core needs:

- ``stable_from``: the first index not yet handed to the runtime to persist
  (``Ready.entries``). Truncation moves it back to the cut point.
- ``committed``: the highest index known committed; it never decreases and the
  log never truncates at or below it (that would break state-machine safety, so
  it raises ``InvariantViolation``).
- ``emitted_commit``: the highest committed index handed out in ``Ready.committed``.

``snapshot_digest`` is the digest of the entry at ``snapshot_index`` when the
log is chained (``quorate.core.ready.ChainedEntry``), so the chain continues
after a compaction; ``b""`` otherwise and after a snapshot install.

``rewrites`` counts truncations and snapshot restores and ``last_rewrite_index``
is where the latest one cut; a safety monitor uses them to re-check only the
part of a log that changed.
"""

from __future__ import annotations

from quorate.core.ready import Entry
from quorate.errors import invariant


class RaftLog:
    """Entries after a snapshot, with cursors for persistence and commitment."""

    __slots__ = (
        "committed",
        "emitted_commit",
        "entries",
        "last_rewrite_index",
        "rewrites",
        "snapshot_digest",
        "snapshot_index",
        "snapshot_term",
        "stable_from",
    )

    def __init__(self, snapshot_index: int = 0, snapshot_term: int = 0) -> None:
        self.entries: list[Entry] = []
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.snapshot_digest = b""
        self.committed = snapshot_index
        self.emitted_commit = snapshot_index
        self.stable_from = snapshot_index + 1
        self.rewrites = 0
        self.last_rewrite_index = 0

    # ------------------------------------------------------------ reading
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    def last_term(self) -> int:
        entries = self.entries
        return entries[-1].term if entries else self.snapshot_term

    def first_index(self) -> int:
        return self.snapshot_index + 1

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; ``None`` if compacted away or absent."""
        offset = index - self.snapshot_index
        if offset == 0:
            return self.snapshot_term
        if 0 < offset <= len(self.entries):
            return self.entries[offset - 1].term
        return None

    def entry(self, index: int) -> Entry | None:
        offset = index - self.snapshot_index
        if 0 < offset <= len(self.entries):
            return self.entries[offset - 1]
        return None

    def digest(self, index: int) -> bytes:
        """Digest of the entry at ``index`` (``b""`` if it has none or is gone)."""
        offset = index - self.snapshot_index
        if offset == 0:
            return self.snapshot_digest
        if 0 < offset <= len(self.entries):
            return self.entries[offset - 1].digest
        return b""

    def last_digest(self) -> bytes:
        entries = self.entries
        return entries[-1].digest if entries else self.snapshot_digest

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with ``lo <= index < hi`` that are still in memory."""
        # Called several times per input: plain comparisons instead of max().
        base = self.snapshot_index + 1
        lo -= base
        hi -= base
        if lo < 0:
            lo = 0
        if hi <= lo:
            return []
        return self.entries[lo:hi]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: is a log ending at (last_index, last_term) at least as up to date as ours?"""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term <= ``term`` (or the snapshot
        index if every remaining entry is newer): the fast-backtracking probe."""
        index = min(index, self.last_index())
        base = self.snapshot_index
        entries = self.entries
        while index > base and entries[index - base - 1].term > term:
            index -= 1
        return index

    # ------------------------------------------------------------ writing
    def append(self, entry: Entry) -> None:
        """Append one entry at ``last_index() + 1`` (the leader's path)."""
        self.entries.append(entry)

    def truncate_and_append(self, entries: list[Entry]) -> None:
        """Store ``entries`` (contiguous), replacing any suffix from the first one."""
        first = entries[0].index
        if first <= self.committed:  # tested here so the message is built only on failure
            invariant(
                False,
                f"refusing to overwrite committed entry {first} (commit index {self.committed})",
            )
        cut = first - self.snapshot_index - 1
        if cut < len(self.entries):
            del self.entries[cut:]
            self.rewrites += 1
            self.last_rewrite_index = first
        self.entries.extend(entries)
        if first < self.stable_from:
            self.stable_from = first

    def truncate_after(self, index: int) -> None:
        """Drop every entry after ``index`` (uncommitted, after the snapshot);
        the next entry stored starts the rewrite at ``index + 1``."""
        invariant(
            self.committed <= index <= self.last_index() and index >= self.snapshot_index,
            f"cannot truncate after {index} (commit index {self.committed}, last {self.last_index()})",
        )
        if index < self.last_index():
            del self.entries[index - self.snapshot_index :]
            self.rewrites += 1
            self.last_rewrite_index = index + 1
            if index + 1 < self.stable_from:
                self.stable_from = index + 1

    def commit_to(self, index: int) -> bool:
        """Raise the commit index (never lowers it). True if it moved."""
        if index > self.committed:
            self.committed = index
            return True
        return False

    def compact(self, index: int) -> int:
        """Drop entries up to ``index`` (must be in the log); return its term."""
        term = self.term(index)
        invariant(term is not None, f"cannot compact at {index}: not in the log")
        assert term is not None
        self.snapshot_digest = self.digest(index)
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index = index
        self.snapshot_term = term
        self.stable_from = max(self.stable_from, index + 1)
        return term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot ending at (index, term)."""
        self.entries = []
        self.snapshot_index = index
        self.snapshot_term = term
        self.snapshot_digest = b""
        self.committed = index
        self.emitted_commit = index
        self.stable_from = index + 1
        self.rewrites += 1
        self.last_rewrite_index = index + 1

    # ------------------------------------------------------------ handing out
    def take_unstable(self) -> list[Entry]:
        """Entries not yet handed out for persistence; marks them handed out."""
        # ``last_index`` and ``slice`` inlined: this runs once per Ready.
        entries = self.entries
        last = self.snapshot_index + len(entries)
        start = self.stable_from
        if start > last:
            return []
        self.stable_from = last + 1
        lo = start - self.snapshot_index - 1
        return entries[lo if lo > 0 else 0 :]

    def has_unstable(self) -> bool:
        return self.stable_from <= self.last_index()

    def take_committed(self) -> list[Entry]:
        """Committed entries not yet handed out for applying; marks them handed out."""
        # ``last_index`` and ``slice`` inlined: this runs once per Ready.
        last = self.snapshot_index + len(self.entries)
        hi = self.committed if self.committed < last else last
        emitted = self.emitted_commit
        if hi <= emitted:
            return []
        self.emitted_commit = hi
        base = self.snapshot_index + 1
        lo = emitted + 1 - base
        return self.entries[lo if lo > 0 else 0 : hi + 1 - base]

    def has_committed_to_emit(self) -> bool:
        return min(self.committed, self.last_index()) > self.emitted_commit
