"""Seed sweeps of the shard harness (slow): honest shards under crashes,
loss and cuts, and a Byzantine leader of each kind, over many seeds. A
failure names the seed that reproduces it."""

from __future__ import annotations

import pytest
from tests.unit.hrb.test_shard_byzantine_leaders import (
    OFFENDER,
    _applied_everywhere,
    byzantine_leader_run,
)
from tests.unit.hrb.test_shard_honest import _applied, chaos_run

CHAOS_SEEDS = range(100, 160)
BYZANTINE_SEEDS = range(100, 112)
BEHAVIOURS = ("equivocating-leader", "forging-leader", "censoring-leader", "slow-leader", "silent-leader")


@pytest.mark.slow
@pytest.mark.parametrize(("quorum", "n"), [("majority", 5), ("byzantine", 4), ("byzantine", 7)])
def test_chaos_sweep(quorum: str, n: int) -> None:
    for seed in CHAOS_SEEDS:
        net, txns = chaos_run(quorum, seed, n)
        missing = [t.ops[0].key for t in txns if not _applied(net, t)]
        assert not missing, f"never applied: {missing}; reproduce with chaos_run({quorum!r}, {seed}, {n})"
        assert len({r.store.fingerprint() for r in net.honest()}) == 1, f"seed {seed}"


@pytest.mark.slow
@pytest.mark.parametrize("quorum", ["majority", "byzantine"])
@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_byzantine_leader_sweep(behaviour: str, quorum: str) -> None:
    for seed in BYZANTINE_SEEDS:
        net, txns = byzantine_leader_run(behaviour, quorum, seed)
        where = f"reproduce with byzantine_leader_run({behaviour!r}, {quorum!r}, {seed})"
        leader = net.leader()
        assert leader is not None and leader.id != OFFENDER, where
        assert all(_applied_everywhere(net, t) for t in txns), where
        assert all(r.detections or r.depositions for r in net.honest()), where
