"""The honest-scope table (docs/hrb.md section 6): exact hypergeometric
probabilities, checked against brute-force enumeration on small deployments,
and the placement report the simulator prints."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.errors import ConfigError
from quorate.hrb.scope import (
    byzantine_nodes,
    deployment_risk,
    format_table,
    hypergeometric,
    majority_bound,
    shard_byzantine_share,
    shard_risk,
    shard_sizes,
    third_bound,
)


def test_thresholds_are_what_each_commit_rule_tolerates() -> None:
    # byzantine mode: 2f + 1 acks of 3f + 1 tolerate f = (s - 1) // 3
    assert [third_bound(s) for s in (4, 7, 10, 25, 50)] == [1, 2, 3, 8, 16]
    # a majority needs more than half
    assert [majority_bound(s) for s in (4, 5, 25)] == [2, 2, 12]
    assert byzantine_nodes(200) == 66


@given(st.integers(2, 14), st.data())
@settings(max_examples=60, deadline=None)
def test_one_shard_matches_brute_force(nodes: int, data: st.DataObject) -> None:
    size = data.draw(st.integers(1, nodes))
    f = data.draw(st.integers(0, nodes))
    risk = shard_risk(nodes, size, f)
    draws = list(itertools.combinations(range(nodes), size))
    bad = set(range(f))  # which nodes are Byzantine does not matter by symmetry
    over_third = sum(1 for d in draws if len(bad & set(d)) > (size - 1) // 3)
    over_half = sum(1 for d in draws if len(bad & set(d)) > size // 2)
    assert risk.p_over_third == Fraction(over_third, len(draws))
    assert risk.p_majority == Fraction(over_half, len(draws))
    assert sum(hypergeometric(nodes, f, size, k) for k in range(size + 1)) == 1


@given(st.integers(2, 10), st.data())
@settings(max_examples=40, deadline=None)
def test_whole_deal_matches_brute_force(nodes: int, data: st.DataObject) -> None:
    size = data.draw(st.integers(1, nodes))
    f = data.draw(st.integers(0, nodes))
    sizes = shard_sizes(nodes, size)
    risk = deployment_risk(nodes, size, f)
    # Brute force: every choice of the f Byzantine nodes over a fixed deal.
    shards, start = [], 0
    for s in sizes:
        shards.append(set(range(start, start + s)))
        start += s
    total = any_third = any_half = 0
    for bad in itertools.combinations(range(nodes), f):
        chosen = set(bad)
        total += 1
        counts = [(len(chosen & s), len(s)) for s in shards]
        any_third += any(k > (s - 1) // 3 for k, s in counts)
        any_half += any(k > s // 2 for k, s in counts)
    assert total == math.comb(nodes, f)
    assert risk.p_any_over_third == Fraction(any_third, total)
    assert risk.p_any_majority == Fraction(any_half, total)


def test_deal_sizes_differ_by_at_most_one() -> None:
    assert shard_sizes(200, 25) == [25] * 8
    assert shard_sizes(10, 4) == [4, 3, 3]
    assert sum(shard_sizes(1000, 30)) == 1000


def test_with_a_third_byzantine_some_shard_is_certain_to_break_byzantine_mode() -> None:
    # Pigeonhole: 8 shards of 25 tolerate 8 each, 64 < 66 Byzantine nodes.
    assert deployment_risk(200, 25).p_any_over_third == 1
    table = format_table(200, [25])
    assert "100 (certain)" in table
    # With fewer Byzantine nodes the tail is small and larger shards thin it.
    small = deployment_risk(1000, 25, byzantine=100).p_any_over_third
    large = deployment_risk(1000, 50, byzantine=100).p_any_over_third
    assert 0 < large < small < Fraction(1, 10)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError):
        shard_risk(10, 11)
    with pytest.raises(ConfigError):
        shard_risk(0, 1)
    with pytest.raises(ConfigError):
        deployment_risk(10, 3, byzantine=11)


def test_placement_report() -> None:
    assignment = {1: [1, 2, 3, 4], 2: [5, 6, 7, 8], 3: [9, 10, 11, 12]}
    report = shard_byzantine_share(assignment, {1, 2, 3, 5})
    assert report.max_share == 0.75
    assert report.histogram == {0: 1, 1: 1, 3: 1}
    assert report.shards_over_third == (1,)
    assert report.shards_with_majority == (1,)
    assert report.to_json()["histogram"] == {"0": 1, "1": 1, "3": 1}
