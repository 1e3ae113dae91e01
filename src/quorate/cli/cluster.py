"""``quorate cluster up|down|status``: a local cluster of node processes.

Theory of operation: ``up`` writes a cluster directory (configs, a CA and
node certificates unless ``--insecure``; see ``LocalCluster``), starts one OS
process per node, waits until a leader is elected and prints the endpoints.
``down`` stops the processes named by the pid files (SIGTERM, then SIGKILL
after ``--timeout``). ``status`` asks every node for its view (role, term,
leader, commit and applied index; lag = leader's commit index − the node's
applied index) and shows the refusals each node counted and logged. The
membership shown (voters, learners; each node's ``member`` column) is the
leader's configuration, or, with no leader, that of the answering node that
has committed most; a node outside it shows ``-`` (removed, or still joining).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import app, fail
from quorate.client.aio import AsyncClient
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.cluster import (
    DEFAULT_BASE_PORT,
    DEFAULT_STOP_TIMEOUT_S,
    LocalCluster,
    summarize_metrics,
)

DEFAULT_DIRECTORY = Path("quorate-cluster")
LEADER_WAIT_S = 15.0
STATUS_TIMEOUT_S = 1.0

cluster_app = typer.Typer(help="Run a local cluster of node processes.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")

DirOption = Annotated[Path, typer.Option("--dir", help="The cluster directory.")]


@cluster_app.command("up")
def up_command(
    nodes: Annotated[int, typer.Option("--nodes", help="How many nodes.")] = 3,
    directory: DirOption = DEFAULT_DIRECTORY,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plain TCP, no certificates.")
    ] = False,
    base_port: Annotated[
        int, typer.Option("--base-port", help="First node's port.")
    ] = DEFAULT_BASE_PORT,
    election_timeout_s: Annotated[float, typer.Option("--election-timeout-s")] = 1.0,
) -> None:
    """Write configs (and certificates), start every node, wait for a leader."""
    if nodes < 1:
        raise fail(f"--nodes must be at least 1, got {nodes}")
    options = {
        "election_timeout_s": election_timeout_s,
        "heartbeat_interval_s": election_timeout_s / 10,
    }
    try:
        cluster = LocalCluster(
            directory, nodes=nodes, base_port=base_port, insecure=insecure, options=options
        )
        if (directory / "cluster.json").exists():
            existing = LocalCluster.open(directory)
            if any(existing.running(n) for n in existing.ids):
                raise ConfigError(
                    f"a cluster is already running in {directory}; "
                    f"run 'quorate cluster down --dir {directory}' first"
                )
        cluster.write_configs()
        if not insecure and not (cluster.tls_dir and (cluster.tls_dir / "ca.crt").exists()):
            from quorate.cli.demo import make_certs

            make_certs(cluster)
        cluster.start_all()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    leader = asyncio.run(_wait_leader(cluster))
    for node, endpoint in zip(cluster.ids, cluster.endpoints):
        typer.echo(f"{node_name(node)}  {endpoint}  pid {cluster.pid(node)}")
    typer.echo(f"leader: {leader or 'none yet'}")
    typer.echo(f"endpoints: {','.join(cluster.endpoints)}")
    if not insecure:
        typer.echo(f"client TLS directory: {cluster.tls_dir} (certificate 'client')")


async def _wait_leader(cluster: LocalCluster) -> str | None:
    client = _client(cluster)
    try:
        deadline = time.monotonic() + LEADER_WAIT_S
        while time.monotonic() < deadline:
            for status in await client.cluster_status():
                if status is not None and status.role == "leader":
                    return node_name(NodeId(status.node))
            await asyncio.sleep(0.1)
        return None
    finally:
        await client.close()


def _client(cluster: LocalCluster) -> AsyncClient:
    return AsyncClient(
        cluster.endpoints,
        tls=cluster.tls_dir,
        insecure=cluster.insecure,
        timeout_s=STATUS_TIMEOUT_S,
    )


@cluster_app.command("down")
def down_command(
    directory: DirOption = DEFAULT_DIRECTORY,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="Seconds before SIGKILL.")
    ] = DEFAULT_STOP_TIMEOUT_S,
) -> None:
    """Stop every node (SIGTERM, then SIGKILL after --timeout)."""
    try:
        cluster = LocalCluster.open(directory)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    for node, clean in cluster.stop_all(timeout_s).items():
        typer.echo(f"{node_name(node)}: {'stopped' if clean else 'killed (did not stop in time)'}")


@cluster_app.command("status")
def status_command(
    directory: DirOption = DEFAULT_DIRECTORY,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Leader, term, commit index, lag and refusals of every node."""
    try:
        cluster = LocalCluster.open(directory)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    report = asyncio.run(cluster_report(cluster))
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table(title=f"cluster {directory} — leader {report['leader'] or 'unknown'}")
    columns = (
        "node", "pid", "member", "role", "term", "leader", "commit", "applied", "lag", "refusals"
    )
    for column in columns:
        table.add_column(column)
    for row in report["nodes"]:
        table.add_row(
            *(
                str(row.get(c, "") if row.get(c) is not None else "-")
                for c in (
                    "node",
                    "pid",
                    "member",
                    "role",
                    "term",
                    "leader",
                    "commit_index",
                    "applied_index",
                    "lag",
                    "refusals",
                )
            )
        )
    Console().print(table)
    typer.echo(
        f"voters: {' '.join(report['voters']) or '-'}  learners: {' '.join(report['learners']) or '-'}"
    )
    for row in report["nodes"]:
        for message in row["refusals_logged"][-3:]:
            typer.echo(f"{row['node']} log: {message}")


async def cluster_report(cluster: LocalCluster) -> dict[str, Any]:
    client = _client(cluster)
    try:
        statuses = await client.cluster_status()
    finally:
        await client.close()
    leader_commit = max(
        (s.commit_index for s in statuses if s is not None and s.role == "leader"), default=None
    )
    leader = next(
        (node_name(NodeId(s.node)) for s in statuses if s is not None and s.role == "leader"),
        None,
    )
    answering = [s for s in statuses if s is not None]
    # The leader's configuration is the cluster's; without one, the most advanced view.
    view = max(
        answering, key=lambda s: (s.role == "leader", s.commit_index, s.term), default=None
    )
    voters = set(view.voters) if view is not None else set()
    learners = set(view.learners) if view is not None else set()
    rows = []
    for node, status in zip(cluster.ids, statuses):
        row: dict[str, Any] = {
            "node": node_name(node),
            "pid": cluster.pid(node),
            "up": status is not None,
            "member": "voter" if node in voters else "learner" if node in learners else None,
        }
        if status is not None:
            row.update(
                role=status.role,
                term=status.term,
                leader=None if status.leader is None else node_name(NodeId(status.leader)),
                commit_index=status.commit_index,
                applied_index=status.applied_index,
                lag=None if leader_commit is None else max(0, leader_commit - status.applied_index),
                refusals=summarize_metrics(status.metrics),
            )
        row["refusals_logged"] = cluster.refusals(node)
        rows.append(row)
    return {
        "leader": leader,
        "voters": [node_name(NodeId(n)) for n in sorted(voters)],
        "learners": [node_name(NodeId(n)) for n in sorted(learners)],
        "nodes": rows,
    }
