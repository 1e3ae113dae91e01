"""``quorate bench real``: puts against a local cluster of real processes
(see ``quorate.bench.real``); a table for people, ``--json`` for machines."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from quorate.bench.real import RealBenchConfig, run_real_bench
from quorate.cli.main import bench_app, fail


@bench_app.command("real")
def bench_real_command(
    protocol: Annotated[str, typer.Option("--protocol")] = "raft",
    nodes: Annotated[int, typer.Option("--nodes")] = 3,
    clients: Annotated[int, typer.Option("--clients", help="Concurrent client sessions.")] = 64,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of load.")] = 10.0,
    value_size: Annotated[int, typer.Option("--value-size", help="Bytes per value.")] = 100,
    client_processes: Annotated[int, typer.Option("--client-processes")] = 2,
    base_port: Annotated[int, typer.Option("--base-port")] = 17501,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Throughput and latency of puts on real node processes with fsync."""
    if nodes < 1 or clients < 1 or duration <= 0 or value_size < 0 or client_processes < 1:
        raise fail("--nodes, --clients, --client-processes >= 1; --duration > 0; --value-size >= 0")
    report = run_real_bench(
        RealBenchConfig(protocol, nodes, clients, duration, value_size, client_processes, base_port)
    )
    if as_json:
        typer.echo(json.dumps(report))
        return
    lat = report["latency_ms"]
    typer.echo(
        f"{report['protocol']} x{report['nodes']}, {report['clients']} clients "
        f"({report['client_processes']} processes), {report['value_size']} B values, fsync on"
    )
    typer.echo(f"throughput  {report['throughput_ops']:>10} puts/s   errors {report['errors']}")
    typer.echo(
        f"latency ms  p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}"
    )
    typer.echo(
        f"CPU s/node  {report['cpu_s_per_node']}   clients {report['cpu_s_per_client_process']}"
    )
