"""PBFT with MACs in the normal case under faults: random Byzantine
behaviours, message loss and partitions, crashes and restarts.

Runs the same kind of histories as ``test_pbft_faults`` with
``authentication="macs"``: MAC'd pre-prepares, prepares and commits, the view
change from P and Q claims, and catching up from f + 1 replicas' word
instead of relayed commit certificates. References are to Castro & Liskov,
TOCS 2002.
"""

from __future__ import annotations

import random

import pytest
from pbft_testnet import Net, check_safety, crash_restart_run

from quorate.pbft import BEHAVIOURS, PbftConfig

MACS = PbftConfig(batch_max=8, checkpoint_interval=4, batch_timeout_s=0.001, authentication="macs")


def byzantine_run(n: int, seed: int, *, count: int = 20) -> None:
    """f random Byzantine replicas, random loss, maybe a partition for the
    first second; then heal: safe throughout, and every command executes at
    every honest replica."""
    f = (n - 1) // 3
    rng = random.Random(seed * 7919 + n)
    byzantine = {r: rng.choice(BEHAVIOURS) for r in rng.sample(range(n), f)}
    loss = rng.choice([0.0, 0.05, 0.2])
    partition = rng.random() < 0.3
    where = f"n={n} seed={seed} byzantine={byzantine} loss={loss} partition={partition}"
    net = Net(n, seed=seed, config=MACS, byzantine=byzantine, loss=loss)
    if partition:
        net.partition(random.Random(seed).sample(range(n), n // 2))
    honest = list(net.honest)
    for i in range(count):
        net.propose(honest[i % len(honest)], f"s{seed}-{i}".encode())
    net.run(1.0)
    check_safety(net.honest_logs())
    net.heal()
    progressed = net.run_until_committed(count, timeout_s=60)
    check_safety(net.honest_logs())
    assert progressed, f"no progress after the network healed; reproduce with {where}"
    for r in net.honest:
        malformed = [x for x in net.rejections[r] if x.reason.startswith("malformed")]
        assert not malformed, f"{malformed[:3]}; {where}"
        assert not set(net.core(r).excluded) & set(net.honest), f"honest replica convicted; {where}"


@pytest.mark.parametrize("n", [4, 7])
def test_safety_and_progress_with_f_random_byzantine_replicas(n: int) -> None:
    # Seed 16 at n = 4: an equivocating primary leaves one backup holding
    # another batch at a slot; it catches up from f + 1 replicas' word.
    for seed in range(30):
        byzantine_run(n, seed)


@pytest.mark.slow
@pytest.mark.parametrize("n", [4, 7, 10])
def test_safety_and_progress_with_random_byzantine_replicas_200_seeds(n: int) -> None:
    for seed in range(200):
        byzantine_run(n, seed)


CRASH_REGRESSION_SEEDS = [
    # A replica restarted at a stable checkpoint its peers had moved past
    # forgot the checkpoint was stable; what they sent above it fell outside
    # its window until a peer showed it the proof.
    178,
]


def test_safety_and_progress_across_crashes_and_restarts() -> None:
    for seed in [*range(15), *CRASH_REGRESSION_SEEDS]:
        crash_restart_run(seed, MACS)


@pytest.mark.slow
def test_safety_and_progress_across_many_crashes_and_restarts() -> None:
    for seed in range(15, 300):
        crash_restart_run(seed, MACS)
