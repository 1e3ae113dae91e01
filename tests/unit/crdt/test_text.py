"""Text CRDT (FugueMax over runs): local editing, non-interleaving, convergence,
deltas, pending operations and the saved form."""

from __future__ import annotations

import random

import pytest

from quorate.crdt import Text, TextDelta
from quorate.errors import LocalProtocolError, RemoteProtocolError


def type_forwards(doc: Text, pos: int, word: str) -> None:
    for i, ch in enumerate(word):
        doc.insert(pos + i, ch)


def type_backwards(doc: Text, pos: int, word: str) -> None:
    for ch in reversed(word):
        doc.insert(pos, ch)


def synced(a: Text, b: Text) -> None:
    a.merge(b)
    b.merge(a)


def test_local_editing_and_runs() -> None:
    doc = Text(1)
    type_forwards(doc, 0, "hello world")
    assert str(doc) == "hello world" and len(doc) == 11
    assert doc.run_count() == 1  # typing on extends one run
    doc.delete(5, 6)
    doc.insert(5, ", there")
    doc.delete(0, 1)
    doc.insert(0, "H")
    assert doc.to_string() == "Hello, there"
    assert doc.version == {1: 11 + 6 + 7 + 1 + 1}


def test_backspace_burst_is_one_delete_run_and_one_tombstone() -> None:
    doc = Text(1)
    type_forwards(doc, 0, "abcdef")
    for pos in range(5, 1, -1):
        doc.delete(pos)
    assert str(doc) == "ab"
    assert doc.run_count() == 2  # "ab" live, "cdef" one tombstone
    assert len(doc._deletes[1]) == 1


@pytest.mark.parametrize("typing", [type_forwards, type_backwards])
@pytest.mark.parametrize("base", ["", "<>"])
def test_concurrent_words_at_one_place_do_not_interleave(typing, base: str) -> None:
    # Reference: Weidner & Kleppmann, arXiv 2305.00583, §3 (interleaving).
    a = Text(1)
    a.insert(0, base)
    b = a.fork(2)
    at = len(base) // 2
    typing(a, at, "alpha")
    typing(b, at, "omega")
    synced(a, b)
    assert str(a) == str(b)
    middle = str(a)[at : at + 10]
    assert middle in ("alphaomega", "omegaalpha"), middle


def test_three_replicas_typing_backwards_stay_whole_words() -> None:
    docs = [Text(r) for r in (5, 3, 9)]
    for doc, word in zip(docs, ["one", "two", "six"]):
        type_backwards(doc, 0, word)
    for a in docs:
        for b in docs:
            a.merge(b)
    text = str(docs[0])
    assert all(str(d) == text for d in docs)
    assert sorted(text[i : i + 3] for i in (0, 3, 6)) == ["one", "six", "two"]


def random_session(seed: int, replicas: int, steps: int) -> list[Text]:
    rng = random.Random(seed)
    docs = [Text(r) for r in range(replicas)]
    for _ in range(steps):
        doc = rng.choice(docs)
        if len(doc) and rng.random() < 0.3:
            pos = rng.randrange(len(doc))
            doc.delete(pos, rng.randint(1, min(4, len(doc) - pos)))
        else:
            pos = rng.randint(0, len(doc))
            word = "".join(rng.choice("abcxyz") for _ in range(rng.randint(1, 4)))
            if rng.random() < 0.5:
                type_forwards(doc, pos, word)
            else:
                doc.insert(pos, word)
        if rng.random() < 0.15:
            a, b = rng.sample(docs, 2)
            a.merge(b)
    return docs


@pytest.mark.parametrize("seed", range(40))
def test_randomized_multi_replica_editing_converges(seed: int) -> None:
    docs = random_session(seed, 2 + seed % 3, 150)
    for _ in range(2):
        for a in docs:
            for b in docs:
                a.merge(b)
    texts = {str(d) for d in docs}
    assert len(texts) == 1
    assert all(d.version == docs[0].version for d in docs)


def test_delta_since_gives_exactly_what_a_peer_lacks() -> None:
    a = Text(1)
    type_forwards(a, 0, "hello")
    b = a.fork(2)
    seen = a.version
    type_forwards(a, 5, " world")
    a.delete(0, 1)
    delta = a.delta_since(seen)
    assert sum(len(r.text) for r in delta.inserts) == 6
    assert sum(r.length for r in delta.deletes) == 1
    b.apply(delta)
    assert str(b) == "ello world"
    assert a.delta_since(a.version).is_empty()


def test_out_of_order_delta_waits_until_its_dependencies_arrive() -> None:
    a = Text(1)
    first = a.insert(0, "ab")
    second = a.insert(1, "X")
    third = a.delete(0)
    b = Text(2)
    b.apply(third)
    b.apply(second)
    assert str(b) == "" and b.pending == 2
    b.apply(first)
    b.apply(first)  # a duplicate is harmless
    assert str(b) == "Xb" and b.pending == 0


def test_saved_document_loads_and_keeps_editing() -> None:
    docs = random_session(7, 3, 200)
    for a in docs:
        for b in docs:
            a.merge(b)
    saved = docs[0].encode()
    assert saved[0] == 1  # format version byte
    loaded = Text.decode(saved, 42)
    assert str(loaded) == str(docs[0]) and loaded.version == docs[0].version
    loaded.insert(len(loaded) // 2, "new")
    docs[1].merge(loaded)
    assert str(docs[1]) == str(loaded)
    # A replica that never saw the document catches up from the loaded copy.
    fresh = Text(43)
    fresh.merge(loaded)
    assert str(fresh) == str(loaded)


def test_bad_bytes_and_bad_positions_are_refused() -> None:
    doc = Text(1)
    doc.insert(0, "abc")
    with pytest.raises(RemoteProtocolError):
        Text.decode(b"\x01\x07garbage", 2)
    with pytest.raises(RemoteProtocolError):
        Text.decode(TextDelta().encode(), 2)  # a delta is not a document
    with pytest.raises(RemoteProtocolError):
        Text.decode(b"\x09" + doc.encode()[1:], 2)  # unknown format version
    with pytest.raises(LocalProtocolError):
        doc.insert(4, "x")
    with pytest.raises(LocalProtocolError):
        doc.delete(2, 2)


def test_malformed_remote_runs_are_refused() -> None:
    from quorate.crdt import DeleteRun, InsertRun

    doc = Text(1)
    doc.insert(0, "ab")
    with pytest.raises(RemoteProtocolError):
        doc.apply(TextDelta([InsertRun(2, 0, None, None, "")], []))
    with pytest.raises(RemoteProtocolError):
        doc.apply(TextDelta([], [DeleteRun(2, 0, 1, 0, 1, 5)]))
    assert str(doc) == "ab"
