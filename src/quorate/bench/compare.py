"""Protocols side by side: ramps, bottlenecks, a recommendation, a report.

Theory of operation. ``compare`` loads each protocol with the same ramp
(``quorate.bench.ramp``) on the same kind of target — the simulator
(``SimLoadTarget``, the same seed for every protocol) or a live local
cluster (``RealLoadTarget``) — one protocol after the other, so their
figures come from the same run on the same machine. HRB runs its own model
of shards, core and agents (``quorate.bench.hrb_load.HrbLoadTarget``,
simulator only; its agents are closed loop, sized to offer each step's
rate). Without ``ramp`` each protocol gets one step at a fixed rate instead.

For each protocol the report keeps every step (offered rate, throughput,
success, HDR latency percentiles and CDF, resource timeline), the optimal
and sustainable rates, and the bottlenecks found in the *limiting step*: the
first step after the optimal one that was not good (where the limit shows),
or else the step with the highest rate. The recommendation compares what
was measured: the highest sustainable rate among the crash-tolerant and
among the Byzantine-tolerant protocols, and p99 at the highest rate every
protocol held. ``write_report`` writes ``report.json``, ``report.md`` and the
plots (``quorate.bench.plots``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorate.bench.bottlenecks import find_bottlenecks
from quorate.bench.ramp import (
    GOOD,
    LoadTarget,
    RampConfig,
    RampResult,
    SimLoadTarget,
    StepResult,
    ramp,
)
from quorate.errors import ConfigError

BFT_PROTOCOLS = ("pbft", "hotstuff", "casper", "hrb")
CRASH_PROTOCOLS = ("raft",)
KNOWN_PROTOCOLS = (*CRASH_PROTOCOLS, *BFT_PROTOCOLS)
SIM_ONLY = ("hrb",)
"""No ``--real`` load for these: HRB's clients are its agents, not key-value sessions."""
DEFAULT_NODES = {"raft": 3, "pbft": 4, "hotstuff": 4, "casper": 4, "hrb": 16}
"""HRB: four shards of four (its point is many nodes in Byzantine shards)."""


@dataclass
class CompareConfig:
    protocols: Sequence[str]
    real: bool = False
    ramp: bool = True
    rate_ops: float = 2000.0
    """Without a ramp: the one rate each protocol is loaded at."""
    nodes: dict[str, int] = field(default_factory=dict)
    regions: int = 1
    ramp_config: RampConfig = field(default_factory=RampConfig)
    seed: int = 1
    base_port: int = 17601
    client_processes: int = 2
    sessions_per_process: int = 64

    def validate(self) -> CompareConfig:
        if not self.protocols:
            raise ConfigError("name at least one protocol (--protocols raft,pbft,hotstuff)")
        for protocol in self.protocols:
            if protocol not in KNOWN_PROTOCOLS:
                raise ConfigError(f"unknown protocol {protocol!r}; choose from {', '.join(KNOWN_PROTOCOLS)}")
        if len(set(self.protocols)) != len(self.protocols):
            raise ConfigError("a protocol is named twice in --protocols")
        for protocol, count in self.nodes.items():
            if protocol not in self.protocols:
                raise ConfigError(f"--nodes names {protocol!r}, which is not in --protocols")
            least = 4 if protocol in BFT_PROTOCOLS else 1
            if count < least:
                raise ConfigError(f"{protocol} needs at least {least} nodes, got {count}")
        if self.real:
            for protocol in self.protocols:
                if protocol in SIM_ONLY:
                    raise ConfigError(
                        f"{protocol} is compared in the simulator only (--sim): its clients are its own agents"
                    )
        if self.real and self.regions != 1:
            raise ConfigError("--regions needs the simulator: real nodes here share one machine's loopback")
        if not self.rate_ops > 0:
            raise ConfigError(f"--rate must be > 0 ops/s, got {self.rate_ops}")
        self.ramp_config.validate()
        return self

    def nodes_of(self, protocol: str) -> int:
        return self.nodes.get(protocol, DEFAULT_NODES[protocol])


