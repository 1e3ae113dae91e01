"""``quorate bench idle``: what idle groups cost.

With ``--sim``: 1,000 nodes hosting 10,000 quiescing multi-Raft groups
against 1,000 nodes in one Raft group without quiescence, both idle for 60
simulated seconds by default (``quorate.bench.idle``). Without it: real
node processes on this machine (``quorate.bench.real_multiraft.idle_real``),
``--nodes`` nodes hosting ``--groups`` ranges against the same nodes in one
Raft group, each idle for ``--duration`` seconds: CPU per node and peer
messages per second. ``--json`` prints one object.
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
    nodes: int = typer.Option(None, "--nodes", help="Nodes of both clusters [default: 1000 with --sim, else 3]."),
    groups: int = typer.Option(None, "--groups", help="Range groups the first cluster hosts [default: 10000 with --sim, else 1000]."),
    replicas: int = typer.Option(3, "--replicas", help="Replicas of each range group (--sim)."),
    duration: float = typer.Option(None, "--duration", help="Seconds idle [default: 60 simulated with --sim, else 20]."),
    base_port: int = typer.Option(17601, "--base-port", help="Real nodes: first node's port."),
    seed: int = typer.Option(1, "--seed", help="Seed of both runs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Events of an idle cluster hosting many quiesced groups vs one group per node."""
    if not sim:
        _real(3 if nodes is None else nodes, 1000 if groups is None else groups, 20.0 if duration is None else duration, base_port, as_json)
        return
    nodes = 1000 if nodes is None else nodes
    groups = 10_000 if groups is None else groups
    duration = 60.0 if duration is None else duration
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


def _real(nodes: int, groups: int, duration: float, base_port: int, as_json: bool) -> None:
    """Idle real processes: ``groups`` ranges against one Raft group."""
    if nodes < 1 or groups < 1 or not duration > 0:
        raise fail("--nodes and --groups must be >= 1 and --duration > 0")
    from quorate.bench.real_multiraft import idle_real
    from quorate.runtime.aio.multiraft import RangeLayout

    try:
        RangeLayout(groups, min(3, nodes)).validate(nodes)
        report = idle_real(nodes=nodes, groups=groups, duration_s=duration, base_port=base_port)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except TimeoutError as exc:
        raise fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps(report))
        return
    for name, label in (("hosted", f"{groups} ranges, quiescence"), ("single", "one Raft group")):
        part = report[name]
        typer.echo(
            f"{label:<26} CPU % of a core per node {part['cpu_percent_per_node']}  "
            f"messages/s {part['messages_per_second']}"
        )
