"""Bottleneck rules over a step's resource timeline, each with its evidence.

Theory of operation. ``find_bottlenecks`` reads one step (normally the step
where the ramp stopped being good: what held the rate back shows there) and
applies a few rules, each a plain threshold on the per-second samples of
``quorate.bench.resources``. A rule that fires returns a ``Finding``: which
rule, which node, one sentence for people and the numbers that made it fire,
so a reader can disagree with the rule rather than trust it.

- ``cpu_saturated``: a node process used at least ``CPU_SATURATED_PERCENT``
  of one core in at least half the samples (CPython runs a process's Python
  code on one core at a time).
- ``fsync_dominates``: the node's durable writes per second times the
  measured flush latency (the fsync probe) fill at least ``FSYNC_BUSY_SHARE``
  of each second: the node waits on the disk more than it computes.
- ``send_queue_growth``: the bytes waiting in a node's TCP send queues (or,
  simulated, the messages waiting for its CPU) grow steadily through the step.
- ``memory_growth``: resident memory grows by at least ``MEMORY_SLOPE_MB_S``
  per second and ``MEMORY_GROWTH_MB_MIN`` in all.
- ``slow_node``: one node's applied index falls further behind the most
  advanced node's through the step (its lag grows and ends above
  ``LAG_ENTRIES_MIN``), or its input queue is an outlier: the quorum waits for
  it, or it falls out of the quorum and will need catching up.
- ``load_generator_bound``: a load process was itself CPU-saturated, so the
  measured limit is the client's, not the cluster's.
- ``host_saturated``: the whole machine was busy (other tenants included), so
  every figure of the step carries that noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from quorate.bench.resources import HOST, Sample

CPU_SATURATED_PERCENT = 90.0
SATURATED_SHARE = 0.5
"""Share of a step's samples that must be over the line."""
FSYNC_BUSY_SHARE = 0.5
SEND_QUEUE_SLOPE_BYTES_S = 64 * 1024
SEND_QUEUE_MIN_BYTES = 256 * 1024
SIM_QUEUE_SLOPE_MSGS_S = 50.0
SIM_QUEUE_MIN_MSGS = 100.0
MEMORY_SLOPE_MB_S = 1.0
MEMORY_GROWTH_MB_MIN = 10.0
LAG_ENTRIES_MIN = 1000.0
QUEUE_OUTLIER_FACTOR = 3.0
HOST_SATURATED_PERCENT = 90.0
CLIENT_PREFIX = "client"
MIN_SAMPLES = 2


@dataclass(frozen=True)
class Finding:
    rule: str
    node: str | None
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def slope_per_s(samples: Sequence[Sample], key: str) -> float | None:
    """Least-squares slope of ``key`` against ``t_s`` (None with < 2 points)."""
    points = [(s["t_s"], s[key]) for s in samples if key in s]
    if len(points) < MIN_SAMPLES:
        return None
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def _series(samples: Sequence[Sample], key: str) -> list[float]:
    return [s[key] for s in samples if key in s]


def _nodes(timeline: Mapping[str, Sequence[Sample]]) -> dict[str, Sequence[Sample]]:
    return {n: s for n, s in timeline.items() if n != HOST and not n.startswith(CLIENT_PREFIX)}


def _cpu_saturated(name: str, samples: Sequence[Sample], rule: str, what: str) -> Finding | None:
    cpu = _series(samples, "cpu_percent")
    over = [c for c in cpu if c >= CPU_SATURATED_PERCENT]
    if len(cpu) < MIN_SAMPLES or len(over) < SATURATED_SHARE * len(cpu):
        return None
    return Finding(
        rule,
        name,
        f"{what} {name} used >= {CPU_SATURATED_PERCENT:g} % of a core in {len(over)} of {len(cpu)} samples "
        f"(median {statistics.median(cpu):.0f} %)",
        {"cpu_percent": cpu, "threshold_percent": CPU_SATURATED_PERCENT},
    )


