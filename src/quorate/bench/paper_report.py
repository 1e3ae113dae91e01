"""The paper run's outputs: ``report.md``, PNG plots and ``paper.json``.

Theory of operation. ``write_outputs(report, directory, command)`` renders a
finished ``quorate.bench.paper.run_paper`` report:

- ``paper.json``: the whole report (every number, the git revision);
- ``fig1_throughput.png``: throughput (highest rate with p99 within the
  bound) against n, one line per protocol, log-log;
- ``fig2_latency.png``: p50 (solid) and p99 (dashed) against n, with each
  protocol's analytic p50 floor dotted;
- ``fig2_cdf.png``: the latency CDF of each protocol at the largest n it
  measured;
- ``validation.png``: simulated against real throughput and median latency
  for the small configurations;
- ``fig3_detection.png``: the CDF of Byzantine leader detection times, when
  Fig. 3 was measured;
- ``report.md``: the claims-vs-measured table, the figures' tables, the CPU
  constants, the reductions the budget made, the validation, and which
  protocols and figures this build could not run.

Every figure the run could not measure is drawn as absent, never as zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DPI = 100
COLOURS = {"hrb": "tab:red", "raft": "tab:blue", "pbft": "tab:orange", "hotstuff": "tab:green", "casper": "tab:purple"}
JSON_NAME = "paper.json"
PNG_NAMES = ("fig1_throughput.png", "fig2_latency.png", "fig2_cdf.png", "validation.png")


def _colour(name: str) -> str:
    return COLOURS.get(name, "tab:gray")


def _series(protocol: Mapping[str, Any], value: Any) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for n, cell in sorted(protocol.get("cells", {}).items(), key=lambda item: int(item[0])):
        v = value(cell)
        if isinstance(v, (int, float)):
            xs.append(int(n))
            ys.append(float(v))
    return xs, ys


def _empty_note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="gray")


def plot_throughput(fig_data: Mapping[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for name, p in fig_data["protocols"].items():
        xs, ys = _series(p, lambda c: c.get("throughput_ops") if c.get("status") == "measured" else None)
        label = p["title"] if p.get("available") else f"{p['title']} (not available)"
        cells = p.get("cells", {})
        if any(c.get("agents") for c in cells.values()):
            label += " (its agents' offered load, not its limit)"
        if xs:
            ax.plot(xs, ys, "-", color=_colour(name), label=label)
            # Filled: the limit (p99 broke the bound above it); open: a lower bound.
            for x, y in zip(xs, ys):
                limit = cells.get(str(x), {}).get("limit_reached") is True
                ax.plot([x], [y], "o", color=_colour(name), markerfacecolor=_colour(name) if limit else "white")
            drawn = True
        else:
            ax.plot([], [], "o-", color=_colour(name), label=label)
    ax.set_xscale("log")
    if drawn:
        ax.set_yscale("log")
    else:
        _empty_note(ax, "no cell measured")
    ax.set_xlabel("nodes n")
    ax.set_ylabel(f"ops/s with p99 <= {fig_data['p99_bound_ms']:g} ms")
    ax.set_title("Fig. 1: throughput vs n (3 regions, 50 ms, 1 Gbps; simulated)\n"
                 "filled: the limit; open: a lower bound (the ramp stopped first)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_latency(fig_data: Mapping[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, p in fig_data["protocols"].items():
        c = _colour(name)
        xs, p50 = _series(p, lambda cell: (cell.get("latency_ms") or {}).get("p50"))
        _, p99 = _series(p, lambda cell: (cell.get("latency_ms") or {}).get("p99"))
        fx, floor = _series(p, lambda cell: (cell.get("floor_ms") or {}).get("p50_ms"))
        if xs:
            ax.plot(xs, p50, "o-", color=c, label=f"{p['title']} p50")
        if len(p99) == len(xs) and xs:
            ax.plot(xs, p99, "s--", color=c, label=f"{p['title']} p99")
        if fx and xs:
            ax.plot(fx, floor, ":", color=c, label=f"{p['title']} floor (analytic)")
    ax.set_xscale("log")
    ax.set_xlabel("nodes n")
    ax.set_ylabel("latency, ms")
    ax.set_title("Fig. 2: latency at the throughput point vs n (simulated)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    else:
        _empty_note(ax, "no cell measured")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_cdf(cdfs: Mapping[str, Any], titles: Mapping[str, str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, entry in cdfs.items():
        points = entry["cdf_ms"]
        if points:
            ax.plot([x for x, _ in points], [y for _, y in points], "-", color=_colour(name),
                    label=f"{titles.get(name, name)} (n={entry['n']})")
    if not cdfs:
        _empty_note(ax, "no latency distribution measured")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms")
    ax.set_ylabel("share of operations")
    ax.set_title("Fig. 2: latency CDF at the largest n measured")
    ax.grid(True, which="both", alpha=0.3)
    if cdfs:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_validation(validation: Mapping[str, Any] | None, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    rows = [r for r in (validation or {}).get("rows", []) if r.get("status") == "measured"]
    for r in rows:
        c = _colour(r["protocol"])
        label = f"{r['protocol']} {r['rate_ops']:g}/s"
        left.plot(r["real"]["throughput_ops"], r["sim"]["throughput_ops"], "o", color=c, label=label)
        if r["real"]["p50_ms"] is not None and r["sim"]["p50_ms"] is not None:
            right.plot(r["real"]["p50_ms"], r["sim"]["p50_ms"], "o", color=c, label=label)
    for ax, what in ((left, "throughput, ops/s"), (right, "p50 latency, ms")):
        hi = ax.get_xlim()[1] if rows else 1.0
        top = max(hi, ax.get_ylim()[1]) if rows else 1.0
        ax.plot([0, top], [0, top], ":", color="gray")
        ax.set_xlabel(f"real (loopback) {what}")
        ax.set_ylabel(f"simulated {what}")
        ax.grid(True, alpha=0.3)
        if not rows:
            _empty_note(ax, "validation not run")
    if rows:
        right.legend(fontsize=7)
    fig.suptitle("Simulator validation: same small clusters, simulated vs real")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_detection(figure: Mapping[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cdf = (figure.get("detection_s") or {}).get("cdf") or []
    if cdf:
        ax.step([x for x, _ in cdf], [y for _, y in cdf], where="post", color="tab:red")
    else:
        _empty_note(ax, "no detection recorded")
    ax.set_xlabel("detection time after misbehaviour, s")
    ax.set_ylabel("share of Byzantine leaders detected")
    ax.set_title("Fig. 3: Byzantine leader detection (HRB, simulated)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def render_markdown(report: Mapping[str, Any], command: str) -> str:
    out = [
        "# The HRB paper's experiments, reproduced",
        "",
        f"Command: `{command}`  ",
        f"Seed: {report['seed']}; git revision: `{report.get('git_revision')}`; "
        f"wall time {report.get('wall_s')} s; peak memory {report.get('peak_rss_mb')} MB.",
        "",
        "## Paper claims vs measured",
        "",
        "| claim | paper | ours | verdict | why | seed | command |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report.get("claims", []):
        out.append(
            f"| {row['claim']} | {_fmt(row['paper_value'])} {row['unit']} | {_fmt(row['our_value'])} | "
            f"**{row['verdict']}** | {row['why']} | {row['seed']} | `{row['command']}` |"
        )
    fig = report.get("figure_1_2")
    if fig:
        out += [
            "",
            "## Fig. 1 and Fig. 2 (simulated)",
            "",
            f"Network: {fig['network']['regions']} regions, {fig['network']['inter_region_ms']:g} ms one way between "
            f"regions, {fig['network']['intra_region_ms']:g} ms inside one, {fig['network']['bandwidth_gbps']:g} Gbps links. "
            f"Open-loop arrivals stepped up until p99 exceeds {fig['p99_bound_ms']:g} ms; the throughput figure is the "
            "highest answered rate of a step with p99 within that bound and 95 % answered, and the latencies are that step's. "
            f"Floors: {fig['floor_label']}.",
            "",
            "![Fig. 1](fig1_throughput.png) ![Fig. 2](fig2_latency.png) ![Fig. 2 CDF](fig2_cdf.png)",
            "",
            "| protocol | n | status | ops/s (p99 bound) | p50 ms | p99 ms | floor p50 ms (analytic) | steps | sim s/step | wall s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for p in fig["protocols"].values():
            if not p.get("available"):
                out.append(f"| {p['title']} | all | {p.get('reason')} | - | - | - | - | - | - | - |")
                continue
            for n, cell in sorted(p["cells"].items(), key=lambda item: int(item[0])):
                latency = cell.get("latency_ms") or {}
                floor = (cell.get("floor_ms") or {}).get("p50_ms")
                status = cell.get("status", "-")
                if cell.get("cut_by_budget"):
                    status += " (ramp cut by budget)"
                if cell.get("reason") and cell.get("status") != "measured":
                    status += f": {cell['reason']}"
                throughput = _fmt(cell.get("throughput_ops"))
                if cell.get("status") == "measured" and cell.get("agents"):
                    throughput = f"{throughput} (what {cell['agents']} closed-loop agents offered; not the limit)"
                elif cell.get("status") == "measured" and cell.get("limit_reached") is False:
                    throughput = f">= {throughput} (limit not reached)"
                if cell.get("latency_kind") == "intra_shard" and cell.get("latency_ms"):
                    cross = cell.get("cross_shard_latency_ms") or {}
                    throughput += (f" (p50/p99: intra-shard; cross-shard {_fmt(cross.get('p50'))}/{_fmt(cross.get('p99'))} ms; "
                                   f"agents from {_fmt(cell.get('agents_started_at_s'))} s)")
                if cell.get("p99_bound_ms") and cell["p99_bound_ms"] != fig["p99_bound_ms"]:
                    throughput += f" (p99 bound {cell['p99_bound_ms']:g} ms)"
                out.append(
                    f"| {p['title']} | {n} | {status} | {throughput} | {_fmt(latency.get('p50'))} | "
                    f"{_fmt(latency.get('p99'))} | {_fmt(floor)} | {len(cell.get('steps', []))} | "
                    f"{_fmt(cell.get('sim_s_per_step'))} | {_fmt(cell.get('cell_wall_s'))} |"
                )
        out += ["", "Settings (each protocol's best configuration for this network):", ""]
        for p in fig["protocols"].values():
            settings = p.get("settings") or {}
            out.append(f"- **{p['title']}**: `{json.dumps(settings.get('options', {}))}` — {settings.get('why', '')}. "
                       f"Message pattern: {p.get('pattern')}.")
        out += ["", "### Reductions", ""]
        reductions = fig.get("reductions") or []
        out += [f"- {r}" for r in reductions] or ["- none"]
        out.append(f"- seeds: {fig.get('seeds')} (one seed per cell)")
    cpu = report.get("cpu_model") or {}
    out += [
        "",
        "## Simulated CPU (one core per node)",
        "",
        f"Source: {cpu.get('source')}.",
        "",
        f"- per message: {cpu.get('message_base_us')} us + {cpu.get('message_per_byte_ns')} ns/byte; timer: {cpu.get('timer_us', cpu.get('message_base_us'))} us",
        f"- crypto (us per call): {_fmt(cpu.get('crypto_us'))}",
    ]
    validation = report.get("validation")
    out += ["", "## Simulator validation (small clusters, simulated vs real on loopback)", ""]
    if validation:
        params = validation["sim_parameters"]
        out += [
            f"Simulator: {params['regions']} region, {params['one_way_ms']} ms one way, {params['bandwidth_gbps']:g} Gbps, "
            f"fsync {params['fsync_ms']} ms (measured here), the run's CPU model; {params['warmup_s']:g} s warm-up, "
            f"{params['window_s']:g} s measured. Error = (sim - real) / real.",
            "",
            "![validation](validation.png)",
            "",
            "| protocol | n | rate ops/s | real ops/s | sim ops/s | throughput error | real p50 ms | sim p50 ms | p50 error |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in validation["rows"]:
            if r.get("status") != "measured":
                out.append(f"| {r['protocol']} | {r['nodes']} | - | {r.get('status')}: {r.get('reason', '')} | | | | | |")
                continue
            out.append(
                f"| {r['protocol']} | {r['nodes']} | {r['rate_ops']:g} | {_fmt(r['real']['throughput_ops'])} | "
                f"{_fmt(r['sim']['throughput_ops'])} | {_pct(r['throughput_error'])} | {_fmt(r['real']['p50_ms'])} | "
                f"{_fmt(r['sim']['p50_ms'])} | {_pct(r['p50_error'])} |"
            )
        out += [
            "",
            f"Median absolute error: throughput {_pct(validation.get('median_abs_throughput_error'))}, "
            f"p50 latency {_pct(validation.get('median_abs_p50_error'))}.",
        ]
    else:
        out.append("Not run (`--no-validate`).")
    others = report.get("other_figures") or {}
    if others:
        out += ["", "## Fig. 3, partitions, recovery, storage", ""]
        for figure, data in others.items():
            status = data.get("status")
            detail = data.get("reason") or data.get("command") or ""
            out.append(f"- {figure}: {status}" + (f" ({detail})" if detail else ""))
    out.append("")
    return "\n".join(out)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:+.1%}"


def write_outputs(report: Mapping[str, Any], directory: Path, command: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = directory / JSON_NAME
    json_path.write_text(json.dumps(report, indent=1))
    written.append(json_path)
    fig = report.get("figure_1_2")
    if fig:
        plot_throughput(fig, directory / "fig1_throughput.png")
        plot_latency(fig, directory / "fig2_latency.png")
        titles = {name: p["title"] for name, p in fig["protocols"].items()}
        plot_cdf(report.get("figure_2_cdf") or {}, titles, directory / "fig2_cdf.png")
        written += [directory / "fig1_throughput.png", directory / "fig2_latency.png", directory / "fig2_cdf.png"]
    plot_validation(report.get("validation"), directory / "validation.png")
    written.append(directory / "validation.png")
    figure_3 = (report.get("other_figures") or {}).get("3")
    if figure_3 and figure_3.get("status") == "measured":
        plot_detection(figure_3, directory / "fig3_detection.png")
        written.append(directory / "fig3_detection.png")
    md = directory / "report.md"
    md.write_text(render_markdown(report, command))
    written.append(md)
    return written
