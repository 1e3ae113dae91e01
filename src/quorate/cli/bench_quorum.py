"""``quorate bench quorum``: the quorum manager in the simulator.

Commit latency with a static voter set against the network strategy,
availability through a region outage with the fault-tolerance strategy
against a static set, and how long the network strategy takes to replace a
degraded leader (``quorate.bench.quorum``). ``--json`` prints one JSON
object as the last line; a table otherwise.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail


def _progress(total: int) -> tuple[Callable[[str], None] | None, Callable[[], None]]:
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("bench quorum"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("", total=total)
    bar.start()
    return lambda done: bar.update(task, advance=1, description=done), bar.stop


@bench_app.command("quorum")
def bench_quorum_command(
    seeds: str = typer.Option("1,2,3", "--seeds", help="Simulator seeds (figures are medians over them)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Simulated Raft, 9 nodes over 3 regions: what the quorum manager buys."""
    from quorate.bench import quorum

    try:
        chosen = tuple(int(x) for x in seeds.split(",") if x.strip())
    except ValueError:
        raise fail(f"--seeds wants comma-separated integers, got {seeds!r}") from None
    if not chosen:
        raise fail("--seeds needs at least one seed")
    step, stop = _progress(len(chosen) * 6)
    try:
        report = quorum.report(chosen, step)
    finally:
        stop()
    if as_json:
        typer.echo(json.dumps(report))
        return
    console = Console()
    lat = report["latency"]
    table = Table(title="commit latency, clients in region 0 (medians over seeds)")
    for col in ("voters", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    table.add_row("static (all 9 vote)", str(lat["static"]["p50_ms"]), str(lat["static"]["p99_ms"]))
    table.add_row("network strategy", str(lat["network"]["p50_ms"]), str(lat["network"]["p99_ms"]))
    console.print(table)
    console.print(f"ratio network/static: p50 {lat['p50_ratio']}, p99 {lat['p99_ratio']}")
    out = report["region_outage"]
    table = Table(title=f"region 0 down from {out['outage_s'][0]} to {out['outage_s'][1]} s")
    for col in ("voters", "availability", "ok ops in outage"):
        table.add_column(col, justify="right")
    table.add_row(f"static {out['static_voters']}", str(out["static"]["availability"]), str(out["static"]["ok_ops_during_outage"]))
    table.add_row(
        "fault-tolerance strategy",
        str(out["fault_tolerance"]["availability"]),
        str(out["fault_tolerance"]["ok_ops_during_outage"]),
    )
    console.print(table)
    deg = report["degradation"]
    console.print(
        f"leader CPU x{deg['cpu_factor']:g} slower at {deg['degrade_at_s']} s ({deg['strategy']}): replaced after "
        f"{deg['decided_after_s']} s, new configuration in force after {deg['converged_after_s']} s; "
        f"p50 {deg['p50_before_ms']} -> {deg['p50_degraded_ms']} -> {deg['p50_after_ms']} ms"
    )
