"""``quorate bench storage``: group commit across groups, and recovery time.

For each disk engine: one group's batch, 64 groups' batches in one
``persist_many`` (one fsync) and the same 64 as separate persists, then the
time to reopen a store of 1,000 groups and recover them all. ``--json``
prints one machine-readable object; otherwise tables for people.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail
from quorate.storage.engines import ENGINES


@bench_app.command("storage")
def bench_storage_command(
    engine: str = typer.Option("all", "--engine", help=f"{' or '.join(ENGINES)} or all."),
    groups: int = typer.Option(64, "--groups", help="Groups written per persist_many."),
    entries: int = typer.Option(4, "--entries", help="Entries per group per batch."),
    value_size: int = typer.Option(128, "--value-size", help="Bytes per entry."),
    samples: int = typer.Option(20, "--samples", help="Timed samples per measure (median)."),
    recover_groups: int = typer.Option(
        1000, "--recover-groups", help="Groups in the store recovery reopens."
    ),
    recover_entries: int = typer.Option(
        10, "--recover-entries", help="Entries per group in that store."
    ),
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the files go (its filesystem is what is measured)."),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """persist_many of many groups vs one group vs separate persists; recovery of many groups."""
    if engine != "all" and engine not in ENGINES:
        raise fail(f"--engine takes {', '.join(ENGINES)} or all, got {engine!r}")
    for flag, value, least in (
        ("--groups", groups, 1),
        ("--entries", entries, 1),
        ("--value-size", value_size, 0),
        ("--samples", samples, 1),
        ("--recover-groups", recover_groups, 1),
        ("--recover-entries", recover_entries, 0),
    ):
        if value < least:
            raise fail(f"need {flag} >= {least}, got {value}")
    if directory is not None and not directory.is_dir():
        raise fail(f"--dir {directory} is not a directory")
    from quorate.bench.storage import report

    result = report(
        engines=ENGINES if engine == "all" else (engine,),
        groups=groups,
        entries=entries,
        value_bytes=value_size,
        samples=samples,
        recover_groups=recover_groups,
        recover_entries=recover_entries,
        directory=directory,
    )
    if as_json:
        typer.echo(json.dumps(result))
        return
    console = Console()
    commit = Table(
        title=(
            f"group commit: {groups} groups × {entries} entries of {value_size} B "
            f"(median of {samples}, ms)"
        )
    )
    for column in ("engine", "1 group", f"{groups} in 1 persist_many", f"{groups} separate"):
        commit.add_column(column, justify="right")
    commit.add_column("many / one", justify="right")
    commit.add_column("separate / many", justify="right")
    recovery = Table(title=f"recovery: {recover_groups} groups × {recover_entries} entries (ms)")
    for column in ("engine", "open", "recover all", "per group (µs)"):
        recovery.add_column(column, justify="right")
    for name, figures in result["engines"].items():
        g = figures["group_commit"]
        commit.add_row(
            name,
            f"{g['one_group_ms']['median']:.2f}",
            f"{g['persist_many_ms']['median']:.2f}",
            f"{g['separate_persists_ms']['median']:.1f}",
            f"{g['persist_many_over_one_group']:.2f}",
            f"{g['separate_over_persist_many']:.1f}",
        )
        r = figures["recovery"]
        recovery.add_row(
            name,
            f"{r['open_ms']:.1f}",
            f"{r['recover_all_groups_ms']:.1f}",
            f"{r['per_group_us']:.0f}",
        )
    console.print(commit)
    console.print(recovery)
