"""``quorate bench sim``: how fast the simulator runs, and the CPU cost model.

Measures, in one process: a bare heapq loop (the ceiling), the simulator on a
51-node, 3-region, 1,000-client run, and the per-message CPU cost of decode +
step that the simulator's ``CostModel`` charges by default. ``--json`` prints
one machine-readable object; otherwise a table for people.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail
from quorate.errors import ConfigError


@bench_app.command("sim")
def bench_sim_command(
    protocol: str = typer.Option("raft", "--protocol", help="Protocol of the simulated run."),
    duration: float = typer.Option(4.0, "--duration", help="Simulated seconds of the run."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Simulator events/s (vs a bare heapq loop) and the cost-model figures."""
    if not duration > 0:
        raise fail("need --duration > 0")
    from quorate.bench.sim import report

    try:
        result = report(protocol=protocol, duration_s=duration)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result))
        return
    sim = result["simulator"]
    table = Table(
        title=f"simulator: {sim['protocol']}, {sim['nodes']} nodes, {sim['clients']} clients"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("bare heapq loop, events/s", f"{result['bare_heapq_events_per_second']:,.0f}")
    table.add_row("simulator, events/s", f"{sim['events_per_second']:,.0f}")
    table.add_row("simulator / bare", f"{result['simulator_over_bare']:.3f}")
    table.add_row("events", f"{sim['events']:,}")
    table.add_row("committed ops", f"{sim['committed_ops']:,}")
    for name, value in result["cost_model"].items():
        table.add_row(f"cost model: {name}", f"{value:.4g}")
    Console().print(table)
