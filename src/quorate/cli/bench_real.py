"""``quorate bench real``: puts against a local cluster of real processes
(see ``quorate.bench.real``), optionally side by side with etcd
(``--compare etcd``, see ``quorate.bench.etcd``); a table for people,
``--json`` for machines."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from quorate.bench.puts import RealBenchConfig
from quorate.bench.real import compare_with_etcd, run_real_bench
from quorate.bench.real_multiraft import compare_multiraft
from quorate.cli.main import bench_app, fail, parse_options
from quorate.errors import ConfigError
from quorate.multiraft.messages import MULTIRAFT
from quorate.runtime.aio.config import STORAGE_KINDS
from quorate.runtime.aio.multiraft import RangeLayout

COMPARABLE_SYSTEMS = ("etcd",)


def _echo_run(name: str, report: dict[str, Any]) -> None:
    if "error" in report:
        typer.echo(f"{name:<8} unavailable: {report['error']}")
        return
    lat = report["latency_ms"]
    if lat.get("p50") is None:
        latency = "no put completed"
    else:
        latency = "  ".join(f"{q} {lat[q]} ms" for q in ("p50", "p90", "p99", "max"))
    typer.echo(
        f"{name:<8} {report['throughput_ops']:>10} puts/s  {latency}  errors {report['errors']}"
    )
    typer.echo(
        f"{'':<8} CPU s/node {report['cpu_s_per_node']}   "
        f"clients {report['cpu_s_per_client_process']}"
    )
    host = report.get("host_cpu", {})
    if "busy_s" in host:
        typer.echo(
            f"{'':<8} host: {host['busy_s']} of {host['available_s']} CPU-s busy "
            f"({host['cores']} cores), ours {host['ours_s']}, others {host['others_s']}"
        )


@bench_app.command("real")
def bench_real_command(
    protocol: Annotated[str, typer.Option("--protocol")] = "raft",
    nodes: Annotated[int, typer.Option("--nodes")] = 3,
    clients: Annotated[int, typer.Option("--clients", help="Concurrent client sessions.")] = 64,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of load.")] = 10.0,
    value_size: Annotated[int, typer.Option("--value-size", help="Bytes per value.")] = 100,
    client_processes: Annotated[int, typer.Option("--client-processes")] = 2,
    base_port: Annotated[int, typer.Option("--base-port")] = 17501,
    storage: Annotated[
        str, typer.Option("--storage", help=f"Node storage engine: {' or '.join(STORAGE_KINDS)}.")
    ] = "sqlite",
    compare: Annotated[
        str | None,
        typer.Option("--compare", help="Also run etcd with the same clients (installs it if missing)."),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="Protocol option for every node, KEY=VALUE (repeatable), e.g. authentication=macs.",
        ),
    ] = None,
    groups: Annotated[
        int,
        typer.Option("--groups", help="--protocol multiraft: range groups (the single-group Raft run comes first)."),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Throughput and latency of puts on real node processes with fsync."""
    if protocol == MULTIRAFT:
        if compare is not None:
            raise fail("--protocol multiraft compares with a single Raft group itself; drop --compare")
        try:
            RangeLayout(groups, min(3, nodes)).validate(nodes)
        except ConfigError as exc:
            raise fail(f"--groups: {exc}") from None
    elif groups:
        raise fail("--groups is for --protocol multiraft")
    if nodes < 1 or clients < 1 or duration <= 0 or value_size < 0 or client_processes < 1:
        raise fail("--nodes, --clients, --client-processes >= 1; --duration > 0; --value-size >= 0")
    if storage not in STORAGE_KINDS:
        raise fail(f"--storage takes one of {', '.join(STORAGE_KINDS)}, got {storage!r}")
    if compare is not None and compare not in COMPARABLE_SYSTEMS:
        raise fail(f"--compare takes one of {', '.join(COMPARABLE_SYSTEMS)}, got {compare!r}")
    config = RealBenchConfig(
        protocol,
        nodes,
        clients,
        duration,
        value_size,
        client_processes,
        base_port,
        storage,
        parse_options(option or []),
    )
    if protocol == MULTIRAFT:
        report = compare_multiraft(config, groups)
        if as_json:
            typer.echo(json.dumps(report))
            return
        typer.echo(f"{nodes} nodes, {clients} clients, {value_size} B values, {storage} storage, fsync on")
        _echo_run("1 group", report["single_group"])
        _echo_run(f"{groups} rng", report["multiraft"])
        r = report["ratio"]
        typer.echo(f"multi-Raft / one group: throughput x{r['throughput']}  p50 x{r['p50']}  p99 x{r['p99']}")
        return
    report = compare_with_etcd(config) if compare else run_real_bench(config)
    if as_json:
        typer.echo(json.dumps(report))
        return
    ours = report["quorate"] if compare else report
    typer.echo(
        f"{protocol} x{nodes}, {clients} clients ({ours['client_processes']} processes), "
        f"{value_size} B values, {storage} storage, fsync on"
    )
    _echo_run("quorate", ours)
    if compare:
        _echo_run("etcd", report["etcd"])
        if "ratio" in report:
            r = report["ratio"]
            typer.echo(
                f"ours/etcd throughput x{r['throughput']}  p50 x{r['p50']}  p99 x{r['p99']}"
            )
