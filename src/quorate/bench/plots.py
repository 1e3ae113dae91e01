"""PNG plots of a comparison report (matplotlib, no display needed).

- ``plot_throughput``: achieved throughput against offered load per protocol,
  every ramp step a point (filled when good, hollow otherwise), the soaks as
  squares, the optimal rate circled; the diagonal is "everything offered was
  served".
- ``plot_latency_cdfs``: for each protocol the latency distribution of its
  sustained soak (or of its optimal step), as a CDF on a log latency axis and
  as HdrHistogram's percentile spectrum (latency against 1 / (1 - q), so
  p99, p99.9 and p99.99 get equal room).
- ``plot_resources``: the resource timeline of each protocol's last soak
  (its longest window), or of its limiting step when it had no soak: CPU per
  node (one colour per process in every panel), and per node the second
  measure that exists for the target (resident memory for real processes,
  the input queue for simulated ones), durable writes per second, and
  network throughput for real processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DPI = 110
LOG_AXES_SPAN = 8.0
"""Rates spanning this factor or more are drawn on log axes."""
COLOURS = {"raft": "tab:blue", "pbft": "tab:orange", "hotstuff": "tab:green", "casper": "tab:purple", "hrb": "tab:red"}
SPECTRUM_TICKS = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9"), (0.9999, "p99.99"))


def _colour(protocol: str) -> str:
    return COLOURS.get(protocol, "tab:gray")


def plot_throughput(report: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    top = 1.0
    for i, r in enumerate(report["results"]):
        c = _colour(r["protocol"])
        size = 9 - 2 * (i % 3)  # later protocols smaller, so coinciding points stay visible
        steps = r["steps"]
        xs = [s["rate_ops"] for s in steps]
        ys = [s["throughput_ops"] for s in steps]
        ax.plot(xs, ys, "-", color=c, alpha=0.5)
        for s in steps:
            good = s["verdict"] == "good"
            ax.plot(s["rate_ops"], s["throughput_ops"], "o", color=c, mfc=c if good else "white", ms=size)
        for s in r["soaks"]:
            ax.plot(s["rate_ops"], s["throughput_ops"], "s", color=c, mfc=c if s["verdict"] == "good" else "white", ms=size + 2)
        ax.plot([], [], "o-", color=c, label=r["protocol"])
        if r["optimal_rate_ops"] is not None:
            best = next(s for s in steps if s["target_rate_ops"] == r["optimal_rate_ops"])
            ax.plot(best["rate_ops"], best["throughput_ops"], "o", ms=16, mfc="none", color=c, mew=2)
        top = max([top, *xs, *ys])
    low = min([s["rate_ops"] for r in report["results"] for s in r["steps"]] or [1.0])
    if top / max(low, 1e-9) >= LOG_AXES_SPAN:
        # Ramps double the rate: on log axes the steps are evenly spaced.
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.plot([low * 0.8, top * 1.2], [low * 0.8, top * 1.2], ":", color="gray", label="served = offered")
    else:
        ax.plot([0, top], [0, top], ":", color="gray", label="served = offered")
    ax.plot([], [], "o", color="gray", mfc="white", label="step not good")
    ax.plot([], [], "s", color="gray", label="soak")
    ax.plot([], [], "o", color="gray", mfc="none", ms=14, mew=2, label="optimal")
    ax.set_xlabel("offered load (ops/s)")
    ax.set_ylabel("answered (ops/s)")
    ax.set_title(f"throughput vs offered load ({report['target']})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _distribution_step(r: dict[str, Any]) -> dict[str, Any] | None:
    soaks: list[dict[str, Any]] = [s for s in r["soaks"] if s["verdict"] == "good"]
    if soaks:
        return soaks[-1]
    steps: list[dict[str, Any]] = r["steps"]
    if r["optimal_rate_ops"] is not None:
        return next(s for s in steps if s["target_rate_ops"] == r["optimal_rate_ops"])
    return steps[-1] if steps else None


def plot_latency_cdfs(report: dict[str, Any], path: Path) -> None:
    fig, (cdf, spectrum) = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in report["results"]:
        step = _distribution_step(r)
        if step is None or not step["latency_cdf_ms"]:
            continue
        c = _colour(r["protocol"])
        label = f"{r['protocol']} @ {step['rate_ops']:,.0f} ops/s ({step['phase']})"
        points = step["latency_cdf_ms"]
        xs = [max(p[0], 1e-3) for p in points]
        qs = [p[1] for p in points]
        cdf.step(xs, qs, where="post", color=c, label=label)
        tail = [(x, 1 / (1 - q)) for x, q in zip(xs, qs) if q < 1]
        spectrum.plot([t[1] for t in tail], [t[0] for t in tail], "-", color=c, label=label)
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (ms, log)")
    cdf.set_ylabel("fraction of operations")
    cdf.set_title("latency CDF")
    cdf.grid(True, which="both", alpha=0.3)
    cdf.legend(fontsize=8, loc="lower right")
    spectrum.set_xscale("log")
    spectrum.set_yscale("log")
    spectrum.set_xticks([1 / (1 - q) for q, _ in SPECTRUM_TICKS], [name for _, name in SPECTRUM_TICKS])
    spectrum.set_xlabel("percentile")
    spectrum.set_ylabel("latency (ms, log)")
    spectrum.set_title("percentile spectrum (HDR)")
    spectrum.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _timeline_step(r: dict[str, Any]) -> dict[str, Any] | None:
    """The last soak (the longest window, at the rate the ramp settled on),
    else the limiting step."""
    soaks: list[dict[str, Any]] = r["soaks"]
    if soaks:
        return soaks[-1]
    rate = r.get("limiting_step_rate_ops")
    steps: list[dict[str, Any]] = r["steps"]
    return next((s for s in steps if s["target_rate_ops"] == rate), None)


def _series_colours(report: dict[str, Any]) -> dict[str, Any]:
    """One colour per node, load process and host, the same in every panel."""
    names = sorted({name for r in report["results"] for s in [*r["steps"], *r["soaks"]] for name in s["resources"]})
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def plot_resources(report: dict[str, Any], path: Path) -> None:
    real = report["target"] == "real"
    columns = (
        [("cpu_percent", "CPU (% of a core)"), ("rss_mb", "RSS (MB)"), ("fsyncs_per_s", "fsyncs/s"),
         ("net_sent_mb_s", "sent (MB/s)")]
        if real
        else [("cpu_percent", "simulated CPU (% busy)"), ("queue", "input queue (msgs)"), ("fsyncs_per_s", "durable writes/s")]
    )
    rows = report["results"]
    colours = _series_colours(report)
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(3.6 * len(columns), 2.6 * max(1, len(rows))), squeeze=False
    )
    for i, r in enumerate(rows):
        step = _timeline_step(r)
        for j, (key, title) in enumerate(columns):
            ax = axes[i][j]
            if step is not None:
                for node, samples in sorted(step["resources"].items()):
                    points = [(s["t_s"], s[key]) for s in samples if key in s]
                    if points:
                        style = "--" if node.startswith("client") else ":" if node == "host" else "-"
                        label = "host (% of all cores)" if node == "host" else node
                        ax.plot([p[0] for p in points], [p[1] for p in points], style, marker=".",
                                color=colours[node], label=label)
            rate = f" @ {step['target_rate_ops']:,.0f} ops/s ({step['phase']})" if step is not None else ""
            # From zero, so small wobbles do not look like swings; a tenth of headroom.
            top = max((max(line.get_ydata(), default=0.0) for line in ax.get_lines()), default=0.0)
            ax.set_ylim(0, float(top) * 1.1 or 1.0)
            ax.set_title(f"{r['protocol']}{rate}: {title}", fontsize=9)
            ax.set_xlabel("s", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
