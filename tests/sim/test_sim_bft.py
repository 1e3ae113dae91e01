"""PBFT and HotStuff in the simulator, with Byzantine replicas.

Swarm tests (after TigerBeetle's VOPR): for many seeds, f replicas run random
Byzantine behaviours while the network suffers the ``chaos`` preset
(partitions, cuts, loss, slow CPUs, clock skew; crashes only within what the
Byzantine replicas leave of f). Every run must keep agreement among honest
replicas (the online monitor), produce a linearizable client history
(``quorate.check``) and commit again once the faults heal. With f + 1
colluding equivocators the same checks must fire. A failing seed is named in
the assertion message: reproduce with ``quorate sim <protocol> --seed N``.
"""

from __future__ import annotations

from typing import Any

import pytest

from quorate.check import check_history
from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.errors import ConfigError, InvariantViolation
from quorate.ids import NodeId
from quorate.runtime.sim import SimConfig, Simulation, run
from quorate.runtime.sim.bft import BftSafetyMonitor, choose_byzantine, parse_byzantine
from quorate.runtime.sim.engine import derive_rng

PROTOCOLS = ("pbft", "hotstuff")
SIZES = (4, 7, 10)
SWARM_DURATION_S = 7.0
"""Simulated seconds of load per swarm run."""
SWARM_HEAL_AT_S = 2.5
"""Chaos until here; then everything heals and the cluster must commit again."""
SWARM_LIVENESS_BOUND_S = 4.0
"""From the heal to the first operation completed: a view change or two
faulty leaders in a row (each view timeout doubled, capped) fit."""
SWARM_RATE_OPS = 20.0
"""Open-loop client load: enough operations to check, cheap to simulate."""
# A short view timeout lets HotStuff rotate past faulty leaders well within a
# short run. The worst case is f faulty replicas next to each other in the
# rotation: with two views per leader, 2f failed views in a row (six at
# n = 10), each at the capped timeout once the chaos has doubled it, so the
# cap must keep 2f of them inside the liveness bound (a cap of 1 s did not:
# n = 10, seeds 1042 and 1089, recovered after 4.4 s and 5.3 s).
OPTIONS: dict[str, dict[str, Any]] = {
    "pbft": {"view_change_timeout_s": 0.5, "retransmit_interval_s": 0.125},
    "hotstuff": {"view_timeout_s": 0.25, "max_view_timeout_s": 0.5},
}


def swarm_config(protocol: str, nodes: int, seed: int) -> SimConfig:
    f = (nodes - 1) // 3
    return SimConfig(
        protocol=protocol,
        nodes=nodes,
        clients=4,
        rate_ops=SWARM_RATE_OPS,
        duration_s=SWARM_DURATION_S,
        op_timeout_s=1.5,
        faults="chaos",
        heal_at_s=SWARM_HEAL_AT_S,
        byzantine=f"{f}:random",
        liveness_bound_s=SWARM_LIVENESS_BOUND_S,
        seed=seed,
        protocol_options=dict(OPTIONS[protocol]),
    )


def check_run(config: SimConfig) -> dict[str, Any]:
    result = run(config)
    where = f"{config.protocol} n={config.nodes} seed={config.seed} byzantine={result.byzantine}"
    assert len(result.byzantine) == (config.nodes - 1) // 3, where
    assert result.safety_violations == [], where
    verdict = check_history(result.history, timeout_s=30.0)
    assert str(verdict.verdict) == "linearizable", f"{where}: {verdict.verdict}"
    assert result.liveness_ok is True, f"{where}: no progress after the heal at {result.heal_at_s} s"
    return result.to_json()


QUICK_SEEDS = {4: 10, 7: 8, 10: 6}
"""Seeds per size in the default suite (larger clusters cost more to simulate)."""


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("nodes", "seed"), [(n, s) for n in SIZES for s in range(QUICK_SEEDS[n])])
def test_swarm_quick(protocol: str, nodes: int, seed: int) -> None:
    check_run(swarm_config(protocol, nodes, seed))


REGRESSION_SEEDS = [
    # Replicas split between views 2 and 3, none with a quorum of view
    # changes: the one that timed out of view 2 must relay what it holds.
    ("pbft", 4, 1089),
    # Three faulty leaders in a row (six failed views) after the heal.
    ("hotstuff", 10, 1042),
    ("hotstuff", 10, 1089),
]
"""Seeds the slow swarm once failed on, kept in the default suite."""


@pytest.mark.parametrize(("protocol", "nodes", "seed"), REGRESSION_SEEDS)
def test_swarm_regressions(protocol: str, nodes: int, seed: int) -> None:
    check_run(swarm_config(protocol, nodes, seed))


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("nodes", SIZES)
def test_swarm_200_seeds(protocol: str, nodes: int) -> None:
    for seed in range(1000, 1200):
        check_run(swarm_config(protocol, nodes, seed))