def make_target(config: CompareConfig, protocol: str) -> LoadTarget:
    if protocol == "hrb":
        from quorate.bench.hrb_load import HrbLoadTarget

        return HrbLoadTarget(config.nodes_of(protocol), regions=config.regions, seed=config.seed).validate()
    if config.real:
        from quorate.bench.real_load import RealLoadTarget

        return RealLoadTarget(
            protocol,
            config.nodes_of(protocol),
            base_port=config.base_port,
            client_processes=config.client_processes,
            sessions_per_process=config.sessions_per_process,
            seed=config.seed,
        )
    return SimLoadTarget(protocol, config.nodes_of(protocol), regions=config.regions, seed=config.seed)


def limiting_step(result: RampResult) -> StepResult | None:
    """Where the limit shows: the first step after the optimal that was not
    good, else the step with the highest rate."""
    steps = result.steps
    if not steps:
        return None
    if result.optimal is not None:
        later = steps[steps.index(result.optimal) + 1 :]
        for step in later:
            if step.verdict(result.config) != GOOD:
                return step
    return max(steps, key=lambda s: s.target_rate_ops)


def run_protocol(
    config: CompareConfig, protocol: str, progress: Callable[[str, StepResult], None] | None = None
) -> dict[str, Any]:
    target = make_target(config, protocol)

    def report(step: StepResult) -> None:
        if progress is not None:
            progress(protocol, step)

    try:
        if config.ramp:
            result = ramp(target, config.ramp_config, report)
        else:
            rc = config.ramp_config
            step = target.step(config.rate_ops, rc.warmup_s, rc.step_s)
            step.phase, step.target_rate_ops = "fixed", config.rate_ops
            report(step)
            good = step.verdict(rc) == GOOD
            result = RampResult(rc, [step], step if good else None, [], None, "one fixed-rate step")
    finally:
        target.close()
    limit = limiting_step(result)
    findings = (
        find_bottlenecks(
            limit.resources,
            fsync_probe_ms=limit.extra.get("fsync_probe_ms", ()),
            simulated=not config.real,
        )
        if limit is not None
        else []
    )
    out = {
        "protocol": protocol,
        "nodes": config.nodes_of(protocol),
        **result.to_json(),
        "limiting_step_rate_ops": round(limit.target_rate_ops, 1) if limit else None,
        "bottlenecks": [f.to_json() for f in findings],
    }
    if limit is not None and not config.real:
        busiest = _busiest_cpu(limit)
        if busiest is not None:
            if result.stopped_because.startswith("reached the rate cap") and busiest["cpu_percent"] > 0:
                # Not measured: where the busiest simulated CPU would reach
                # 100 % if its work grew in proportion to the rate.
                busiest["cpu_ceiling_estimate_ops"] = round(busiest["rate_ops"] * 100 / busiest["cpu_percent"], -2)
            out["busiest_cpu_percent_at_limit"] = busiest
    return out


def _busiest_cpu(step: StepResult) -> dict[str, Any] | None:
    best: tuple[float, str] | None = None
    for node, samples in step.resources.items():
        cpu = [s["cpu_percent"] for s in samples if "cpu_percent" in s]
        if cpu:
            value = sum(cpu) / len(cpu)
            if best is None or value > best[0]:
                best = (value, node)
    if best is None:
        return None
    return {"node": best[1], "cpu_percent": round(best[0], 1), "rate_ops": round(step.target_rate_ops, 1)}


