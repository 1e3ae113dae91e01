"""Reputation (docs/hrb.md section 5): scores are a function of the recorded
facts alone, so any order of the same facts gives the same scores and the
same next core; evicted nodes are never chosen; the core is spread over
shards; well-behaved nodes tie and the beacon rotates them; a shard
leader's challenge report becomes capped facts, and a stale, foreign or
forged report is refused."""

from __future__ import annotations

from hrb_state_kit import KEYRING, Kit, refused
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.hrb.core.commands import ReputationReport, encode_command, report_bytes
from quorate.hrb.reputation import (
    FACT_KINDS,
    NodeFacts,
    ReputationWeights,
    record,
    score,
    select_core,
    summary,
)
from quorate.ids import NodeId

WEIGHTS = ReputationWeights()
NODES = list(range(1, 25))
SHARD_OF = {n: 1 + (n - 1) % 4 for n in NODES}

facts_strategy = st.lists(
    st.tuples(st.sampled_from(NODES), st.sampled_from((*FACT_KINDS, "evicted")), st.integers(1, 20)),
    max_size=80,
)


def _table(facts: list[tuple[int, str, int]]) -> dict[int, NodeFacts]:
    table: dict[int, NodeFacts] = {}
    for node, kind, count in facts:
        record(table, node, kind, count)
    return table


@given(facts_strategy, st.randoms(use_true_random=False), st.binary(min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_any_order_of_the_same_facts_gives_the_same_scores_and_core(
    facts: list[tuple[int, str, int]], rnd: object, beacon: bytes
) -> None:
    shuffled = list(facts)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = _table(facts), _table(shuffled)
    assert {n: score(a.get(n), WEIGHTS) for n in NODES} == {n: score(b.get(n), WEIGHTS) for n in NODES}
    core_a = select_core(NODES, a, SHARD_OF, 7, 4, beacon, WEIGHTS)
    core_b = select_core(reversed(NODES), b, SHARD_OF, 7, 4, beacon, WEIGHTS)
    assert core_a == core_b
    evicted = {n for n, f in a.items() if f.evicted}
    assert not evicted & set(core_a)
    per_shard: dict[int, int] = {}
    for n in core_a:
        per_shard[SHARD_OF[n]] = per_shard.get(SHARD_OF[n], 0) + 1
    assert max(per_shard.values(), default=0) <= 2  # ⌈7/4⌉


def test_misbehaviour_costs_and_good_behaviour_is_capped() -> None:
    table: dict[int, NodeFacts] = {}
    record(table, 1, "requests", 1000)
    record(table, 2, "requests", 64)
    record(table, 3, "requests", 64)
    record(table, 3, "invalid", 1)
    record(table, 4, "failed_accusations", 1)
    record(table, 5, "evicted")
    assert score(table[1], WEIGHTS) == score(table[2], WEIGHTS) == 64 // 16
    assert score(table[3], WEIGHTS) == 4 - WEIGHTS.invalid
    assert score(table[4], WEIGHTS) == -WEIGHTS.failed_accusation
    assert score(table[5], WEIGHTS) is None
    assert score(None, WEIGHTS) == 0
    core = select_core([1, 2, 3, 4, 5], table, {n: n for n in range(1, 6)}, 3, 5, b"x", WEIGHTS)
    assert core == (1, 2, 3)
    report = summary(table, WEIGHTS)
    assert report.evicted == (5,) and report.penalised == (4,)


def test_the_beacon_rotates_among_equals() -> None:
    cores = {select_core(NODES, {}, SHARD_OF, 7, 4, b"epoch %d" % e, WEIGHTS) for e in range(20)}
    assert len(cores) > 10


def test_too_few_eligible_nodes_give_a_smaller_core() -> None:
    table: dict[int, NodeFacts] = {}
    for n in (1, 2, 3):
        record(table, n, "evicted")
    assert select_core([1, 2, 3, 4, 5], table, {}, 7, 1, b"b", WEIGHTS) == (4, 5)


# -- facts from the core log: a shard leader's challenge reports -------------------------


def _report(shard: int, leader: int, period: int, answered: dict[int, int], missed: dict[int, int], *, signer: int | None = None) -> bytes:
    unsigned = ReputationReport(shard, leader, 1, period, answered, missed, b"")
    signature = KEYRING.signer(NodeId(leader if signer is None else signer)).sign(report_bytes(unsigned))
    return encode_command(ReputationReport(shard, leader, 1, period, answered, missed, signature))


def test_a_shard_leaders_report_becomes_capped_facts_and_a_stale_or_foreign_one_is_refused() -> None:
    kit = Kit()
    state = kit.state()
    leader, good, bad, *_ = kit.shards[1]
    stranger = kit.shards[2][0]
    cap = state.s.rules.report_cap
    effects = state.apply(_report(1, leader, 1, {good: 10 * cap, leader: 5, stranger: 3}, {bad: 2}))
    assert refused(effects) == []
    facts = state.s.facts
    assert facts[good].answered == cap  # capped per report
    assert facts[bad].missed == 2
    assert leader not in facts or facts[leader].answered == 0  # a leader does not vouch for itself
    assert stranger not in facts  # not a member of the reporting shard
    assert score(facts[bad], state.s.rules.weights) == -2 * state.s.rules.weights.missed
    # the same period again: stale, harmless
    [r] = refused(state.apply(_report(1, leader, 1, {good: 1}, {})))
    assert (r.reason, state.s.facts[leader].invalid if leader in state.s.facts else 0) == ("stale report", 0)
    # a node that is not in the shard: refused and held against it
    [r] = refused(state.apply(_report(1, stranger, 2, {good: 1}, {})))
    assert r.reason == f"node {stranger} is not a member of shard 1" and state.s.facts[stranger].invalid == 1
    # a signature by someone else: nobody to blame
    [r] = refused(state.apply(_report(1, leader, 2, {}, {good: 50}, signer=bad)))
    assert (r.reason, r.blamed) == ("bad signature", None)
    assert state.s.facts[good].missed == 0