def find_bottlenecks(
    timeline: Mapping[str, Sequence[Sample]],
    *,
    fsync_probe_ms: Sequence[float] = (),
    simulated: bool = False,
) -> list[Finding]:
    """Every rule that fires on ``timeline`` (see the module docstring)."""
    findings: list[Finding] = []
    nodes = _nodes(timeline)
    for name, samples in nodes.items():
        finding = _cpu_saturated(name, samples, "cpu_saturated", "node")
        if finding is not None:
            findings.append(finding)
    flush_ms = statistics.median(fsync_probe_ms) if fsync_probe_ms else None
    if flush_ms is not None:
        for name, samples in nodes.items():
            per_s = _series(samples, "fsyncs_per_s")
            if len(per_s) < MIN_SAMPLES:
                continue
            busy = statistics.median(per_s) * flush_ms / 1000.0
            if busy >= FSYNC_BUSY_SHARE:
                findings.append(
                    Finding(
                        "fsync_dominates",
                        name,
                        f"{name} made {statistics.median(per_s):.0f} durable writes/s at a measured "
                        f"{flush_ms:.1f} ms per flush: ~{min(busy, 1.0):.0%} of each second waiting on the disk"
                        + (" (more flushes than a second holds, if they ran one at a time)" if busy > 1 else ""),
                        {"fsyncs_per_s": per_s, "fsync_probe_ms": list(fsync_probe_ms), "busy_share": round(busy, 3)},
                    )
                )
    key, min_slope, min_last, unit = (
        ("queue", SIM_QUEUE_SLOPE_MSGS_S, SIM_QUEUE_MIN_MSGS, "messages")
        if simulated
        else ("send_queue_bytes", SEND_QUEUE_SLOPE_BYTES_S, SEND_QUEUE_MIN_BYTES, "bytes")
    )
    for name, samples in nodes.items():
        slope = slope_per_s(samples, key)
        series = _series(samples, key)
        if slope is not None and slope >= min_slope and series[-1] >= min_last:
            where = "waiting for its CPU" if simulated else "in its TCP send queues"
            findings.append(
                Finding(
                    "send_queue_growth",
                    name,
                    f"{name}: {unit} {where} grew by {slope:,.0f}/s to {series[-1]:,.0f}",
                    {key: series, "slope_per_s": round(slope, 1)},
                )
            )
    for name, samples in nodes.items():
        slope = slope_per_s(samples, "rss_mb")
        rss = _series(samples, "rss_mb")
        if slope is not None and slope >= MEMORY_SLOPE_MB_S and rss[-1] - rss[0] >= MEMORY_GROWTH_MB_MIN:
            findings.append(
                Finding(
                    "memory_growth",
                    name,
                    f"{name}: resident memory grew {slope:.1f} MB/s ({rss[0]:.0f} -> {rss[-1]:.0f} MB)",
                    {"rss_mb": rss, "slope_mb_s": round(slope, 2)},
                )
            )
    findings += _slow_nodes(nodes, simulated)
    for name, samples in timeline.items():
        if name.startswith(CLIENT_PREFIX):
            finding = _cpu_saturated(name, samples, "load_generator_bound", "load process")
            if finding is not None:
                findings.append(finding)
    host = _series(timeline.get(HOST, []), "cpu_percent")
    if len(host) >= MIN_SAMPLES and statistics.median(host) >= HOST_SATURATED_PERCENT:
        findings.append(
            Finding(
                "host_saturated",
                None,
                f"the machine's cores were {statistics.median(host):.0f} % busy (median; other tenants included): "
                "every figure of this step carries that noise",
                {"host_cpu_percent": host},
            )
        )
    return findings


def _slow_nodes(nodes: Mapping[str, Sequence[Sample]], simulated: bool) -> list[Finding]:
    findings: list[Finding] = []
    applied = {n: _series(s, "applied_index") for n, s in nodes.items()}
    length = min((len(v) for v in applied.values()), default=0)
    if len(applied) >= 2 and length >= MIN_SAMPLES:
        front = [max(v[i] for v in applied.values()) for i in range(length)]
        for name, series in applied.items():
            lag = [front[i] - series[i] for i in range(length)]
            if lag[-1] >= LAG_ENTRIES_MIN and lag[-1] > lag[0]:
                findings.append(
                    Finding(
                        "slow_node",
                        name,
                        f"{name} fell behind the most advanced node: {lag[0]:,.0f} -> {lag[-1]:,.0f} entries",
                        {"lag_entries": lag},
                    )
                )
    if simulated:
        queues = {n: statistics.median(_series(s, "queue") or [0.0]) for n, s in nodes.items()}
        for name, queue in queues.items():
            others = [q for n, q in queues.items() if n != name]
            outlier = (
                bool(others)
                and queue >= SIM_QUEUE_MIN_MSGS
                and queue >= QUEUE_OUTLIER_FACTOR * max(1.0, statistics.median(others))
            )
            if outlier and not any(f.node == name for f in findings):
                findings.append(
                    Finding(
                        "slow_node",
                        name,
                        f"{name}'s input queue (median {queue:,.0f} messages) is over "
                        f"{QUEUE_OUTLIER_FACTOR:g}x the other nodes' (median {statistics.median(others):,.0f})",
                        {"queue_median": queue, "others_median": statistics.median(others)},
                    )
                )
    return findings