def recommend(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the measurements say, in sentences with their figures."""
    lines: list[str] = []
    by_protocol = {r["protocol"]: r for r in results}
    picks: dict[str, str | None] = {}
    for faults, family in (("crash", KNOWN_PROTOCOLS), ("byzantine", BFT_PROTOCOLS)):
        measured = [by_protocol[p] for p in family if p in by_protocol and _held(by_protocol[p]) is not None]
        if not measured:
            picks[faults] = None
            continue
        best = max(measured, key=_preference)
        picks[faults] = best["protocol"]
        rate, latency = _held(best) or (0.0, {})
        verb = "sustained" if best["sustainable_rate_ops"] else "held"
        others = ", ".join(
            f"{r['protocol']} {(_held(r) or (0.0, {}))[0]:,.0f}{_unsoaked(r)}"
            for r in measured
            if r is not best
        )
        lines.append(
            f"{faults} faults: {best['protocol']} — it {verb} {rate:,.0f} ops/s{_unsoaked(best)} "
            f"(p99 {latency.get('p99')} ms)"
            + (f"; {others} ops/s" if others else "")
        )
    common = _common_rate(results)
    if common is not None:
        rate, p99s = common
        ranked = sorted(p99s.items(), key=lambda kv: kv[1])
        lines.append(
            f"at {rate:,.0f} ops/s, the highest rate every protocol held, p99: "
            + ", ".join(f"{p} {v} ms" for p, v in ranked)
        )
    capped = [r["protocol"] for r in results if str(r["stopped_because"]).startswith("reached the rate cap")]
    if capped:
        lines.append(
            f"{', '.join(capped)} never failed a step below the rate cap: "
            "their optimal rate is the cap, a lower bound and not their limit"
        )
    return {"crash": picks.get("crash"), "byzantine": picks.get("byzantine"), "because": lines}


def _unsoaked(r: dict[str, Any]) -> str:
    """Why a held rate is not a sustained one ('' when it is)."""
    if r["sustainable_rate_ops"]:
        return ""
    return " (no soak held)" if r.get("soaks") else " (a fixed rate, not soaked)"


def _held(r: dict[str, Any]) -> tuple[float, dict[str, Any]] | None:
    """The rate a protocol held, with its latencies: the soak's when there was
    one, else the optimal step's (a fixed-rate comparison has no soak)."""
    if r["sustainable_rate_ops"]:
        return float(r["sustainable_rate_ops"]), r["sustainable_latency_ms"]
    if r["optimal_rate_ops"]:
        return float(r["optimal_rate_ops"]), r["optimal_latency_ms"]
    return None


def _preference(r: dict[str, Any]) -> tuple[bool, float, float]:
    """A rate held through a soak first, then the higher rate, then the lower p99."""
    rate, latency = _held(r) or (0.0, {})
    return bool(r["sustainable_rate_ops"]), rate, -float(latency.get("p99") or math.inf)


def _common_rate(results: Sequence[dict[str, Any]]) -> tuple[float, dict[str, float]] | None:
    good_rates: list[dict[float, float]] = []
    for r in results:
        good_rates.append(
            {s["target_rate_ops"]: s["latency_ms"]["p99"] for s in r["steps"] if s["verdict"] == GOOD}
        )
    if not good_rates:
        return None
    shared = set(good_rates[0]).intersection(*good_rates[1:])
    if not shared:
        return None
    rate = max(shared)
    return rate, {r["protocol"]: g[rate] for r, g in zip(results, good_rates)}


def compare(
    config: CompareConfig, progress: Callable[[str, StepResult], None] | None = None
) -> dict[str, Any]:
    config.validate()
    started = time.time()
    results = [run_protocol(config, p, progress) for p in config.protocols]
    return {
        "benchmark": "compare",
        "target": "real" if config.real else "sim",
        "ramp": config.ramp,
        "protocols": list(config.protocols),
        "regions": config.regions,
        "seed": config.seed,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "results": results,
        "recommendation": recommend(results),
        "wall_s": round(time.time() - started, 1),
    }


def write_report(report: dict[str, Any], directory: Path, command: str) -> list[Path]:
    """``report.json``, ``report.md`` and the plots in ``directory``; the paths written."""
    from quorate.bench.plots import plot_latency_cdfs, plot_resources, plot_throughput

    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "report.json"]
    written[0].write_text(json.dumps(report, indent=1) + "\n")
    plots = {
        "throughput_vs_load.png": plot_throughput,
        "latency_cdf.png": plot_latency_cdfs,
        "resources.png": plot_resources,
    }
    for name, plot in plots.items():
        plot(report, directory / name)
        written.append(directory / name)
    markdown = directory / "report.md"
    markdown.write_text(render_markdown(report, command))
    written.append(markdown)
    return written


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def render_markdown(report: dict[str, Any], command: str) -> str:
    target = "simulator (seeded, cost-model CPU)" if report["target"] == "sim" else "real processes on loopback (fsync on)"
    machine = report["machine"]
    lines = [
        "# Protocol comparison",
        "",
        f"Command: `{command}`",
        "",
        f"Target: {target}. Machine: {machine['cores']} cores, Python {machine['python']}, "
        f"load average {machine['load_average_at_start']} at start. Wall time {report['wall_s']} s.",
        "",
        "## Summary",
        "",
        "| protocol | nodes | optimal rate ops/s | throughput ops/s | p50 ms | p99 ms | p99.9 ms | sustainable ops/s | sustained p99 ms | ramp ended because |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["results"]:
        lat = r["optimal_latency_ms"] or {}
        slat = r["sustainable_latency_ms"] or {}
        lines.append(
            f"| {r['protocol']} | {r['nodes']} | {_fmt(r['optimal_rate_ops'])} | {_fmt(r['optimal_throughput_ops'])} | "
            f"{_fmt(lat.get('p50'), 2)} | {_fmt(lat.get('p99'), 2)} | {_fmt(lat.get('p99.9'), 2)} | "
            f"{_fmt(r['sustainable_rate_ops'])} | {_fmt(slat.get('p99'), 2)} | {r['stopped_because']} |"
        )
    rules = report["results"][0]["rules"] if report["results"] else {}
    if rules:
        lines += [
            "",
            f"A step is good when at least {rules['success_min']:.0%} of its operations were answered and p99 "
            f"≤ {rules['max_p99_ms']:g} ms; below {rules['backoff_below']:.0%} it is overloaded. Steps: "
            f"{rules['warmup_s']:g} s warm-up, {rules['step_s']:g} s measured; soak {rules['soak_s']:g} s. "
            "Latencies are HDR histograms (hdrhistogram) from each operation's intended start.",
        ]
    lines += ["", "## Recommendation", ""]
    lines += [f"- {line}" for line in report["recommendation"]["because"]] or ["- nothing sustained: no recommendation"]
    lines += ["", "## Bottlenecks (in each protocol's limiting step)", ""]
    for r in report["results"]:
        where = f"at {_fmt(r['limiting_step_rate_ops'])} ops/s"
        if not r["bottlenecks"]:
            busiest = r.get("busiest_cpu_percent_at_limit")
            extra = (
                f"; busiest simulated CPU {busiest['node']} at {busiest['cpu_percent']} %" if busiest else ""
            )
            if busiest and "cpu_ceiling_estimate_ops" in busiest:
                extra += (
                    f" (a linear estimate, not a measurement: 100 % near "
                    f"{busiest['cpu_ceiling_estimate_ops']:,.0f} ops/s; raise --max-rate to measure it)"
                )
            lines.append(f"- {r['protocol']} {where}: no rule fired{extra}")
        for finding in r["bottlenecks"]:
            lines.append(f"- {r['protocol']} {where}: **{finding['rule']}** — {finding['summary']}")
    lines += ["", "## Steps", ""]
    for r in report["results"]:
        lines += [
            f"### {r['protocol']}",
            "",
            "| phase | target ops/s | offered ops/s | throughput ops/s | success | p50 ms | p99 ms | p99.99 ms | verdict |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for s in [*r["steps"], *r["soaks"]]:
            lat = s["latency_ms"]
            lines.append(
                f"| {s['phase']} | {_fmt(s['target_rate_ops'])} | {_fmt(s['rate_ops'])} | {_fmt(s['throughput_ops'])} | "
                f"{s['success']:.1%} | {_fmt(lat['p50'], 2)} | {_fmt(lat['p99'], 2)} | {_fmt(lat['p99.99'], 2)} | {s['verdict']} |"
            )
        lines.append("")
    lines += [
        "## Plots",
        "",
        "![throughput vs offered load](throughput_vs_load.png)",
        "",
        "![latency CDFs](latency_cdf.png)",
        "",
        "![resources](resources.png)",
        "",
    ]
    return "\n".join(lines)