def _seed_with_primary_byzantine(nodes: int, wanted: list[tuple[int, str]]) -> int:
    """A seed whose Byzantine replicas include replica 0 (the first primary/leader)."""
    for seed in range(1000):
        chosen = choose_byzantine(derive_rng(seed, "byzantine"), nodes, wanted, ("equivocate",))
        if NodeId(0) in chosen:
            return seed
    raise AssertionError("no seed puts replica 0 among the Byzantine replicas")


def test_f_plus_one_colluding_equivocators_break_agreement_and_are_caught() -> None:
    # Beyond f the protocol promises nothing; whether the coalition manages a
    # split depends on which replicas it holds, so try a few seeds: the
    # monitor must catch at least one split, and every split it reports must
    # be an agreement violation between honest replicas.
    caught = []
    for seed in range(8):
        config = SimConfig(
            protocol="pbft", nodes=4, clients=4, duration_s=0.5, seed=seed, byzantine="2:equivocate", allow_unsafe=True
        )
        result = run(config)
        if result.safety_violations:
            assert "agreement violated" in result.safety_violations[0]["message"]
            caught.append(seed)
    assert caught, "two colluding equivocators out of 4 never split the honest replicas"


def test_more_than_f_byzantine_refused_without_allow_unsafe() -> None:
    with pytest.raises(ConfigError, match="allow-unsafe"):
        Simulation(SimConfig(protocol="pbft", nodes=4, byzantine="2:silent"))
    with pytest.raises(ConfigError, match="crash faults only"):
        Simulation(SimConfig(protocol="raft", nodes=5, byzantine="1:silent"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_equivocator_detected_and_excluded_on_every_honest_replica(protocol: str) -> None:
    # PBFT convicts an equivocating primary (its two pre-prepares meet in the
    # prepares); a backup showing each half another vote leaves no two
    # statements at any one honest replica, so the equivocator is the primary.
    config = SimConfig(
        protocol=protocol,
        nodes=4,
        clients=4,
        duration_s=3.0,
        seed=_seed_with_primary_byzantine(4, [(1, "equivocate")]),
        byzantine="1:equivocate",
        protocol_options=dict(OPTIONS[protocol]),
    )
    result = run(config)
    (offender,) = (int(node) for node in result.byzantine)
    honest = [str(i) for i in range(4) if i != offender]
    assert result.safety_violations == []
    assert result.detections, "nobody detected the equivocation"
    first = result.detections[0]
    assert first["offender"] == offender
    assert first["detected_by"] == len(honest)
    assert 0 < first["first_detected_s"] <= config.duration_s
    assert sorted(result.excluded) == honest
    for node in honest:
        assert result.excluded[node] == [offender], node


def test_agreement_monitor_ignores_byzantine_and_flags_honest_conflicts() -> None:
    monitor = BftSafetyMonitor(frozenset({NodeId(3)}))
    monitor.record(NodeId(0), Entry(term=0, index=1, kind=ENTRY_NORMAL, data=b"a"))
    monitor.record(NodeId(3), Entry(term=0, index=1, kind=ENTRY_NORMAL, data=b"lie"))  # Byzantine: not checked
    monitor.record(NodeId(1), Entry(term=0, index=1, kind=ENTRY_NORMAL, data=b"a"))
    with pytest.raises(InvariantViolation, match="index 1"):
        monitor.record(NodeId(2), Entry(term=0, index=1, kind=ENTRY_NORMAL, data=b"b"))


def test_byzantine_spec_parsing_and_choice_follow_the_seed() -> None:
    behaviours = ("equivocate", "silent")
    assert parse_byzantine("1:equivocate, 2:random", behaviours) == [(1, "equivocate"), (2, "random")]
    for bad in ("equivocate", "x:silent", "1:dance", "-1:silent"):
        with pytest.raises(ConfigError):
            parse_byzantine(bad, behaviours)
    a = choose_byzantine(derive_rng(5, "byzantine"), 10, [(3, "random")], behaviours)
    b = choose_byzantine(derive_rng(5, "byzantine"), 10, [(3, "random")], behaviours)
    assert a == b and len(a) == 3 and set(a.values()) <= set(behaviours)


def test_clients_need_f_plus_one_matching_replies() -> None:
    # A silent replica never answers and a lying one is outvoted: with one
    # Byzantine replica out of 4, every completed operation had two honest answers.
    config = SimConfig(protocol="pbft", nodes=4, clients=3, duration_s=3.0, seed=2, byzantine="1:silent")
    sim = Simulation(config)
    assert sim.workload is not None and sim.workload.reply_quorum == 2
    result = sim.run()
    assert result.committed_ops > 0
    assert str(check_history(result.history, timeout_s=30.0).verdict) == "linearizable"


def test_same_seed_same_trace() -> None:
    config = swarm_config("pbft", 4, 3)
    assert run(config).trace_sha256 == run(swarm_config("pbft", 4, 3)).trace_sha256
