"""A newcomer's reputation starts low (the Sybil defence of the security
issue, where HRB's reputation is present): a node with no recorded facts
scores below every node with a record of good behaviour, so identities an
attacker gets admitted cannot take core seats from established nodes; they
earn a seat only by a record as good as theirs, and only while too few
established nodes are eligible are they chosen at all."""

from __future__ import annotations

from quorate.hrb.reputation import NodeFacts, ReputationWeights, record, score, select_core

WEIGHTS = ReputationWeights()


def test_a_node_without_a_record_scores_below_any_good_record() -> None:
    fresh = score(None, WEIGHTS)
    assert fresh is not None
    established = NodeFacts(served=1, requests=WEIGHTS.good_bucket)
    assert score(established, WEIGHTS) > fresh  # type: ignore[operator]


def test_newcomers_take_no_core_seat_from_established_nodes() -> None:
    established = list(range(1, 13))
    newcomers = list(range(100, 140))  # many admitted identities (a Sybil flood)
    shard_of = {n: 1 + n % 4 for n in established + newcomers}
    facts: dict[int, NodeFacts] = {}
    for n in established:
        record(facts, n, "served", 1)
        record(facts, n, "answered", WEIGHTS.good_bucket)
    for beacon in (b"a", b"b", b"c", b"d"):
        core = select_core(established + newcomers, facts, shard_of, 7, 4, beacon, WEIGHTS)
        assert len(core) == 7 and all(int(n) in established for n in core), core
    # Too few established nodes: newcomers fill the remaining seats.
    few = established[:3]
    core = select_core(few + newcomers, facts, shard_of, 7, 4, b"a", WEIGHTS)
    assert {int(n) for n in core} >= set(few) and len(core) == 7
    # A newcomer that builds the same record competes on equal terms.
    record(facts, 100, "served", 1)
    record(facts, 100, "answered", WEIGHTS.good_bucket)
    assert score(facts[100], WEIGHTS) == score(facts[1], WEIGHTS)
