"""``quorate bench idle --sim``: the event cost of idle groups in the simulator.

1,000 nodes hosting 10,000 quiescing multi-Raft groups against 1,000 nodes
in one Raft group without quiescence, both idle for 60 simulated seconds by
default (``quorate.bench.idle``). ``--json`` prints one object. Only the
simulator's measurement is here: without ``--sim`` the command says so and
exits 2.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail
from quorate.errors import ConfigError


@bench_app.command("idle")
def bench_idle_command(
    sim: bool = typer.Option(False, "--sim", help="Measure in the simulator (events of idle clusters)."),
    nodes: int = typer.Option(1000, "--nodes", help="Nodes of both clusters."),
    groups: int = typer.Option(10_000, "--groups", help="Range groups the first cluster hosts."),
    replicas: int = typer.Option(3, "--replicas", help="Replicas of each range group."),
    duration: float = typer.Option(60.0, "--duration", help="Simulated seconds idle."),
    seed: int = typer.Option(1, "--seed", help="Seed of both runs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Events of an idle cluster hosting many quiesced groups vs one group per node."""
    if not sim:
        raise fail("only the simulator's idle benchmark is available here: pass --sim")
    from quorate.bench.idle import idle_report

    try:
        report = idle_report(nodes=nodes, groups=groups, replicas=replicas, duration_s=duration, seed=seed)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table(title=f"idle for {duration:g} simulated s, {nodes} nodes")
    table.add_column("cluster")
    table.add_column("groups", justify="right")
    table.add_column("events", justify="right")
    table.add_column("messages", justify="right")
    table.add_column("wall s", justify="right")
    for name, label in (("hosted", "many groups, quiescence"), ("single", "one group, no quiescence")):
        part = report[name]
        table.add_row(label, f"{part['groups']:,}", f"{part['events']:,}", f"{part['messages_sent']:,}", f"{part['wall_seconds']:.1f}")
    Console().print(table)
    typer.echo(f"events, many / one: {report['hosted_over_single_events']}")
