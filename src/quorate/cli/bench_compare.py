"""``quorate bench compare``, ``bench advise`` and ``bench recommend``: the
performance benchmarker and advisor.

- ``compare --protocols raft,pbft,hotstuff [--sim|--real] [--ramp] --out DIR``
  loads each protocol with the same ramp (``quorate.bench.ramp``) and writes
  ``DIR/report.md``, ``DIR/report.json`` and PNG plots
  (``quorate.bench.compare``): optimal and sustainable rates, HDR latency
  percentiles, resource timelines, bottlenecks with their evidence, and a
  recommendation.
- ``advise --protocol P [--sim|--real]`` tries one setting at a time and keeps
  a change only if it beats the noise of repeated runs (``quorate.bench.advisor``).
- ``recommend --faults crash|byzantine --nodes N ...`` picks a protocol from
  stated requirements with measured simulator runs (``quorate.bench.recommend``).

Each prints a table for people or, with ``--json``, one JSON object as the
last line of stdout; progress goes to stderr. Bad flags exit 2 with one line.
``compare`` and ``recommend`` need the ``bench`` extra (hdrhistogram,
psutil, matplotlib), imported when they run: without it, they say so in one
line; ``advise`` reads simulator or ``bench real`` results and needs none.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quorate.cli.main import bench_app, fail, parse_options, shown
from quorate.errors import ConfigError

if TYPE_CHECKING:
    from quorate.bench.ramp import StepResult


def _say(text: str) -> None:
    typer.echo(text, err=True)


def _step_line(protocol: str, step: StepResult) -> None:
    p99 = step.histogram.percentile_ms(99.0)
    _say(
        f"  {protocol:<8} {step.phase:<6} {step.target_rate_ops:>9,.0f} ops/s offered -> "
        f"{step.throughput_ops:>9,.0f} answered, {step.success:6.1%}, p99 {p99} ms"
    )


def _nodes(text: str | None, protocols: list[str]) -> dict[str, int]:
    """``7`` (every protocol) or ``raft=5,pbft=7``; ``ConfigError`` otherwise."""
    if text is None:
        return {}
    try:
        if "=" not in text:
            return dict.fromkeys(protocols, int(text))
        pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
        return {name.strip(): int(count) for name, count in pairs}
    except ValueError:
        raise ConfigError(f"--nodes takes a count (7) or PROTOCOL=COUNT pairs (raft=5,pbft=7), got {text!r}") from None


def _protocols(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


@bench_app.command("compare")
def compare_command(
    protocols: Annotated[
        str, typer.Option("--protocols", help="Comma-separated, of raft,pbft,hotstuff,casper,hrb (hrb: --sim only).")
    ] = "raft,pbft,hotstuff",
    sim: Annotated[bool, typer.Option("--sim", help="In the simulator (the default).")] = False,
    real: Annotated[bool, typer.Option("--real", help="On real node processes on loopback (fsync on).")] = False,
    use_ramp: Annotated[bool, typer.Option("--ramp", help="Ramp the load to find optimal and sustainable rates.")] = False,
    rate: Annotated[float, typer.Option("--rate", help="Without --ramp: the one rate (ops/s) for each protocol.")] = 2000.0,
    start_rate: Annotated[float, typer.Option("--start-rate", help="First ramp step (ops/s).")] = 500.0,
    max_rate: Annotated[float | None, typer.Option("--max-rate", help="Ramp cap, ops/s (default 16000 sim, 64000 real).")] = None,
    min_rate: Annotated[float, typer.Option("--min-rate", help="Lowest rate a back-off below a failing start rate tries.")] = 25.0,
    max_p99_ms: Annotated[float, typer.Option("--max-p99-ms", help="Latency bound of a good step.")] = 100.0,
    warmup: Annotated[float, typer.Option("--warmup", help="Seconds of each step not measured.")] = 2.5,
    step_s: Annotated[float, typer.Option("--step", help="Seconds measured per step.")] = 2.0,
    soak: Annotated[float, typer.Option("--soak", help="Seconds the optimal rate is held.")] = 6.0,
    regions: Annotated[int, typer.Option("--regions", help="Simulator only: regions 50 ms apart.")] = 1,
    nodes: Annotated[
        str | None,
        typer.Option("--nodes", help="Nodes for every protocol (7) or per protocol (raft=5,pbft=7); default 3 raft, 4 BFT."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed (the same for every protocol).")] = 1,
    base_port: Annotated[int, typer.Option("--base-port", help="Real: first node port.")] = 17601,
    out: Annotated[Path | None, typer.Option("--out", help="Write report.md, report.json and PNG plots here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (without the per-step histograms).")] = False,
) -> None:
    """Protocols side by side under the same load: throughput vs load,
    latency distributions, resources, bottlenecks and a recommendation."""
    from quorate.bench.compare import CompareConfig, compare, write_report
    from quorate.bench.ramp import RampConfig

    if sim and real:
        raise fail("choose --sim or --real, not both")
    try:
        cap = max_rate if max_rate is not None else (64_000.0 if real else 16_000.0)
        config = CompareConfig(
            protocols=_protocols(protocols),
            real=real,
            ramp=use_ramp,
            rate_ops=rate,
            regions=regions,
            nodes=_nodes(nodes, _protocols(protocols)),
            seed=seed,
            base_port=base_port,
            ramp_config=RampConfig(
                start_rate_ops=start_rate,
                max_rate_ops=cap,
                min_rate_ops=min_rate,
                max_p99_ms=max_p99_ms,
                warmup_s=warmup,
                step_s=step_s,
                soak_s=soak,
            ),
        ).validate()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _say(f"comparing {', '.join(config.protocols)} on {'real processes' if real else 'the simulator'}")
    report = compare(config, _step_line)
    if out is not None:
        command = "quorate " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        for path in write_report(report, out, command):
            _say(f"wrote {path}")
    if as_json:
        typer.echo(json.dumps(_without_bulk(report)))
        return
    _print_compare(report)


def _without_bulk(report: dict[str, Any]) -> dict[str, Any]:
    """The report without per-step HDR encodings and CDF points (they are in report.json)."""
    slim: dict[str, Any] = json.loads(json.dumps(report))
    for r in slim["results"]:
        for s in [*r["steps"], *r["soaks"]]:
            s.pop("histogram_hdr", None)
            s.pop("latency_cdf_ms", None)
    return slim


def _print_compare(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"compare ({report['target']})")
    for column in ("protocol", "optimal ops/s", "p50 ms", "p99 ms", "p99.99 ms", "sustainable ops/s", "bottlenecks"):
        table.add_column(column, justify="right" if column != "bottlenecks" else "left")
    for r in report["results"]:
        lat = r["optimal_latency_ms"] or {}
        table.add_row(
            r["protocol"],
            "-" if r["optimal_rate_ops"] is None else f"{r['optimal_rate_ops']:,.0f}",
            shown(lat.get("p50")),
            shown(lat.get("p99")),
            shown(lat.get("p99.99")),
            "-" if r["sustainable_rate_ops"] is None else f"{r['sustainable_rate_ops']:,.0f}",
            ", ".join(f"{f['rule']}({f['node'] or 'host'})" for f in r["bottlenecks"]) or "-",
        )
    console = Console()
    console.print(table)
    for line in report["recommendation"]["because"]:
        console.print(f"- {line}")


@bench_app.command("advise")
def advise_command(
    protocol: Annotated[str, typer.Option("--protocol", help="raft, pbft, hotstuff, casper or hrb (hrb: --sim only).")] = "raft",
    sim: Annotated[bool, typer.Option("--sim", help="In the simulator (the default).")] = False,
    real: Annotated[bool, typer.Option("--real", help="With 'quorate bench real' runs (fsync on).")] = False,
    nodes: Annotated[int | None, typer.Option("--nodes", help="Nodes (3 for raft, 4 for BFT, 16 for hrb).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Runs per setting (the noise estimate).")] = 3,
    duration: Annotated[float, typer.Option("--duration", help="Seconds per run (simulated seconds with --sim).")] = 3.0,
    clients: Annotated[int, typer.Option("--clients", help="Closed-loop client sessions.")] = 64,
    base_port: Annotated[int, typer.Option("--base-port")] = 17701,
    option: Annotated[list[str] | None, typer.Option("--option", help="Starting setting KEY=VALUE (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Try batch size, pipeline window, storage engine, MACs... one at a time;
    keep a change only if it beats the noise of repeated runs."""
    from quorate.bench.advisor import (
        Trial,
        advise,
        hrb_allows,
        hrb_measure,
        real_measure,
        sim_measure,
    )

    if sim and real:
        raise fail("choose --sim or --real, not both")
    n = nodes if nodes is not None else {"raft": 3, "hrb": 16}.get(protocol, 4)
    if n < 1 or duration <= 0 or clients < 1:
        raise fail("--nodes and --clients must be >= 1 and --duration > 0")
    allowed = None
    if protocol == "hrb" and not real:
        if n < 4:
            raise fail(f"hrb needs at least 4 nodes (one shard of 3f + 1), got {n}")
        measure = hrb_measure(n, agents=clients, duration_s=duration)
        allowed = hrb_allows(n)
    elif real:
        measure = real_measure(protocol, n, duration, clients, base_port)
    else:
        measure = sim_measure(protocol, n, clients=clients, duration_s=duration)

    def progress(trial: Trial) -> None:
        label = f"{trial.knob}={trial.value}" if trial.knob else "current settings"
        _say(f"  {label:<28} ops/s {[r['throughput_ops'] for r in trial.runs]}")

    try:
        advice = advise(
            protocol, measure, real=real, repeats=repeats, start=parse_options(option or []), progress=progress,
            allowed=allowed,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    report = advice.to_json()
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"baseline: median {report['baseline']['median_ops']:,.0f} ops/s, p99 {report['baseline']['median_p99_ms']} ms")
    for t in report["trials"]:
        typer.echo(f"{'KEEP' if t['kept'] else 'drop'} {t['knob']}={t['value']}: {t['reason']}")
    flags = " ".join(report["recommended_flags"]) or "(the defaults)"
    typer.echo(f"recommended for {protocol}: {flags}")


