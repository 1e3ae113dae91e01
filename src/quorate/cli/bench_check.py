"""``quorate bench check``: how fast is the linearizability checker?

Generates a seeded, linearizable history from clients of a simulated atomic
register (``quorate.check.simulate_register_history``), checks it and reports
operations, keys, generation and check time and the verdict. ``--json`` prints
one machine-readable object; otherwise a table for people.
"""

from __future__ import annotations

import json
import random
import time

import typer
from rich.console import Console
from rich.table import Table

from quorate.check import check_history, simulate_register_history
from quorate.cli.main import bench_app, fail

BENCH_TIMEOUT_S = 600.0
"""The checker's time limit in the benchmark; a verdict of unknown means too slow."""


@bench_app.command("check")
def bench_check_command(
    ops: int = typer.Option(10_000, "--ops", help="Operations in the history."),
    keys: int = typer.Option(100, "--keys", help="Registers (keys) they act on."),
    processes: int = typer.Option(20, "--processes", help="Concurrent clients."),
    values: int = typer.Option(5, "--values", help="Distinct values written (fewer is harder)."),
    seed: int = typer.Option(1, "--seed", help="Seed of the generated history."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check a generated linearizable history and time the checker."""
    if ops < 0 or keys < 1 or processes < 1 or values < 1:
        raise fail("need --ops >= 0, --keys >= 1, --processes >= 1 and --values >= 1")
    started = time.perf_counter()
    events = simulate_register_history(random.Random(seed), ops, keys, processes, values)
    generate_s = time.perf_counter() - started
    result = check_history(events, timeout_s=BENCH_TIMEOUT_S, clock=time.perf_counter)
    report = {
        "benchmark": "check",
        "ops": ops,
        "keys": keys,
        "processes": processes,
        "values": values,
        "seed": seed,
        "events": len(events),
        "generate_s": round(generate_s, 6),
        "check_s": round(result.elapsed_s, 6),
        "ops_per_s": round(ops / result.elapsed_s) if result.elapsed_s > 0 else None,
        "verdict": result.verdict,
    }
    if as_json:
        typer.echo(json.dumps(report))
    else:
        table = Table(title=f"linearizability check (seed {seed})")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for name, value in report.items():
            if name != "benchmark":
                table.add_row(name, str(value))
        Console().print(table)
    if result.verdict != "linearizable":
        # A generated history is linearizable by construction: anything else is a bug.
        raise typer.Exit(1)
