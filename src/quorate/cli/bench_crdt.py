"""``quorate bench crdt-trace``: replay an editing trace through the text CRDT.

Reads a ``.json`` or ``.json.gz`` trace in the editing-traces format (sequential,
or ``"kind": "concurrent"`` with agents and parents), replays it with one CRDT
operation per edit and reports CPU time, encoded size, load time, peak memory
and merge times; ``--compare pycrdt`` replays it through pycrdt too and adds
the CPU ratio (ours / pycrdt). ``--json`` prints one object; otherwise a table.
"""

from __future__ import annotations

import json
import pathlib
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from quorate.bench.crdt_trace import run
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
) -> None:
    """Replay an editing trace through quorate's text CRDT and time it."""
    try:
        report = run(file, compare=compare, memory=memory)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report))
        return
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
    for key, value in report.get("merge", {}).items():
        table.add_row(f"merge {key}", str(value), *([""] if has_pycrdt else []))
    if "ratio" in report:
        table.add_row("cpu ratio ours/pycrdt", str(report["ratio"]), "")
    Console().print(table)