@bench_app.command("recommend")
def recommend_command(
    faults: Annotated[str, typer.Option("--faults", help="crash or byzantine.")] = "crash",
    nodes: Annotated[int, typer.Option("--nodes", help="How many nodes you will run.")] = 3,
    regions: Annotated[int, typer.Option("--regions", help="Regions (50 ms apart).")] = 1,
    max_latency_ms: Annotated[float, typer.Option("--max-latency-ms", help="p99 bound.")] = 100.0,
    min_throughput: Annotated[float, typer.Option("--min-throughput", help="Operations per second needed.")] = 1000.0,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    protocols: Annotated[
        str, typer.Option("--protocols", help="Candidates (default all: raft,pbft,hotstuff,casper,hrb).")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recommend a protocol for stated requirements, from measured runs of
    every protocol that fits."""
    from quorate.bench.recommend import CANDIDATES, Requirements, recommend_protocol

    candidates = _protocols(protocols) or list(CANDIDATES)
    unknown = [p for p in candidates if p not in CANDIDATES]
    if unknown:
        raise fail(f"unknown protocol {unknown[0]!r}; choose from {', '.join(CANDIDATES)}")
    try:
        requirements = Requirements(faults, nodes, regions, max_latency_ms, min_throughput).validate()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    result = recommend_protocol(requirements, seed=seed, progress=_step_line, candidates=candidates)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for row in result["candidates"]:
            mark = "*" if row["protocol"] == result["recommendation"] else " "
            typer.echo(f"{mark} {row['protocol']:<8} {row['why']}")
            if "note" in row:
                typer.echo(f"  {'':<8} {row['note']}")
        choice = result["recommendation"]
        typer.echo(f"recommendation: {choice}" if choice else "recommendation: none of the protocols meets these requirements")
    if result["recommendation"] is None:
        raise typer.Exit(1)
