"""SWIM in the simulator (``quorate.runtime.sim.membership``) and the CRDT
glue it uses (``quorate.crdt.gossip``).

Each test names what it would catch. Reference: SWIM (Das, Gupta, Motivala
2002) §3–4 and Lifeguard (Dadgar et al. 2018) §IV.
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from quorate.cli.main import _register, app
from quorate.crdt.gossip import GossipReplica, replica_of_key, state_key
from quorate.errors import ConfigError, RemoteProtocolError
from quorate.runtime.sim.membership import SwimSimConfig, SwimSimResult, run_swim
from quorate.swim import SwimConfig, suspicion_bounds

FAST_ANTI_ENTROPY = SwimConfig(anti_entropy_interval_s=1.0)


def _run(**overrides: object) -> SwimSimResult:
    settings: dict[str, object] = {"nodes": 24, "regions": 3, "kill": 3, "duration_s": 60.0}
    settings.update(overrides)
    return run_swim(SwimSimConfig(**settings))  # type: ignore[arg-type]


def test_same_seed_same_trace_and_figures() -> None:
    a = _run(seed=7, loss=0.02).to_json()
    b = _run(seed=7, loss=0.02).to_json()
    c = _run(seed=8, loss=0.02).to_json()
    for report in (a, b):
        report.pop("wall_seconds")
    assert a == b
    assert c["trace_sha256"] != a["trace_sha256"]


def test_every_live_member_learns_every_crash() -> None:
    # Reference: SWIM §3 (detection) and §4.1 (dissemination of Confirm).
    result = _run(seed=1)
    report = result.to_json()
    assert report["warmup_converged"]
    assert len(report["killed"]) == 3
    assert report["undetected"] == 0
    swim = SwimConfig()
    min_s, _ = suspicion_bounds(
        24, swim.suspicion_alpha, swim.suspicion_beta, swim.protocol_period_s
    )
    # Suspected within a few periods, confirmed by others (Lifeguard shrinks
    # the timeout towards the minimum), spread in a few more.
    assert report["detection_s"]["p50"] is not None
    assert report["detection_s"]["p50"] <= min_s + 3 * swim.protocol_period_s
    assert report["first_detection_s"]["p50"] <= report["detection_s"]["p50"]


def test_no_false_positives_with_loss_and_lifeguard() -> None:
    # Reference: Lifeguard §IV: the health multiplier and dynamic suspicion
    # keep 5 % loss from killing live members.
    report = _run(seed=2, loss=0.05, lifeguard=True).to_json()
    assert report["false_positives"] == 0
    assert report["undetected"] == 0
    assert report["suspicions"] > 0  # the crashes were suspected first


def test_join_and_rumours_spread_in_logarithmic_rounds() -> None:
    # Reference: SWIM §4.1, infection-style dissemination: O(log n) periods.
    nodes = 40
    report = _run(nodes=nodes, seed=3, loss=0.01).to_json()
    assert report["join_rounds"] is not None
    assert report["join_rounds"] <= math.ceil(math.log2(nodes))
    assert report["rumours_reaching_all"] == report["rumours"] == 5
    assert report["dissemination_s"]["full"] is not None
    assert report["dissemination_s"]["full"] <= math.ceil(math.log2(nodes))


def test_load_is_counted_per_member() -> None:
    report = _run(seed=4).to_json()
    # One probe and its Ack per period at least, and well under a flood.
    assert 2.0 <= report["messages_per_node_per_s"] <= 100.0
    assert report["bytes_per_node_per_s"] > 20 * report["messages_per_node_per_s"]


def test_crdts_converge_through_anti_entropy_despite_loss_and_a_restart() -> None:
    result = run_swim(
        SwimSimConfig(
            nodes=12,
            loss=0.05,
            kill=2,
            duration_s=80.0,
            restart_after_s=10.0,
            crdt_ops_per_s=5.0,
            crdt_quiet_s=30.0,
            swim=FAST_ANTI_ENTROPY,
            seed=3,
        )
    )
    crdt = result.crdt
    assert crdt is not None
    assert crdt["operations"] > 100
    assert crdt["replicas"] == 12  # the two crashed members came back
    assert crdt["distinct_states"] == 1
    assert crdt["counter_values"] == [crdt["expected_counter"]]
    assert crdt["converged"]


def test_crdts_do_not_converge_without_a_quiet_period_to_spread() -> None:
    # The convergence check can fail: with anti-entropy every 10 s and
    # operations until 2 s before the end, replicas still differ.
    result = run_swim(
        SwimSimConfig(
            nodes=12, kill=0, duration_s=30.0, crdt_ops_per_s=10.0, crdt_quiet_s=2.0, seed=5
        )
    )
    assert result.crdt is not None
    assert not result.crdt["converged"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"nodes": 1}, "--nodes"),
        ({"nodes": 10, "kill": 7}, "--kill"),
        ({"loss": 1.0}, "--loss"),
        ({"duration_s": 5.0}, "--duration"),
        ({"regions": 0}, "--regions"),
    ],
)
def test_bad_settings_are_refused_with_the_flag_named(
    overrides: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        SwimSimConfig(**overrides).validate()  # type: ignore[arg-type]


def test_cli_prints_json_and_refuses_bad_flags_in_one_line() -> None:
    _register()
    runner = CliRunner()
    ok = runner.invoke(
        app, ["sim", "swim", "--nodes", "12", "--kill", "1", "--duration", "40", "--json"]
    )
    report = json.loads(ok.stdout.strip().splitlines()[-1])
    assert report["nodes"] == 12 and report["undetected"] == 0
    # Push dissemination has a retransmit budget: at 12 members a rumour may
    # miss someone, and then the run says so and exits 1.
    assert ok.exit_code == (0 if report["ok"] else 1), ok.output
    assert report["ok"] == (report["rumours_reaching_all"] == report["rumours"])
    bad = runner.invoke(app, ["sim", "swim", "--nodes", "1"])
    assert bad.exit_code == 2
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--nodes" in lines[0]


# ---------------------------------------------------------------- CRDT glue
def test_replica_states_join_through_keyspace_entries() -> None:
    a, b = GossipReplica(1), GossipReplica(2)
    a.increment(3)
    a.add("x")
    b.add("y")
    b.increment(-1)
    assert b.merge_entry(*a.entry())
    assert a.merge_entry(*b.entry())
    assert a.snapshot() == b.snapshot() == (2, ["x", "y"])
    # Nothing new: no change, no new version to gossip.
    version = b.version
    assert not b.merge_entry(*a.entry())
    assert b.version == version


def test_replica_restarted_without_its_disk_moves_past_its_old_version() -> None:
    old = GossipReplica(4)
    for _ in range(5):
        old.increment(1)
    fresh = GossipReplica(4)
    assert fresh.merge_entry(*old.entry())
    assert fresh.version > old.version
    assert fresh.value == 5


def test_replica_round_trips_through_bytes_and_refuses_garbage() -> None:
    r = GossipReplica(9)
    r.add("e1")
    r.increment(2)
    back = GossipReplica.from_bytes(r.to_bytes())
    assert back.snapshot() == r.snapshot() and back.version == r.version
    back.add("e2")  # a fresh dot, not one handed out before
    assert back.set.elements == {"e1", "e2"}
    with pytest.raises(RemoteProtocolError):
        r.merge_entry(state_key(3), 1, b"\x00garbage")
    assert replica_of_key("membership/1") is None
    assert not r.merge_entry("other/1", 1, b"")


@pytest.mark.slow
@pytest.mark.parametrize("lifeguard", [True, False])
def test_thousand_members_three_regions_five_percent_loss(lifeguard: bool) -> None:
    result = run_swim(
        SwimSimConfig(
            nodes=1000,
            regions=3,
            inter_region_ms=50.0,
            loss=0.05,
            kill=10,
            lifeguard=lifeguard,
            duration_s=75.0,
            swim=SwimConfig(anti_entropy_interval_s=30.0),  # as `quorate bench swim`
            seed=1,
        )
    )
    report = result.to_json()
    assert report["warmup_converged"]
    assert report["undetected"] == 0
    assert report["join_rounds"] is not None and report["join_rounds"] <= 10
    if lifeguard:
        assert report["false_positives"] == 0


def test_a_crdt_run_that_did_not_converge_exits_1_and_says_why() -> None:
    _register()
    runner = CliRunner()
    # Anti-entropy slower than the run: the replicas never exchange their states.
    result = runner.invoke(
        app,
        ["sim", "swim", "--nodes", "12", "--kill", "0", "--duration", "40", "--crdt-ops", "5",
         "--anti-entropy-s", "100", "--json"],
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the CRDT replicas did not converge" in lines[0], result.stderr
    assert "reproduce with --seed 0" in lines[0]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is False and report["crdt"]["converged"] is False
    assert any("did not converge" in reason for reason in report["failures"])


def test_rumours_that_did_not_reach_everyone_are_a_failure() -> None:
    from quorate.cli.sim_swim import swim_failures

    report = {"rumours": 5, "rumours_reaching_all": 4, "crdt": None}
    assert swim_failures(report) == ["1 of 5 rumours did not reach every live member"]
    assert swim_failures({**report, "rumours_reaching_all": 5}) == []
