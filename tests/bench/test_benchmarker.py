"""The benchmarker's parts on inputs whose answer is known: HDR histograms,
the ramp against a target of known capacity, the bottleneck rules on
timelines made to fire them (and on a quiet one), the advisor's noise rule,
the protocol recommendation, and the simulator's resource sampling."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

pytest.importorskip("hdrh", reason="needs the bench extra: pip install '.[bench]'")
pytest.importorskip("psutil", reason="needs the bench extra: pip install '.[bench]'")
pytest.importorskip("matplotlib", reason="needs the bench extra: pip install '.[bench]'")

from quorate.bench.advisor import KNOBS, Trial, advise, hrb_allows, judge
from quorate.bench.bottlenecks import find_bottlenecks, slope_per_s
from quorate.bench.compare import recommend
from quorate.bench.histogram import LatencyHistogram
from quorate.bench.ramp import GOOD, RampConfig, SimLoadTarget, StepResult, ramp
from quorate.bench.recommend import Requirements, hrb_layout, recommend_protocol, tolerated
from quorate.errors import ConfigError

# ------------------------------------------------------------------ histograms


def test_histogram_percentiles_are_within_a_tenth_of_a_percent() -> None:
    rng = random.Random(7)
    values = sorted(rng.lognormvariate(-6, 1.5) for _ in range(50_000))
    histogram = LatencyHistogram.of(values)
    assert histogram.count == len(values)
    for q in (50.0, 90.0, 99.0, 99.9, 99.99):
        exact_ms = values[min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1)] * 1000
        got = histogram.percentile_ms(q)
        assert got is not None
        # 3 significant digits, plus the 1 us resolution of the recording.
        assert abs(got - exact_ms) <= exact_ms * 0.001 + 0.002, (q, got, exact_ms)


def test_histograms_merge_and_cross_processes_as_text() -> None:
    a, b = LatencyHistogram.of([0.001] * 90), LatencyHistogram.of([0.100] * 10)
    a.add(LatencyHistogram.decode(b.encode()))
    assert a.count == 100
    assert a.percentile_ms(50) == pytest.approx(1.0, rel=1e-3)
    assert a.percentile_ms(99) == pytest.approx(100.0, rel=1e-3)
    cdf = a.cdf_ms()
    assert cdf[-1][1] == 1.0 and all(x <= y for (x, _), (y, _) in itertools.pairwise(cdf))
    assert LatencyHistogram().summary_ms()["p99"] is None


# ------------------------------------------------------------------ the ramp


class KneeTarget:
    """Answers everything up to ``capacity`` ops/s, then sheds the excess;
    latency grows towards the knee."""

    def __init__(self, capacity: float, base_ms: float = 2.0) -> None:
        self.capacity = capacity
        self.base_ms = base_ms
        self.rates: list[float] = []

    def step(self, rate_ops: float, warmup_s: float, window_s: float) -> StepResult:
        self.rates.append(rate_ops)
        invoked = round(rate_ops * window_s)
        answered = min(invoked, round(self.capacity * window_s))
        load = min(rate_ops / self.capacity, 0.99)
        latency_s = self.base_ms / 1000 / (1 - load)
        return StepResult(
            rate_ops=rate_ops, window_s=window_s, invoked=invoked, ok=answered, failed=0,
            unknown=invoked - answered, histogram=LatencyHistogram.of([latency_s] * max(1, answered)),
        )

    def close(self) -> None:
        pass


def test_the_ramp_finds_the_knee_to_five_percent_and_soaks_it() -> None:
    target = KneeTarget(capacity=10_000)
    config = RampConfig(start_rate_ops=500, max_rate_ops=100_000, max_p99_ms=1_000)
    result = ramp(target, config)
    assert result.optimal is not None and result.sustainable is not None
    # Good steps need >= 95 % answered: the limit is capacity / 0.95.
    limit = 10_000 / 0.95
    assert limit * 0.95 <= result.optimal.target_rate_ops <= limit
    assert result.stopped_because.startswith("limit found")
    assert result.sustainable.verdict(config) == GOOD
    assert len(result.steps) <= 12  # doubling, then halving the gap
    phases = [s.phase for s in result.steps]
    assert phases[0] == "probe" and "refine" in phases


def test_the_latency_bound_limits_the_ramp_before_the_success_rate_does() -> None:
    target = KneeTarget(capacity=10_000, base_ms=2.0)
    result = ramp(target, RampConfig(start_rate_ops=500, max_rate_ops=100_000, max_p99_ms=10.0))
    assert result.optimal is not None
    # p99 = 2 ms / (1 - load) <= 10 ms  <=>  load <= 0.8.
    assert 0.8 * 10_000 * 0.95 <= result.optimal.target_rate_ops <= 0.8 * 10_000


def test_a_ramp_that_never_fails_says_it_hit_the_cap() -> None:
    result = ramp(KneeTarget(capacity=1e9), RampConfig(start_rate_ops=1000, max_rate_ops=4000, max_p99_ms=100))
    assert result.optimal is not None and result.optimal.target_rate_ops == 4000
    assert "rate cap" in result.stopped_because


def test_a_ramp_whose_first_step_fails_backs_off_and_then_refines() -> None:
    config = RampConfig(start_rate_ops=1000, max_p99_ms=1_000)
    result = ramp(KneeTarget(capacity=300), config)
    phases = [s.phase for s in result.steps]
    assert phases[:3] == ["probe", "backoff", "backoff"] and "refine" in phases
    assert [s.target_rate_ops for s in result.steps[:3]] == [1000, 500, 250]
    assert result.optimal is not None and result.sustainable is not None
    limit = 300 / 0.95  # good steps need >= 95 % answered
    assert limit * 0.95 <= result.optimal.target_rate_ops <= limit
    assert result.stopped_because.startswith("limit found")


def test_a_ramp_that_finds_no_good_rate_says_so() -> None:
    config = RampConfig(start_rate_ops=1000, max_p99_ms=100, min_rate_ops=100)
    result = ramp(KneeTarget(capacity=10), config)
    assert result.optimal is None and result.sustainable is None
    assert [s.target_rate_ops for s in result.steps] == [1000, 500, 250, 125]
    assert result.stopped_because == (
        "no rate was good: the start rate (1,000 ops/s) and back-offs down to 125 ops/s were not"
    )
    only_start = ramp(KneeTarget(capacity=10), RampConfig(start_rate_ops=100, min_rate_ops=100))
    assert len(only_start.steps) == 1 and "even the start rate" in only_start.stopped_because


def test_bad_ramp_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        RampConfig(probe_factor=1.0).validate()
    with pytest.raises(ConfigError):
        RampConfig(max_p99_ms=0).validate()
    with pytest.raises(ConfigError):
        RampConfig(start_rate_ops=100, min_rate_ops=200).validate()


# ------------------------------------------------------------------ bottlenecks


def _timeline(n: int, **series: list[float]) -> list[dict[str, float]]:
    return [{"t_s": float(i), **{k: v[i] for k, v in series.items()}} for i in range(n)]


def test_each_rule_fires_with_its_evidence() -> None:
    timeline = {
        "n1": _timeline(5, cpu_percent=[97, 99, 100, 98, 96], rss_mb=[60, 62, 63, 65, 66], fsyncs_per_s=[100] * 5,
                        send_queue_bytes=[0, 300e3, 600e3, 900e3, 1.2e6], applied_index=[1e3, 2e3, 3e3, 4e3, 5e3]),
        "n2": _timeline(5, cpu_percent=[20] * 5, rss_mb=[60, 80, 100, 120, 140], fsyncs_per_s=[100] * 5,
                        send_queue_bytes=[0] * 5, applied_index=[1e3, 2e3, 3e3, 4e3, 5e3]),
        "n3": _timeline(5, cpu_percent=[20] * 5, rss_mb=[60] * 5, fsyncs_per_s=[10] * 5,
                        send_queue_bytes=[0] * 5, applied_index=[1e3] * 5),
        "client1": _timeline(5, cpu_percent=[95] * 5),
        "host": _timeline(5, cpu_percent=[99] * 5),
    }
    findings = {(f.rule, f.node): f for f in find_bottlenecks(timeline, fsync_probe_ms=[8.0, 9.0, 10.0])}
    assert set(findings) == {
        ("cpu_saturated", "n1"),
        ("fsync_dominates", "n1"),
        ("fsync_dominates", "n2"),
        ("send_queue_growth", "n1"),
        ("memory_growth", "n2"),
        ("slow_node", "n3"),
        ("load_generator_bound", "client1"),
        ("host_saturated", None),
    }
    assert findings[("fsync_dominates", "n1")].evidence["busy_share"] == pytest.approx(0.9)
    assert findings[("slow_node", "n3")].evidence["lag_entries"] == [0, 1e3, 2e3, 3e3, 4e3]
    assert "100 durable writes/s" in findings[("fsync_dominates", "n1")].summary


def test_a_quiet_step_fires_nothing() -> None:
    quiet = _timeline(5, cpu_percent=[30] * 5, rss_mb=[60] * 5, fsyncs_per_s=[50] * 5,
                      send_queue_bytes=[1000] * 5, applied_index=[10, 20, 30, 40, 50])
    assert find_bottlenecks({"n1": quiet, "n2": quiet}, fsync_probe_ms=[1.0]) == []


def test_slope() -> None:
    assert slope_per_s(_timeline(3, x=[1, 3, 5]), "x") == pytest.approx(2.0)
    assert slope_per_s(_timeline(1, x=[1]), "x") is None


def test_a_slow_simulated_leader_is_found_by_its_cpu_and_its_queue() -> None:
    # The leader's CPU runs 200x slower than the cost model (fault "slow").
    step = SimLoadTarget("raft", 3, faults="slow:1:200@0s").step(1500, 1.5, 1.5)
    rules = {(f.rule, f.node) for f in find_bottlenecks(step.resources, simulated=True)}
    assert ("cpu_saturated", "n1") in rules and ("slow_node", "n1") in rules
    healthy = SimLoadTarget("raft", 3).step(1500, 1.5, 1.5)
    assert find_bottlenecks(healthy.resources, simulated=True) == []
    assert healthy.success == 1.0 and step.success < 0.95


# ------------------------------------------------------------------ the advisor


def _trial(knob: str, *ops: float, p99: float = 5.0) -> Trial:
    return Trial(knob, 1, [{"throughput_ops": x, "p99_ms": p99} for x in ops])


@pytest.mark.parametrize(
    ("current", "candidate", "kept", "why"),
    [
        ((1000, 1010, 990), (1100, 1120, 1090), True, "median gain +10.0%"),
        ((1000, 1200, 800), (1100, 1150, 1050), False, "within the noise"),
        ((1000, 1010, 990), (1030, 1040, 1035), False, "< 5%"),
        ((1000, 1010, 990), (900, 950, 980), False, "< 5%"),
    ],
)
def test_a_change_is_kept_only_if_it_beats_the_noise(
    current: tuple[float, ...], candidate: tuple[float, ...], kept: bool, why: str
) -> None:
    verdict, reason = judge(_trial("", *current), _trial("k", *candidate))
    assert verdict is kept and why in reason


def test_a_faster_change_that_hurts_p99_is_refused() -> None:
    verdict, reason = judge(_trial("", 1000, 1000, 1000, p99=5.0), _trial("k", 2000, 2000, 2000, p99=9.0))
    assert not verdict and "p99 rose" in reason


def test_the_advisor_keeps_only_the_setting_that_helps() -> None:
    def measure(settings: dict[str, Any], repeat: int) -> dict[str, Any]:
        ops = 1000.0 + repeat  # a little noise
        if settings.get("max_batch_entries") == 256:
            ops *= 1.3
        if settings.get("max_inflight") == 8:
            ops *= 0.7
        return {"throughput_ops": ops, "p99_ms": 5.0}

    advice = advise("raft", measure, repeats=3)
    assert advice.settings == {"max_batch_entries": 256}
    assert advice.flags() == ["--option", "max_batch_entries=256"]
    assert [t.kept for t in advice.trials] == [False, True, False, False]
    with pytest.raises(ConfigError):
        advise("raft", measure, repeats=1)


def test_the_advisor_tunes_hrbs_shard_size_within_the_nodes() -> None:
    tried: list[dict[str, Any]] = []

    def measure(settings: dict[str, Any], repeat: int) -> dict[str, Any]:
        tried.append(dict(settings))
        ops = 400.0 + repeat
        if settings.get("shard_size") == 7:
            ops *= 1.5  # fewer, larger shards win here
        return {"throughput_ops": ops, "p99_ms": 20.0}

    advice = advise("hrb", measure, repeats=2, allowed=hrb_allows(10))
    assert advice.settings == {"shard_size": 7}
    assert advice.flags() == ["--shard-size", "7"]  # quorate sim hrb's flags
    assert {t.value for t in advice.trials if t.knob == "shard_size"} == {7, 10}  # 16 > 10 nodes: skipped
    assert not any(s.get("shard_size") == 16 for s in tried)
    assert "core_bft" in {k.name for k in KNOBS["hrb"]} and "epoch_blocks" in {k.name for k in KNOBS["casper"]}
    with pytest.raises(ConfigError, match="simulator only"):
        advise("hrb", measure, real=True, repeats=2)


# ------------------------------------------------------------------ recommendations


def test_fault_tolerance_arithmetic() -> None:
    assert tolerated("raft", 3, "crash") == 1 and tolerated("raft", 5, "byzantine") == 0
    assert tolerated("pbft", 4, "byzantine") == 1 and tolerated("hotstuff", 3, "byzantine") == 0
    assert tolerated("casper", 7, "byzantine") == 2
    # HRB: about sqrt(n) shards of 3f + 1 nodes; it tolerates f in each, and needs two shards.
    assert hrb_layout(16) == (4, 4) and hrb_layout(64) == (10, 7) and hrb_layout(200) == (16, 7)
    assert tolerated("hrb", 4, "byzantine") == 0 and tolerated("hrb", 8, "byzantine") == 1
    assert tolerated("hrb", 200, "byzantine") == 5


def test_hrb_does_not_fit_below_two_shards_and_says_when_it_would() -> None:
    result = recommend_protocol(
        Requirements("byzantine", 4, max_latency_ms=100, min_throughput_ops=200), candidates=["hrb"]
    )
    [row] = result["candidates"]
    assert not row["fits"] and "two shards of 4" in row["why"] and "many nodes" in row["note"]
    with pytest.raises(ConfigError, match="unknown protocol"):
        recommend_protocol(Requirements("crash", 3), candidates=["paxos"])


@pytest.mark.slow
def test_an_hrb_step_runs_the_protocol_and_counts_what_it_could_not_start() -> None:
    from quorate.bench.hrb_load import HrbLoadTarget

    target = HrbLoadTarget(nodes=8, seed=3).validate()
    step = target.step(100.0, 2.5, 1.0)
    assert target.latency_s is not None and target.latency_s > 0  # calibrated once
    assert step.answered > 0 and step.extra["safety_violations"] == 0
    assert step.invoked >= 100 and step.extra["agents"] >= 2
    # Sized for no latency at all, two agents cannot offer 100/s: what they
    # did not start counts as not answered, and the step is not good.
    target.latency_s = 0.0
    short = target.step(100.0, 2.5, 1.0)
    assert short.extra["agents"] == 2 and short.extra["not_started"] > 0
    assert short.invoked == 100 and short.verdict(RampConfig()) != GOOD


def test_byzantine_faults_on_three_nodes_fit_no_protocol() -> None:
    result = recommend_protocol(Requirements("byzantine", 3, max_latency_ms=100, min_throughput_ops=200))
    assert result["recommendation"] is None
    assert all(not row["fits"] for row in result["candidates"])
    assert "3f + 1" in next(r for r in result["candidates"] if r["protocol"] == "pbft")["why"]


def test_a_byzantine_requirement_is_met_by_a_measured_bft_protocol() -> None:
    result = recommend_protocol(
        Requirements("byzantine", 4, max_latency_ms=50, min_throughput_ops=300), candidates=("raft", "pbft", "hotstuff")
    )
    assert result["recommendation"] in ("pbft", "hotstuff")
    raft = next(r for r in result["candidates"] if r["protocol"] == "raft")
    assert not raft["fits"]
    chosen = next(r for r in result["candidates"] if r["protocol"] == result["recommendation"])
    assert chosen["meets"] and chosen["latency_ms"]["p99"] <= 50


def test_bad_requirements_are_refused() -> None:
    with pytest.raises(ConfigError):
        Requirements("lies", 4).validate()
    with pytest.raises(ConfigError):
        Requirements("crash", 2, regions=3).validate()


def test_the_comparison_recommends_by_what_was_held_then_by_p99() -> None:
    def result(protocol: str, held: float, p99: float) -> dict[str, Any]:
        lat = {"p99": p99}
        step = {"target_rate_ops": 1000.0, "verdict": GOOD, "latency_ms": lat}
        return {"protocol": protocol, "sustainable_rate_ops": held, "sustainable_latency_ms": lat,
                "optimal_rate_ops": held, "optimal_latency_ms": lat, "steps": [step], "stopped_because": "x"}

    picked = recommend([result("raft", 8000, 5), result("pbft", 8000, 4), result("hotstuff", 6000, 3)])
    assert picked["crash"] == "pbft" and picked["byzantine"] == "pbft"
    # A rate that no soak held counts after any rate a soak held.
    unsustained = result("pbft", 9000, 4) | {"sustainable_rate_ops": None, "sustainable_latency_ms": None}
    again = recommend([result("raft", 8000, 5), unsustained | {"soaks": [{"verdict": "degraded"}]}])
    assert again["crash"] == "raft" and again["byzantine"] == "pbft"
    assert any("no soak held" in line for line in again["because"])
    # A fixed-rate comparison runs no soak, and says so.
    fixed = recommend([unsustained | {"soaks": []}])
    assert any("held 9,000 ops/s (a fixed rate, not soaked)" in line for line in fixed["because"])
    assert any("p99: hotstuff 3 ms, pbft 4 ms, raft 5 ms" in line for line in picked["because"])
