"""``quorate bench crdt-trace``: replay an editing trace through the text CRDT.

Reads a ``.json`` or ``.json.gz`` trace in the editing-traces format (sequential,
or ``"kind": "concurrent"`` with agents and parents), replays it with one CRDT
operation per edit and reports CPU time (median of ``--repeat`` runs), encoded
size, load time, peak memory and merge times; ``--compare pycrdt`` replays it
through pycrdt too and adds the CPU ratio (ours / pycrdt). ``--fork N`` forks a
sequential trace into a concurrent one of N users (seeded by ``--seed``,
written out by ``--write-trace``) and replays both in the same run. ``--json``
prints one object; otherwise a table. A bad file or flag exits 2 with one line.
"""

from __future__ import annotations

import json
import pathlib
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from quorate.bench.crdt_trace import DEFAULT_REPEAT, run
from quorate.bench.trace_fork import ForkSettings
from quorate.cli.main import bench_app, fail
from quorate.errors import ConfigError


@bench_app.command("crdt-trace")
def bench_crdt_trace_command(
    file: Annotated[pathlib.Path, typer.Argument(help="Trace file (.json or .json.gz).")],
    compare: str | None = typer.Option(None, "--compare", help="Also replay through: pycrdt."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    memory: bool = typer.Option(
        True, "--memory/--no-memory", help="Measure peak memory (an extra traced replay)."
    ),
    fork: int = typer.Option(
        0, "--fork", help="Fork the sequential trace into a concurrent one of this many users."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of --fork."),
    write_trace: Annotated[
        pathlib.Path | None,
        typer.Option("--write-trace", help="Write the forked trace here (.json or .json.gz)."),
    ] = None,
    repeat: int = typer.Option(DEFAULT_REPEAT, "--repeat", help="Timed replays (median)."),
) -> None:
    """Replay an editing trace through quorate's text CRDT and time it."""
    try:
        settings = ForkSettings(agents=fork, seed=seed).validate() if fork else None
        report = run(
            file,
            compare=compare,
            memory=memory,
            fork=settings,
            write_trace=write_trace,
            repeat=repeat,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_table(report)
    if not report["final_text_matches"]:
        raise typer.Exit(1)


def _print_table(report: dict[str, Any]) -> None:
    table = Table(title=f"crdt-trace {report['file']} ({report['kind']})")
    table.add_column("figure")
    table.add_column("quorate", justify="right")
    has_pycrdt = "pycrdt" in report
    if has_pycrdt:
        table.add_column("pycrdt", justify="right")
    theirs = report.get("pycrdt", {})
    for key in (
        "edits",
        "cpu_seconds",
        "edits_per_second",
        "encoded_bytes",
        "load_seconds",
        "peak_memory_mb",
        "final_text_matches",
    ):
        if key not in report:
            continue
        row = [key, str(report[key])]
        if has_pycrdt:
            row.append(str(theirs.get(key, "")))
        table.add_row(*row)
    extra = [""] if has_pycrdt else []
    for key in ("transactions", "agents", "merges", "max_parents", "cursor_moves"):
        if key in report:
            table.add_row(key, str(report[key]), *extra)
    for key, value in report.get("merge", {}).items():
        table.add_row(f"merge {key}", str(value), *extra)
    if "sequential" in report:
        seq = report["sequential"]
        table.add_row("sequential source: edits/s", str(seq["edits_per_second"]), *extra)
        table.add_row(
            "concurrent/sequential edits/s", str(report.get("concurrent_vs_sequential")), *extra
        )
    if "ratio" in report:
        table.add_row("cpu ratio ours/pycrdt", str(report["ratio"]), "")
    Console().print(table)
