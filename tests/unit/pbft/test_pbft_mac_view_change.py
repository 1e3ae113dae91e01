"""The decision procedure of PBFT's view change with MACs, as a pure function.

Tables of view-change sets S and what the new primary must decide from them.
References are to Castro & Liskov, TOCS 2002 (the view change for MACs:
P and Q claims, rules A1-A3) and Castro's thesis, ch. 3.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from quorate.pbft import Checkpoint, ClaimedBatch, SlotClaim, ViewChange, decide_new_view
from quorate.pbft.messages import batch_digest

N, F, QUORUM, WINDOW = 4, 1, 3, 8
NEW_VIEW = 6

A = ClaimedBatch(0, (b"a",))
B = ClaimedBatch(1, (b"b",))
C = ClaimedBatch(2, (b"c",))
X = ClaimedBatch(5, (b"x",))
NAMES = {A.digest(): "A", B.digest(): "B", C.digest(): "C", X.digest(): "X"}


def proof(seq: int) -> tuple[Checkpoint, ...]:
    if seq == 0:
        return ()
    return tuple(Checkpoint(seq, seq * 10, bytes([seq]) * 32, r, b"sig") for r in range(QUORUM))


def vc(
    replica: int,
    *,
    p: tuple[tuple[int, ClaimedBatch, int], ...] = (),
    q: tuple[tuple[int, ClaimedBatch, int], ...] = (),
    stable: int = 0,
    carry: bool = True,
) -> ViewChange:
    """A view change for ``NEW_VIEW`` with P claims ``p`` and Q claims ``q``
    given as (seq, batch, view); it carries the batches unless ``carry`` is off."""
    named = {b.digest(): b for _, b, _ in (*p, *q)}
    return ViewChange(
        NEW_VIEW,
        proof(stable),
        (),
        replica,
        b"sig",
        tuple(SlotClaim(s, b.digest(), v) for s, b, v in p),
        tuple(SlotClaim(s, b.digest(), v) for s, b, v in q),
        tuple(named[d] for d in sorted(named)) if carry else (),
    )


def prepared(replica: int, seq: int, batch: ClaimedBatch, view: int, **kw: object) -> ViewChange:
    """An honest replica that pre-prepared and prepared ``batch`` at ``seq`` in ``view``."""
    return vc(replica, p=((seq, batch, view),), q=((seq, batch, view),), **kw)  # type: ignore[arg-type]


def decide(*vcs: ViewChange) -> tuple[tuple[tuple[int, str], ...], tuple[int, ...], int]:
    """(O as (seq, batch name or "null"), undecided seqs, min-s)."""
    d = decide_new_view(NEW_VIEW, vcs, quorum=QUORUM, f=F, window=WINDOW)
    o = tuple(
        (seq, "null" if not batch else NAMES[batch_digest(origin, batch)]) for seq, origin, batch in d.pre_prepares
    )
    for _, origin, batch in d.pre_prepares:
        if not batch:
            assert origin == NEW_VIEW  # a null batch is ordered in the new view
    return o, d.undecided, d.min_s


def test_a_batch_prepared_at_a_quorum_is_chosen() -> None:
    # Committed in view 0: prepared at 0, 1, 2. Any quorum of view changes
    # (here without the crashed old primary 0) chooses it.
    s = (prepared(1, 1, A, 0), prepared(2, 1, A, 0), vc(3))
    assert decide(*s) == (((1, "A"),), (), 0)


def test_the_batch_keeps_its_origin_view() -> None:
    s = (prepared(1, 1, B, 3), prepared(2, 1, B, 3), vc(3))
    d = decide_new_view(NEW_VIEW, s, quorum=QUORUM, f=F, window=WINDOW)
    assert d.pre_prepares == ((1, B.origin_view, B.batch),)


def test_a_high_view_claim_without_f_plus_1_pre_prepares_is_not_chosen() -> None:
    # Replica 3 (Byzantine) claims it prepared X at seq 1 in view 5; only it
    # claims to have pre-prepared X. With only three view changes its claim
    # blocks A1 for A, so seq 1 is undecided; the fourth decides A.
    byzantine = prepared(3, 1, X, 5)
    honest = [prepared(r, 1, A, 0) for r in (0, 1, 2)]
    assert decide(honest[1], honest[2], byzantine) == ((), (1,), 0)
    assert decide(*honest[1:], byzantine, honest[0]) == (((1, "A"),), (), 0)
    # Reference: A2 needs f + 1 Q claims, so one honest replica pre-prepared it.


def test_a_high_view_claim_with_f_plus_1_pre_prepares_wins() -> None:
    # A prepared in view 0, later B pre-prepared in view 3 at two replicas
    # and prepared at one: nothing committed A, B is the newer choice.
    s = (
        vc(1, p=((1, B, 3),), q=((1, A, 0), (1, B, 3))),
        vc(2, p=((1, A, 0),), q=((1, A, 0), (1, B, 3))),
        vc(3, p=((1, A, 0),), q=((1, A, 0),)),
    )
    assert decide(*s)[:2] == (((1, "B"),), ())


def test_null_when_a_quorum_prepared_nothing() -> None:
    s = (
        prepared(0, 1, A, 0),
        vc(1, p=((1, A, 0), (3, C, 2)), q=((1, A, 0), (2, B, 1), (3, C, 2))),
        vc(2, p=((1, A, 0), (3, C, 2)), q=((1, A, 0), (3, C, 2))),
        vc(3),
    )
    # Seq 2 was only pre-prepared (at one replica): null. Seq 4 and above:
    # nothing claimed, so null too, and O stops at the last batch (3).
    assert decide(*s) == (((1, "A"), (2, "null"), (3, "C")), (), 0)


def test_no_claims_at_all_give_an_empty_o() -> None:
    assert decide(vc(0), vc(1), vc(2)) == ((), (), 0)


def test_undecided_when_neither_a_choice_nor_null() -> None:
    # Replica 1 prepared A at seq 2 but nobody else says it pre-prepared A:
    # A2 fails, and null fails (only two messages without a P claim).
    s = (vc(0), vc(1, p=((2, A, 4),), q=((2, A, 4),)), vc(2))
    assert decide(*s)[1] == (2,)
    # Replica 3's view change, which did pre-prepare A in view 4, settles it.
    assert decide(*s, vc(3, q=((2, A, 4),)))[:2] == (((1, "null"), (2, "A")), ())


def test_fewer_than_a_quorum_decides_nothing() -> None:
    _, undecided, _ = decide(prepared(1, 1, A, 0), prepared(2, 1, A, 0))
    assert undecided == tuple(range(1, WINDOW + 1))


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # A1 counts messages whose P claim for the seq is older, or the same.
        ([((1, A, 2),), ((1, A, 2),), ((1, B, 1),)], "A"),
        # Same view, different digest: blocks A1 for A with only a quorum...
        ([((1, A, 2),), ((1, A, 2),), ((1, B, 2),)], None),
        # ...a claim in a later view blocks it too...
        ([((1, A, 2),), ((1, A, 2),), ((1, B, 4),)], None),
        # ...no claim at all does not.
        ([((1, A, 2),), ((1, A, 2),), ()], "A"),
    ],
)
def test_rule_a1(rows: list[tuple[tuple[int, ClaimedBatch, int], ...]], expected: str | None) -> None:
    s = [vc(r, p=p, q=p) for r, p in enumerate(rows)]
    o, undecided, _ = decide(*s)
    if expected is None:
        assert undecided == (1,)
    else:
        assert o == ((1, expected),) and not undecided


def test_rule_a3_needs_the_batch() -> None:
    # The only two claims for A do not carry its batch: A cannot be chosen,
    # and null is impossible (two P claims), so seq 1 stays undecided.
    s = (
        vc(0, p=((1, A, 0),), q=((1, A, 0),), carry=False),
        vc(1, p=((1, A, 0),), q=((1, A, 0),), carry=False),
        vc(2),
    )
    assert decide(*s)[1] == (1,)
    # Any message carrying the batch is enough (its digest names it).
    assert decide(*s, vc(3, q=((1, A, 0),)))[0] == ((1, "A"),)


def test_ties_are_broken_deterministically() -> None:
    # Two claims in the same view at one seq, both with A1 and A2 (possible
    # only when neither committed): the smallest digest wins, whatever the order.
    s = [
        vc(0, p=((1, A, 3),), q=((1, A, 3), (1, C, 3))),
        vc(1, p=((1, C, 3),), q=((1, A, 3), (1, C, 3))),
        vc(2),
        vc(3),
    ]
    first = decide(*s)
    assert first == decide(*reversed(s))
    assert first[0] == ((1, "A" if A.digest() < C.digest() else "C"),)


def test_min_s_is_the_highest_proven_stable_checkpoint() -> None:
    s = (
        vc(0, stable=0, p=((3, A, 0),), q=((3, A, 0),)),  # below min-s: ignored
        prepared(1, 5, B, 1, stable=4),
        prepared(2, 9, C, 2, stable=8),
        vc(3, stable=8),
    )
    d = decide_new_view(NEW_VIEW, s, quorum=QUORUM, f=F, window=WINDOW)
    assert d.min_s == 8 and d.checkpoint_proof == proof(8)
    # Above 8 only replica 2 prepared C, at 9, and nobody else says it
    # pre-prepared C: the three others make seq 9 null (C cannot have
    # committed), and O is empty.
    assert d.complete and d.pre_prepares == ()
    # With f + 1 pre-prepares of C, C is chosen: a choice beats null.
    d = decide_new_view(
        NEW_VIEW, (*s[:3], vc(3, stable=8, q=((9, C, 2),))), quorum=QUORUM, f=F, window=WINDOW
    )
    assert d.complete and d.pre_prepares == ((9, C.origin_view, C.batch),)


def test_o_stops_at_the_window() -> None:
    s = (vc(0), vc(1), vc(2), prepared(3, WINDOW + 1, A, 0))
    # A claim beyond min-s + L cannot come from an honest replica's window;
    # the procedure does not look there.
    assert decide(*s) == ((), (), 0)


# ------------------------------------------------- randomised safety check


@dataclass
class Replica:
    p: tuple[ClaimedBatch, int] | None = None
    q: dict[bytes, tuple[ClaimedBatch, int]] = field(default_factory=dict)

    def view_change(self, replica: int) -> ViewChange:
        p = ((1, self.p[0], self.p[1]),) if self.p else ()
        q = tuple((1, b, v) for b, v in self.q.values())
        return vc(replica, p=p, q=q)


BATCHES = [ClaimedBatch(v, (f"batch-{v}-{i}".encode(),)) for v in range(NEW_VIEW) for i in range(2)]


def committed_world(rng: random.Random, n: int) -> tuple[ClaimedBatch, list[Replica], set[int]]:
    """A history in which ``d`` committed at seq 1 in view ``v``: a quorum
    prepared it in ``v``, the last view it was pre-prepared in is ``u >= v``;
    from ``v`` on honest replicas prepare and pre-prepare only ``d`` at seq 1,
    before ``v`` anything. Byzantine replicas claim anything."""
    f = (n - 1) // 3
    quorum = (n + f + 2) // 2
    v = rng.randrange(NEW_VIEW)
    u = rng.randrange(v, NEW_VIEW)
    d = rng.choice([b for b in BATCHES if b.origin_view <= v])
    byzantine = set(rng.sample(range(n), f))
    preparers = set(rng.sample(range(n), quorum))
    replicas: list[Replica] = []
    for r in range(n):
        rep = Replica()
        if r in byzantine:
            for _ in range(rng.randrange(4)):
                b = rng.choice(BATCHES)
                rep.q[b.digest()] = (b, rng.randrange(NEW_VIEW))
            if rng.random() < 0.8:
                b = rng.choice(BATCHES)
                rep.p = (b, rng.randrange(NEW_VIEW))
                rep.q.setdefault(b.digest(), (b, rng.randrange(NEW_VIEW)))
            replicas.append(rep)
            continue
        for _ in range(rng.randrange(3) if v else 0):  # views before v
            w = rng.randrange(v)
            b = rng.choice([x for x in BATCHES if x.origin_view <= w])
            if rep.q.get(b.digest(), (b, -1))[1] < w:
                rep.q[b.digest()] = (b, w)
            if rng.random() < 0.5 and (rep.p is None or rep.p[1] < w):
                rep.p = (b, w)
        if r in preparers:
            rep.p = (d, rng.randint(v, u))
            rep.q[d.digest()] = (d, u)
        elif rng.random() < 0.5:
            w = rng.randint(v, u)
            rep.q[d.digest()] = (d, w)
            if rng.random() < 0.5:
                rep.p = (d, rng.randint(v, w))
        replicas.append(rep)
    return d, replicas, byzantine


@pytest.mark.parametrize("n", [4, 7])
def test_a_committed_batch_is_chosen_or_the_primary_waits(n: int) -> None:
    f = (n - 1) // 3
    quorum = (n + f + 2) // 2
    rng = random.Random(n)
    decided = 0
    for _ in range(3000):
        d, replicas, byzantine = committed_world(rng, n)
        members = rng.sample(range(n), rng.randint(quorum, n))
        s = [replicas[r].view_change(r) for r in members]
        decision = decide_new_view(NEW_VIEW, s, quorum=quorum, f=f, window=WINDOW)
        if 1 in decision.undecided:
            # Liveness: all honest replicas' view changes always decide.
            assert not set(range(n)) - byzantine <= set(members)
            continue
        decided += 1
        assert decision.pre_prepares[0] == (1, d.origin_view, d.batch)
    assert decided > 1000
