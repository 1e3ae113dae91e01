"""``quorate bench bft``: PBFT and HotStuff in the simulator.

Without ``--flood``: throughput and latency for n = 4, 16, 64, 128 in one
region and in three regions 50 ms apart (``quorate.bench.bft.scaling``; the
simulated durations shrink with n, see ``SCALING_DURATION_S``). With
``--flood``: honest-client p99 with a flooding replica, with and without
per-peer rate limits, against no flood (``quorate.bench.bft.flooding``).
With ``--byzantine``: committed operations with f Byzantine replicas of each
behaviour against the fault-free run of the same seed, n = 4, 7, 10, both
protocols, and whether the ratio meets (n - f) / n x 0.8
(``quorate.bench.bft.byzantine``; ``--seeds``, ``--duration``).
``--json`` prints one JSON object as the last line; a progress bar goes to
stderr when it is a terminal.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable

import typer
from rich import box
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


def _sizes(sizes: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if sizes is None:
        return default
    try:
        ns = tuple(int(x) for x in sizes.split(",") if x.strip())
    except ValueError:
        raise fail(f"--sizes wants comma-separated integers, got {sizes!r}") from None
    if not ns or min(ns) < 4:
        raise fail("--sizes needs cluster sizes >= 4")
    return ns


@bench_app.command("bft")
def bench_bft_command(
    flood: bool = typer.Option(False, "--flood", help="Measure flooding with and without rate limits."),
    byzantine: bool = typer.Option(
        False, "--byzantine", help="Throughput with f Byzantine replicas against the fault-free run of the same seed."
    ),
    sizes: str | None = typer.Option(
        None, "--sizes", help="Cluster sizes (default 4,16,64,128; with --byzantine 4,7,10)."
    ),
    seeds: int = typer.Option(0, "--seeds", help="--byzantine: seeds per size (default 2)."),
    duration: float = typer.Option(0.0, "--duration", help="--byzantine: simulated seconds per run (default 20)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Simulated PBFT/HotStuff throughput and latency, the flooding test, or Byzantine throughput."""
    from quorate.bench import bft

    if flood and byzantine:
        raise fail("--flood and --byzantine are two different benchmarks; pick one")
    if not byzantine and (seeds or duration):
        raise fail("--seeds and --duration go with --byzantine")
    if seeds < 0 or not 0 <= duration < math.inf:
        raise fail("--seeds and --duration must be positive")
    try:
        if flood:
            step, stop = _progress(4)
            try:
                report: dict[str, object] = {"flooding": bft.flooding(step)}
            finally:
                stop()
        elif byzantine:
            ns = _sizes(sizes, bft.BYZANTINE_SIZES)
            seed_count = seeds or bft.BYZANTINE_SEEDS
            runs = sum(1 + len(bft.BYZANTINE_BEHAVIOURS[p]) for p in bft.SCALING_PROTOCOLS)
            step, stop = _progress(len(ns) * seed_count * runs)
            try:
                report = {
                    "byzantine": bft.byzantine(
                        ns, seeds=seed_count, duration_s=duration or bft.BYZANTINE_DURATION_S, progress=step
                    )
                }
            finally:
                stop()
        else:
            ns = _sizes(sizes, bft.SCALING_SIZES)
            step, stop = _progress(len(ns) * 2 * len(bft.SCALING_PROTOCOLS))
            try:
                report = {"scaling": bft.scaling(ns, progress=step)}
            finally:
                stop()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report))
        if byzantine and not _byzantine_ok(report):
            raise typer.Exit(1)
        return
    console = Console()
    if byzantine:
        _print_byzantine(console, report)
        if not _byzantine_ok(report):
            raise typer.Exit(1)
        return
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


def _byzantine_ok(report: dict[str, object]) -> bool:
    """A safety violation fails the command; a missed throughput target does not
    (it is a measurement, reported in ``target_met``)."""
    result = report["byzantine"]
    assert isinstance(result, dict)
    return bool(result["safety_violations"] == 0)


def _print_byzantine(console: Console, report: dict[str, object]) -> None:
    result = report["byzantine"]
    assert isinstance(result, dict)
    table = Table(
        title=f"f Byzantine replicas vs fault-free, same seed ({result['duration_s']:g} s simulated)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        show_edge=False,
    )
    for col in ("protocol", "n", "behaviour", "seed", "healthy", "faulty", "ratio", "target", "met"):
        table.add_column(col, justify="left" if col in ("protocol", "behaviour") else "right", no_wrap=True)
    for row in result["rows"]:
        table.add_row(
            row["protocol"], str(row["nodes"]), row["behaviour"], str(row["seed"]),
            f"{row['fault_free_ops']:,}", f"{row['committed_ops']:,}", f"{row['ratio']:.3f}",
            f"{row['target_ratio']:.3f}", "yes" if row["target_met"] else "NO",
        )
    console.print(table)
    console.print(
        f"committed ops, {result['clients']} closed-loop clients; target: ratio >= (n - f) / n x "
        f"{result['target_fraction']}; met everywhere: {'yes' if result['target_met'] else 'no'}; "
        f"safety violations: {result['safety_violations']}"
    )
