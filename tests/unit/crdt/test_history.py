"""Replaying event graphs on one document with a version cursor
(``quorate.crdt.history``): hand-written histories, histories made by real
replicas, cursor moves, and the errors that name a transaction."""

from __future__ import annotations

import random

import pytest
from tests.unit.crdt.concurrent_traces import random_concurrent_trace

from quorate.crdt import Text
from quorate.crdt.history import EventGraph, TextHistory
from quorate.errors import LocalProtocolError


def replay(txns: list[tuple[int, tuple[int, ...], list[tuple[int, int, str]]]]) -> str:
    history = TextHistory()
    history.extend(txns)
    return str(history.document())


def test_linear_history_is_plain_editing() -> None:
    assert replay([(0, (), [(0, 0, "hi there\n")]), (0, (0,), [(0, 8, ""), (0, 0, "yoooo")])]) == (
        "yoooo\n"
    )


def test_two_branches_merge_and_a_third_agent_continues() -> None:
    # 0: "abc"; 1 (agent 1) appends "X", 2 (agent 2) prepends "Y" concurrently;
    # 3 merges both and deletes "b" (position 2 in "YabcX").
    txns = [
        (0, (), [(0, 0, "abc")]),
        (1, (0,), [(3, 0, "X")]),
        (2, (0,), [(0, 0, "Y")]),
        (0, (1, 2), [(2, 1, "")]),
    ]
    assert replay(txns) == "YacX"


def test_merge_of_three_parents_with_several_patches_per_transaction() -> None:
    txns = [
        (0, (), [(0, 0, "one two three")]),
        (0, (0,), [(0, 3, ""), (0, 0, "ONE")]),  # "ONE two three"
        (1, (0,), [(4, 3, "TWO"), (13, 0, "!")]),  # "one TWO three!"
        (2, (0,), [(8, 5, "3"), (7, 0, ",")]),  # "one two, 3"
        (1, (1, 2, 3), [(0, 0, ">"), (12, 0, "<")]),
    ]
    # Merged before the last: "ONE TWO, 3!"; then ">" at 0 and "<" at the end.
    assert replay(txns) == ">ONE TWO, 3!<"


def test_history_can_start_again_from_the_empty_document() -> None:
    txns = [
        (0, (), [(0, 0, "left")]),
        (1, (), [(0, 0, "right")]),
        (0, (0, 1), [(0, 0, "|")]),
    ]
    history = TextHistory()
    history.extend(txns[:2])
    assert str(history.doc) == "right"  # the cursor shows transaction 1 only
    history.extend(txns[2:])
    merged = str(history.document())
    assert merged.startswith("|") and sorted(merged[1:]) == sorted("leftright")
    assert merged[1:] in ("leftright", "rightleft")


@pytest.mark.parametrize("seed", range(40))
def test_replay_equals_what_replicas_exchanging_deltas_computed(seed: int) -> None:
    """Agents edit their own replicas, merging now and then (concurrent inserts
    at one place included); replaying the recorded graph gives the same text."""
    rng = random.Random(seed)
    raw = random_concurrent_trace(rng, agents=rng.randint(2, 5), transactions=80)
    txns = [
        (t["agent"], tuple(t["parents"]), [tuple(p) for p in t["patches"]]) for t in raw["txns"]
    ]
    assert replay(txns) == raw["endContent"]  # type: ignore[arg-type]


def test_checkout_shows_any_version_and_returns() -> None:
    rng = random.Random(11)
    raw = random_concurrent_trace(rng, agents=3, transactions=50, merge_probability=0.5)
    txns = [
        (t["agent"], tuple(t["parents"]), [tuple(p) for p in t["patches"]]) for t in raw["txns"]
    ]
    # The text after each transaction, replayed on its own.
    after = []
    for i in range(len(txns)):
        history = TextHistory()
        history.extend(txns[: i + 1])
        after.append(str(history.doc))
    history = TextHistory()
    history.extend(txns)  # type: ignore[arg-type]
    for i in rng.sample(range(len(txns)), 20):
        history.checkout([i])
        assert str(history.doc) == after[i]
    assert str(history.document()) == raw["endContent"]


def test_moving_the_cursor_restores_the_document_exactly() -> None:
    rng = random.Random(3)
    raw = random_concurrent_trace(rng, agents=4, transactions=60, merge_probability=0.4)
    txns = [
        (t["agent"], tuple(t["parents"]), [tuple(p) for p in t["patches"]]) for t in raw["txns"]
    ]
    history = TextHistory()
    history.extend(txns)  # type: ignore[arg-type]
    doc = history.document()
    before = (str(doc), list(doc.id_runs()))
    history.checkout([0])
    history.checkout([len(txns) // 2])
    doc = history.document()
    text, runs = str(doc), list(doc.id_runs())
    assert text == before[0]
    # Pieces may have been split by the moves, never changed.
    expand = lambda rs: [(r, c + k, d) for r, c, n, d in rs for k in range(n)]  # noqa: E731
    assert expand(runs) == expand(before[1])


def test_the_result_is_a_crdt_document_peers_can_sync_with() -> None:
    raw = random_concurrent_trace(random.Random(5), agents=3, transactions=40)
    txns = [
        (t["agent"], tuple(t["parents"]), [tuple(p) for p in t["patches"]]) for t in raw["txns"]
    ]
    history = TextHistory()
    history.extend(txns)  # type: ignore[arg-type]
    doc = history.document()
    peer = Text(99)
    peer.apply(doc.delta_since({}))
    assert str(peer) == str(doc) == raw["endContent"]
    assert str(Text.decode(doc.encode(), 7)) == str(doc)


@pytest.mark.parametrize(
    ("txns", "message"),
    [
        ([(0, (), [(0, 0, "a")]), (0, (5,), [])], "transaction 1: parent 5 is not an earlier"),
        ([(0, (), [(0, 0, "a")]), (0, (1,), [])], "transaction 1: parent 1 is not an earlier"),
        ([(0, (), [(0, 0, "a")]), (0, (0, 0), [])], "transaction 1: parents [0, 0] name"),
        ([(0, (), [(0, 0, "ab")]), (1, (0,), [(3, 0, "x")])], "transaction 1: patch [3, 0, 'x']"),
        ([(0, (), [(0, 0, "ab")]), (1, (0,), [(1, 2, "")])], "transaction 1: patch [1, 2, '']"),
        ([(-1, (), [])], "transaction 0: agent must be an int >= 0"),
        (
            [(0, (), [(0, 0, "a")]), (0, (), [(0, 0, "b")])],
            "transaction 1: agent 0 works concurrently with itself",
        ),
    ],
)
def test_bad_transactions_are_named(txns: list, message: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        TextHistory().extend(txns)
    assert str(info.value).startswith(message), str(info.value)


def test_event_graph_versions_and_missing_transactions() -> None:
    graph = EventGraph()
    graph.add(7, [])  # 0
    graph.add(3, [0])  # 1
    graph.add(7, [0])  # 2
    graph.add(3, [1, 2])  # 3
    assert graph.vectors[3] == (2, 2)  # slots: agent 7 first, then agent 3
    assert graph.missing(graph.vectors[1], graph.vectors[3]) == [2, 3]
    assert graph.heads() == (3,)
    assert graph.version([1, 2]) == [2, 1]
