"""PBFT with MAC-authenticated commits in the simulator (TOCS 2002 §3.2).

The simulator's ``pbft`` spec with ``authentication="macs"`` gives each
replica a ``MeteredCommitAuthenticator``: real HMACs over session keys drawn
from the run's seed, with the measured HMAC cost charged to the replica's CPU
meter. Swarm runs with Byzantine replicas and chaos must stay safe and
linearizable, as with signed commits.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from tests.sim.test_sim_bft import check_run, swarm_config

from quorate.core.protocol import ProtocolCore
from quorate.crypto.costmodel import CpuMeter, CryptoCosts
from quorate.ids import NodeId
from quorate.pbft.messages import Commit
from quorate.runtime.sim.bft_auth import MeteredCommitAuthenticator, session_secret
from quorate.runtime.sim.protocols import SpecContext, protocol_spec

MACS = {"authentication": "macs"}
REPLICAS = tuple(NodeId(i) for i in range(4))


def macs_config(nodes: int, seed: int) -> Any:
    config = swarm_config("pbft", nodes, seed)
    config.protocol_options.update(MACS)
    return config


@pytest.mark.parametrize(("nodes", "seed"), [(4, s) for s in range(6)] + [(7, s) for s in range(3)])
def test_swarm_with_mac_commits_is_safe_and_linearizable(nodes: int, seed: int) -> None:
    check_run(macs_config(nodes, seed))


@pytest.mark.slow
@pytest.mark.parametrize("nodes", (4, 7, 10))
def test_swarm_with_mac_commits_100_seeds(nodes: int) -> None:
    for seed in range(2000, 2100):
        check_run(macs_config(nodes, seed))


def _run_to_commit(cores: dict[NodeId, ProtocolCore]) -> list[Commit]:
    """Propose one command at the primary and deliver every message in order
    until nothing moves; return the commits that were sent."""
    now = 0.0
    cores[REPLICAS[0]].propose(b"put x", now)
    commits: list[Commit] = []
    for _ in range(100):
        moved = False
        for node, core in cores.items():
            now += 0.001
            core.tick(now)
            ready = core.ready()
            core.advance(ready)
            for to, message in ready.messages:
                moved = True
                if isinstance(message, Commit):
                    commits.append(message)
                cores[to].step(node, message, now)
        if not moved:
            break
    return commits


def test_spec_wires_metered_authenticators_into_every_replica() -> None:
    spec = protocol_spec("pbft", {**MACS, "batch_timeout_s": 0.0}, SpecContext(seed=7))
    assert spec.meter_for is not None
    cores = {n: spec.build_core(n, REPLICAS, random.Random(int(n)), 0.0, None) for n in REPLICAS}
    meters = {n: spec.meter_for(n) for n in REPLICAS}
    for meter in meters.values():
        meter.take()
    commits = _run_to_commit(cores)
    assert commits, "no commit was sent"
    for commit in commits:
        assert commit.signature == b""
        assert {r for r, _ in commit.macs} == {int(n) for n in REPLICAS} - {commit.replica}
    assert all(getattr(core, "executed_seq", 0) == 1 for core in cores.values())
    assert all(meter.take() > 0 for meter in meters.values())


def test_signed_mode_keeps_signed_commits() -> None:
    spec = protocol_spec("pbft", {"batch_timeout_s": 0.0}, SpecContext(seed=7))
    assert spec.meter_for is not None
    cores = {n: spec.build_core(n, REPLICAS, random.Random(int(n)), 0.0, None) for n in REPLICAS}
    commits = _run_to_commit(cores)
    assert commits and all(c.signature and not c.macs for c in commits)


def test_metered_authenticator_charges_the_measured_hmac_cost() -> None:
    costs = CryptoCosts()
    meters = {n: CpuMeter() for n in REPLICAS}
    secret = session_secret(3)
    auth = {n: MeteredCommitAuthenticator(n, REPLICAS, secret, meters[n], costs) for n in REPLICAS}
    receivers = REPLICAS[1:]
    macs = auth[REPLICAS[0]].macs(b"commit", receivers)
    assert meters[REPLICAS[0]].take() == pytest.approx(costs.mac_create_per_receiver_s * len(receivers))
    assert auth[REPLICAS[1]].check(REPLICAS[0], b"commit", macs)
    assert meters[REPLICAS[1]].take() == pytest.approx(costs.mac_verify_s)
    # A tampered body, a wrong claimed sender and another run's keys all fail.
    assert not auth[REPLICAS[1]].check(REPLICAS[0], b"commit!", macs)
    assert not auth[REPLICAS[1]].check(REPLICAS[2], b"commit", macs)
    other = MeteredCommitAuthenticator(REPLICAS[1], REPLICAS, session_secret(4), CpuMeter(), costs)
    assert not other.check(REPLICAS[0], b"commit", macs)
