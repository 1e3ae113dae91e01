"""The 200-node ``quorate sim hrb`` acceptance run (seed 3) evicts its
Byzantine shard leaders and no honest node.

On this run an honest shard leader was once convicted on ``forged_commit``
evidence: right after an equivocator's eviction its certificate counted
the evicted node, which followers that already held the removal no longer
took for a voter (``tests/unit/hrb/test_shard_certificates_across_configurations.py``
pins the mechanism on the shard harness). The run takes about 100 s of
wall time on a loaded machine, hence ``slow``.
"""

from __future__ import annotations

import pytest

from quorate.bench.hrb_sim import HrbRunConfig, run_hrb

ACCEPTANCE_SEED_3 = HrbRunConfig(
    nodes=200, shard_size=25, core=7, regions=3, cross_shard=0.2, workload="bank", quorum="byzantine",
    byzantine="4:equivocating-leader,2:censoring-leader,2:lying-follower", faults="chaos", duration_s=60.0, seed=3,
)


@pytest.mark.slow
def test_the_acceptance_run_evicts_no_honest_node() -> None:
    report, _ = run_hrb(ACCEPTANCE_SEED_3)
    assert report["evicted_honest"] == [], report["convictions"]
    honest_convictions = [c for c in report["convictions"] if c["byzantine"] is None]
    assert honest_convictions == []
    assert report["evicted"], "the equivocating leaders must still be evicted"
    assert report["safety_violations"] == []
