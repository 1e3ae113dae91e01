"""``quorate bench bft``: PBFT and HotStuff in the simulator.

Without ``--flood``: throughput and latency for n = 4, 16, 64, 128 in one
region and in three regions 50 ms apart (``quorate.bench.bft.scaling``; the
simulated durations shrink with n, see ``SCALING_DURATION_S``). With
``--flood``: honest-client p99 with a flooding replica, with and without
per-peer rate limits, against no flood (``quorate.bench.bft.flooding``).
``--json`` prints one JSON object as the last line; a progress bar goes to
stderr when it is a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail, shown
from quorate.errors import ConfigError


def _progress(total: int) -> tuple[Callable[[str], None] | None, Callable[[], None]]:
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("bench bft"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("", total=total)
    bar.start()

    def step(done: str) -> None:
        bar.update(task, advance=1, description=done)

    return step, bar.stop


@bench_app.command("bft")
def bench_bft_command(
    flood: bool = typer.Option(False, "--flood", help="Measure flooding with and without rate limits."),
    sizes: str = typer.Option("4,16,64,128", "--sizes", help="Cluster sizes of the scaling curve."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Simulated PBFT/HotStuff throughput and latency, or the flooding test."""
    from quorate.bench import bft

    try:
        if flood:
            step, stop = _progress(4)
            try:
                report: dict[str, object] = {"flooding": bft.flooding(step)}
            finally:
                stop()
        else:
            try:
                ns = tuple(int(x) for x in sizes.split(",") if x.strip())
            except ValueError:
                raise fail(f"--sizes wants comma-separated integers, got {sizes!r}") from None
            if not ns or min(ns) < 4:
                raise fail("--sizes needs cluster sizes >= 4")
            step, stop = _progress(len(ns) * 2 * len(bft.SCALING_PROTOCOLS))
            try:
                report = {"scaling": bft.scaling(ns, progress=step)}
            finally:
                stop()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report))
        return
    console = Console()
    if flood:
        result = report["flooding"]
        assert isinstance(result, dict)
        table = Table(title=f"PBFT n=4, flood x{result['flood_copies']}, limit {result['rate_limit_msgs_per_s']:g} msgs/s/peer")
        table.add_column("case")
        table.add_column("p99 ms", justify="right")
        table.add_column("ops/s", justify="right")
        for name in ("no_flood", "flood_no_limit", "flood_rate_limited", "no_flood_rate_limited"):
            row = result[name]
            table.add_row(name, str(row["latency_ms"]["p99"]), f"{row['throughput_ops']:,.0f}")
        console.print(table)
        console.print(
            f"ratio flood/no flood: {result.get('ratio_flood_no_limit')}; "
            f"with rate limits: {result.get('ratio_flood_rate_limited')}"
        )
        return
    rows = report["scaling"]
    assert isinstance(rows, list)
    table = Table(title="simulated BFT scaling (cost-model Ed25519)")
    for col in ("protocol", "n", "regions", "ops/s", "p50 ms", "p99 ms", "sim s", "wall s"):
        table.add_column(col, justify="right")
    for row in rows:
        lat = row["latency_ms"]
        table.add_row(
            row["protocol"], str(row["nodes"]), str(row["regions"]), f"{row['throughput_ops']:,.0f}",
            shown(lat["p50"]), shown(lat["p99"]), str(row["sim_seconds_of_load"]), f"{row['wall_seconds']:.1f}",
        )
    console.print(table)
