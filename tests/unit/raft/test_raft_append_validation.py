"""The follower's AppendEntries validation: the batch fast path must give the
same verdict, and the same reason, as the entry-by-entry check it shortcuts.

Reference: section 5.3 (log matching: entries follow ``prev_log_index``
contiguously, with terms that never decrease and never pass the leader's)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.core.ready import Entry
from quorate.raft import AppendEntries
from quorate.raft.confchange import encode_conf_state
from quorate.raft.messages import EntryKind
from quorate.raft.replication import _check_append, _check_append_entries

KINDS = [int(EntryKind.NORMAL), int(EntryKind.NOOP), int(EntryKind.CONFIG), 7]


@st.composite
def appends(draw: st.DrawFn) -> AppendEntries:
    """Mostly well-formed batches, with a sprinkling of each kind of defect."""
    term = draw(st.integers(1, 6))
    prev_index = draw(st.integers(0, 20))
    prev_term = draw(st.integers(0, term))
    count = draw(st.integers(0, 6))
    entries = []
    index = prev_index + 1
    entry_term = prev_term
    for _ in range(count):
        entry_term = draw(st.integers(entry_term, term))
        kind = draw(st.sampled_from(KINDS[:2]) | st.sampled_from(KINDS))
        data = b"x"
        if kind == EntryKind.CONFIG:
            data = draw(st.sampled_from([encode_conf_state([1, 2]), b"\xc1", encode_conf_state([])]))
        entries.append(Entry(entry_term, index, kind, data))
        index += 1
    if entries and draw(st.booleans()):
        # One defect: a gap, a term out of order or past the leader's.
        at = draw(st.integers(0, len(entries) - 1))
        e = entries[at]
        defect = draw(st.sampled_from(["gap", "low_term", "high_term"]))
        if defect == "gap":
            entries[at] = Entry(e.term, e.index + draw(st.sampled_from([-1, 1, 2])), e.kind, e.data)
        elif defect == "low_term":
            entries[at] = Entry(max(e.term - 1, 0) if at else prev_term - 1, e.index, e.kind, e.data)
        else:
            entries[at] = Entry(term + 1, e.index, e.kind, e.data)
    return AppendEntries(term, prev_index, prev_term, entries, 0)


@settings(max_examples=1500, deadline=None)
@given(appends())
def test_fast_path_agrees_with_the_entry_by_entry_check(m: AppendEntries) -> None:
    assert _check_append(m) == _check_append_entries(m)


def test_each_defect_is_caught_on_the_fast_path_shapes() -> None:
    ok = [Entry(2, 4, 0, b"a"), Entry(2, 5, 1, b""), Entry(3, 6, 0, b"b")]
    assert _check_append(AppendEntries(3, 3, 2, ok, 0)) is None
    assert _check_append(AppendEntries(3, 3, 2, ok[:1], 0)) is None
    gap = [ok[0], Entry(2, 6, 0, b"")]
    assert _check_append(AppendEntries(3, 3, 2, gap, 0)) == "entries are not contiguous after 3"
    assert _check_append(AppendEntries(3, 4, 2, ok[:1], 0)) == "entries are not contiguous after 4"
    backwards = [Entry(3, 4, 0, b""), Entry(2, 5, 0, b"")]
    assert _check_append(AppendEntries(3, 3, 2, backwards, 0)) == "entry 5 has term 2 out of order"
    assert _check_append(AppendEntries(2, 3, 2, [Entry(3, 4, 0, b"")], 0)) == "entry 4 has term 3 out of order"
    assert _check_append(AppendEntries(3, 3, 3, [Entry(2, 4, 0, b"")], 0)) == "entry 4 has term 2 out of order"
    assert _check_append(AppendEntries(3, 3, 2, [ok[0], Entry(2, 5, 9, b"")], 0)) == "entry 5 has unknown kind 9"
    bad_conf = [ok[0], Entry(2, 5, int(EntryKind.CONFIG), b"\xc1")]
    assert _check_append(AppendEntries(3, 3, 2, bad_conf, 0)) == "entry 5 is a malformed configuration"
