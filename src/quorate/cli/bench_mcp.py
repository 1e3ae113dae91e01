"""``quorate bench mcp``: memory_usage store/retrieve p50/p99 through
``quorate mcp`` over stdio against its embedded 3-node cluster, beside a
local SQLite insert with fsync in the same run; tasks claimed and completed
per second (``quorate.bench.mcp``). ``--json`` prints one object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from quorate.cli.main import bench_app, fail, missing_module, missing_package


@bench_app.command("mcp")
def bench_mcp_command(
    calls: int = typer.Option(200, "--calls", help="Timed store calls (and as many retrieves)."),
    tasks: int = typer.Option(100, "--tasks", help="Tasks claimed and completed."),
    value_size: int = typer.Option(256, "--value-size", help="Bytes per stored value."),
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where the cluster and the SQLite file go (its disk is measured).")
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """MCP memory and tasks against the embedded cluster, beside local SQLite with fsync."""
    for flag, value, least in (("--calls", calls, 1), ("--tasks", tasks, 1), ("--value-size", value_size, 1)):
        if value < least:
            raise fail(f"need {flag} >= {least}, got {value}")
    if directory is not None and not directory.is_dir():
        raise fail(f"--dir {directory} is not a directory")
    try:
        from quorate.bench.mcp import report
    except ImportError as exc:
        if missing_package(exc) is None:
            raise
        raise fail(f"quorate bench mcp needs the MCP SDK: {missing_module(exc)}") from None
    try:
        result = report(calls=calls, tasks=tasks, value_bytes=value_size, directory=directory)
    except RuntimeError as exc:
        raise fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps(result))
        return
    store, retrieve, insert = result["mcp_store_ms"], result["mcp_retrieve_ms"], result["sqlite_insert_fsync_ms"]
    typer.echo(f"{calls} calls of {value_size} B, {result['replicas']} replicas (ms)      p50      p99")
    typer.echo(f"  memory_usage store via MCP          {store['p50']:>8} {store['p99']:>8}")
    typer.echo(f"  memory_usage retrieve via MCP       {retrieve['p50']:>8} {retrieve['p99']:>8}")
    typer.echo(f"  local SQLite insert + fsync         {insert['p50']:>8} {insert['p99']:>8}")
    noop = result["mcp_noop_tool_ms"]
    typer.echo(f"  do-nothing MCP tool (the floor)     {noop['p50']:>8} {noop['p99']:>8}")
    met = "met" if result["target_met"] else "NOT met"
    typer.echo(
        f"store p50 / SQLite p50 = {result['store_p50_over_sqlite_p50']} (target <= {result['target_ratio']:g}: {met})"
    )
    typer.echo(
        f"do-nothing tool p50 / SQLite p50 = {result['noop_p50_over_sqlite_p50']}"
        + ("" if result["target_reachable"] else " (the MCP hop plus one fsync is already over the target)")
    )
    typer.echo(f"store p50 - do-nothing p50 = {result['store_over_floor_ms']} ms (quorate's replicated write)")
    typer.echo(f"tasks claimed + completed: {result['tasks_claimed_completed_per_s']}/s")
    typer.echo(f"(load average over the last minute: {result['load_average_1m']})")
