"""``quorate cluster up|down|status``: a local cluster of node processes.

Theory of operation: ``up`` writes a cluster directory (configs; a CA, node
certificates and a ``client`` certificate unless ``--insecure``; for PBFT and
HotStuff a signing key per node and the public-key registry, made by the
functions behind ``quorate certs`` and ``quorate keys``; see
``LocalCluster``), starts one OS process per node, waits until every node
answers and a leader (Raft) or primary (PBFT, HotStuff) is known, and prints
the endpoints and where the logs are. A node whose process ends during the
start (its port taken, a data directory of another protocol...) makes ``up``
stop the nodes it started and exit 1 with that node's own one-line reason.

``down`` stops the processes named by the pid files (SIGTERM, then SIGKILL
after ``--timeout``). ``status`` asks every node for its view (role, term or
view, leader or primary, commit and applied index; lag = leader's commit
index − the node's applied index) and shows the refusals each node counted
and logged. The membership shown (voters, learners; each node's ``member``
column) is the leader's configuration, or, with no leader, that of the
answering node that has committed most; a node outside it shows ``-``
(removed, or still joining). When no node answers, ``status`` exits 1 with
one line (and ``--json`` says so in ``error``). The table fits 80 columns.

Clients find a cluster made here by its directory: ``quorate kv`` and
``quorate.Client()`` read ``./quorate-cluster`` by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from quorate.cli.main import app, fail
from quorate.client.aio import AsyncClient
from quorate.client.contact import ClientError, unreachable_message
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name
from quorate.multiraft.messages import MULTIRAFT, RangesReply, leading_views
from quorate.protocols import byzantine_fault_tolerant
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.cluster import (
    DEFAULT_BASE_PORT,
    DEFAULT_CLUSTER_DIR,
    DEFAULT_STOP_TIMEOUT_S,
    LocalCluster,
    summarize_metrics,
)
from quorate.runtime.aio.multiraft import RangeLayout
from quorate.runtime.aio.node import SHARED_SEED_METRIC
from quorate.runtime.aio.protocols import protocol_names

DEFAULT_DIRECTORY = DEFAULT_CLUSTER_DIR
START_WAIT_S = 20.0
"""How long ``up`` waits for every node to answer and a leader to be known."""
STATUS_TIMEOUT_S = 1.0
POLL_INTERVAL_S = 0.1
RAFT_NODES = 3
BFT_NODES = 4
"""n = 3f + 1 with f = 1: the smallest cluster that tolerates a Byzantine replica."""
CLIENT_CERTIFICATE = "client"

cluster_app = typer.Typer(help="Run a local cluster of node processes.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")

DirOption = Annotated[Path, typer.Option("--dir", help="The cluster directory.")]


def cluster_options(protocol: str, election_timeout_s: float | None) -> dict[str, Any]:
    """The protocol options ``up`` writes into every node's config."""
    if protocol == "raft":
        timeout_s = 1.0 if election_timeout_s is None else election_timeout_s
        return {"election_timeout_s": timeout_s, "heartbeat_interval_s": timeout_s / 10}
    if election_timeout_s is not None:
        raise fail(f"--election-timeout-s is a Raft setting; {protocol} has its own view timeouts")
    return {}


@cluster_app.command("up")
def up_command(
    protocol: Annotated[
        str, typer.Option("--protocol", help="raft, pbft, hotstuff or casper.")
    ] = "raft",
    nodes: Annotated[
        int | None,
        typer.Option("--nodes", help=f"How many nodes [default: {RAFT_NODES} for raft, {BFT_NODES} for pbft/hotstuff/casper]."),
    ] = None,
    directory: DirOption = DEFAULT_DIRECTORY,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plain TCP, no certificates.")
    ] = False,
    base_port: Annotated[
        int,
        typer.Option("--base-port", envvar="QUORATE_BASE_PORT", help="First node's port (n1's)."),
    ] = DEFAULT_BASE_PORT,
    election_timeout_s: Annotated[
        float | None, typer.Option("--election-timeout-s", help="Raft only [default: 1.0].")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="n1 serves Prometheus /metrics on this port, n2 on the next..."),
    ] = None,
    groups: Annotated[
        int,
        typer.Option("--groups", help="Multi-Raft (raft only): range groups at the start, plus a meta group; 0 = one group."),
    ] = 0,
    replicas: Annotated[
        int | None, typer.Option("--replicas", help="Multi-Raft: replicas of each range [default: min(3, nodes)].")
    ] = None,
    split_at_ops: Annotated[
        int, typer.Option("--split-at-ops", help="Multi-Raft: a range splits after this many writes; 0 = never.")
    ] = 0,
    shards: Annotated[int | None, typer.Option("--shards", help="HRB: shards [default: 3].")] = None,
    shard_size: Annotated[int | None, typer.Option("--shard-size", help="HRB: nodes per shard [default: 4].")] = None,
    core: Annotated[int | None, typer.Option("--core", help="HRB: core members [default: 4].")] = None,
    quorum: Annotated[
        str | None, typer.Option("--quorum", help="HRB: the shards' commit rule, byzantine or majority [default: byzantine].")
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option("--checkpoint-every", help="HRB: an erasure-coded checkpoint every this many applied entries [default: none]."),
    ] = None,
) -> None:
    """Write configs, certificates and keys; start every node; wait for a leader."""
    if protocol not in protocol_names():
        raise fail(f"unknown protocol {protocol!r}; choose one of {', '.join(protocol_names())}")
    bft = byzantine_fault_tolerant(protocol)
    count = nodes if nodes is not None else BFT_NODES if bft else RAFT_NODES
    hrb_options = hrb_cluster_options(
        protocol, nodes, shards, shard_size, core, quorum, election_timeout_s, checkpoint_every=checkpoint_every
    )
    if hrb_options is not None:
        count = hrb_options["shards"] * hrb_options["shard_size"]
    if count < 1:
        raise fail(f"--nodes must be at least 1, got {count}")
    range_replicas = min(3, count) if replicas is None else replicas
    if groups or replicas is not None or split_at_ops:
        if protocol != "raft":
            raise fail(f"--groups, --replicas and --split-at-ops make a multi-Raft cluster; not for {protocol}")
        try:
            RangeLayout(groups, range_replicas, split_at_ops).validate(count)
        except ConfigError as exc:
            raise fail(f"--groups/--replicas/--split-at-ops: {exc}") from None
    options = cluster_options(protocol, election_timeout_s) if hrb_options is None else hrb_options
    try:
        if (directory / "cluster.json").exists():
            existing = LocalCluster.open(directory)
            if any(existing.running(n) for n in existing.ids):
                raise ConfigError(
                    f"a cluster is already running in {directory}; "
                    f"run 'quorate cluster down --dir {directory}' first"
                )
        cluster = LocalCluster(
            directory,
            nodes=count,
            base_port=base_port,
            insecure=insecure,
            protocol=protocol,
            options=options,
            node_keys=True,  # one signing key per node, as 'quorate keys init' makes them
            metrics_base_port=metrics_port,
            ranges=groups,
            replicas=range_replicas,
            split_at_ops=split_at_ops,
        )
        cluster.write_configs()
        if cluster.tls_dir is not None:
            from quorate.cli.certs import ensure_certificates

            ensure_certificates(
                cluster.tls_dir, [*(node_name(n) for n in cluster.ids), CLIENT_CERTIFICATE]
            )
        cluster.start_all()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except ImportError as exc:
        from quorate.cli.main import missing_module

        raise fail(missing_module(exc)) from None
    try:
        leader = asyncio.run(_wait_started(cluster) if hrb_options is None else _wait_hrb_started(cluster))
    except _StartFailed as exc:
        cluster.stop_all()
        raise fail(f"{exc}; the other nodes were stopped", 1) from None
    except KeyboardInterrupt:
        cluster.stop_all()
        raise
    for node, endpoint in zip(cluster.ids, cluster.endpoints):
        typer.echo(f"{node_name(node)}  {endpoint}  pid {cluster.pid(node)}")
    role = "primary" if bft else "leader"
    if hrb_options is not None:
        typer.echo(
            f"HRB deployment of {count} in {cluster.directory}: {hrb_options['shards']} shards of "
            f"{hrb_options['shard_size']} ({hrb_options['quorum']} quorum), a core of {hrb_options['core_size']}; {leader}"
        )
        typer.echo(f"endpoints: {','.join(cluster.endpoints)}")
        again = "" if directory == DEFAULT_DIRECTORY else f" --dir {directory}"
        typer.echo(f"try: quorate kv txn put a=100 b=100{again}; quorate kv txn transfer a b 30{again}")
        return
    if groups:
        typer.echo(
            f"multi-Raft cluster of {count} in {cluster.directory}: {groups} ranges of {range_replicas} "
            f"replicas, each with a leader; meta group leader: {leader}"
        )
    else:
        typer.echo(f"{protocol} cluster of {count} in {cluster.directory}; {role}: {leader}")
    typer.echo(f"endpoints: {','.join(cluster.endpoints)}")
    if cluster.tls_dir is not None:
        typer.echo(f"client certificate: {cluster.tls_dir / CLIENT_CERTIFICATE}.crt (and ca.crt)")
    typer.echo(f"signing keys: {cluster.directory / 'keys'} (one per node, 'quorate keys')")
    typer.echo(f"logs: {cluster.directory}/n*.log (JSON Lines), start-up errors in n*.stderr")
    if metrics_port is not None:
        typer.echo(f"metrics: {', '.join(str(cluster.metrics_url(n)) for n in cluster.ids)}")
    again = "" if directory == DEFAULT_DIRECTORY else f" --dir {directory}"
    typer.echo(f"try: quorate kv put hello world{again}; quorate cluster status{again}")


# -- HRB deployments ----------------------------------------------------------
HRB_START_WAIT_S = 60.0
"""A give-up bound: a dozen Python processes start on a loaded machine."""
HRB_DEFAULTS = {"shards": 3, "shard_size": 4, "core_size": 4, "quorum": "byzantine"}


def hrb_cluster_options(
    protocol: str,
    nodes: int | None,
    shards: int | None,
    shard_size: int | None,
    core: int | None,
    quorum: str | None,
    election_timeout_s: float | None,
    *,
    checkpoint_every: int | None = None,
) -> dict[str, Any] | None:
    """The HRB options ``up`` writes (None for other protocols); exits 2 on a bad combination."""
    given = {
        "--shards": shards, "--shard-size": shard_size, "--core": core, "--quorum": quorum,
        "--checkpoint-every": checkpoint_every,
    }
    if protocol != "hrb":
        named = [flag for flag, value in given.items() if value is not None]
        if named:
            raise fail(f"{', '.join(named)}: HRB settings; not for {protocol}")
        return None
    if nodes is not None:
        raise fail("an HRB deployment has --shards x --shard-size nodes; leave out --nodes")
    options: dict[str, Any] = {
        "shards": HRB_DEFAULTS["shards"] if shards is None else shards,
        "shard_size": HRB_DEFAULTS["shard_size"] if shard_size is None else shard_size,
        "core_size": HRB_DEFAULTS["core_size"] if core is None else core,
        "quorum": HRB_DEFAULTS["quorum"] if quorum is None else quorum,
    }
    if election_timeout_s is not None:
        options["election_timeout_s"] = election_timeout_s
        options["heartbeat_interval_s"] = election_timeout_s / 10
    if checkpoint_every is not None:
        options["checkpoint_interval_entries"] = checkpoint_every
    for name, flag in (("shards", "--shards"), ("shard_size", "--shard-size"), ("core_size", "--core")):
        if not 1 <= options[name] <= 64:
            raise fail(f"{flag} must be within 1..64, got {options[name]}")
    if options["core_size"] > options["shards"] * options["shard_size"]:
        raise fail(f"--core {options['core_size']} is more than the {options['shards'] * options['shard_size']} nodes")
    from quorate.runtime.aio.protocols import protocol_binding

    try:
        protocol_binding("hrb").core.parse_config(options)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return options


async def _wait_hrb_started(cluster: LocalCluster) -> str:
    """A line naming each shard's leader once every shard and the core have one."""
    from quorate.client.hrb import AsyncHrbClient

    client = AsyncHrbClient(cluster.endpoints, tls=cluster.tls_dir, insecure=cluster.insecure)
    try:
        deadline = time.monotonic() + HRB_START_WAIT_S
        while True:
            for node in cluster.ids:
                reason = cluster.exit_reason(node)
                if reason is not None:
                    raise _StartFailed(f"{node_name(node)} could not start: {reason}")
            try:
                leaders = await client.wait_ready(min(2.0, max(0.1, deadline - time.monotonic())))
                return "shard leaders " + ", ".join(f"{k}: {node_name(NodeId(v))}" for k, v in sorted(leaders.items()))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise _StartFailed(
                        f"not every shard and the core elected a leader within {HRB_START_WAIT_S:g} s "
                        f"(see {cluster.directory}/n*.log and n*.stderr)"
                    ) from None
    finally:
        await client.close()


async def hrb_report(cluster: LocalCluster) -> dict[str, Any]:
    """Every node's view of its shard, and each shard's leader and voters."""
    from quorate.client.hrb import AsyncHrbClient

    client = AsyncHrbClient(cluster.endpoints, tls=cluster.tls_dir, insecure=cluster.insecure)
    rows: list[dict[str, Any]] = []
    shards: list[dict[str, Any]] = []
    try:
        try:
            layout = await client.discover()
        except (OSError, TimeoutError, EOFError) as exc:
            return {"directory": str(cluster.directory), "protocol": "hrb", "nodes": [], "shards": [], "error": str(exc)}
        for shard, members in sorted(layout.shards.items()):
            views: dict[int, StatusReply] = {}
            for node in members:
                with contextlib.suppress(OSError, TimeoutError, EOFError, ClientError):
                    views[node] = await client.status(node, shard)
            for node in members:
                view = views.get(node)
                row: dict[str, Any] = {
                    "node": node_name(NodeId(node)), "shard": shard, "core": node in layout.core,
                    "pid": cluster.pid(NodeId(node)), "up": view is not None,
                }
                if view is not None:
                    row.update(
                        role=view.role, term=view.term,
                        leader=None if view.leader is None else node_name(NodeId(view.leader)),
                        commit_index=view.commit_index, applied_index=view.applied_index,
                        convicted=sorted(k.removeprefix("hrb.convicted.") for k in view.metrics if k.startswith("hrb.convicted.")),
                    )
                    checkpoint = {
                        k.removeprefix("hrb.checkpoint."): v for k, v in view.metrics.items() if k.startswith("hrb.checkpoint.")
                    }
                    if checkpoint:
                        row["checkpoint"] = checkpoint
                rows.append(row)
            leaders = {v.leader for v in views.values()}
            agreed = leaders.pop() if len(leaders) == 1 else None
            # The smallest configuration any member holds: evictions taken out.
            voters = min((v.voters for v in views.values()), key=len, default=())
            shards.append({
                "shard": shard,
                "leader": None if agreed is None else node_name(NodeId(agreed)),
                "voters": [node_name(NodeId(v)) for v in voters],
                "members_answering": len(views),
            })
    finally:
        await client.close()
    return {
        "directory": str(cluster.directory),
        "protocol": "hrb",
        "quorum": layout.quorum,
        "core": [node_name(NodeId(n)) for n in layout.core],
        "shards": shards,
        "nodes": rows,
        "error": None if any(r["up"] for r in rows) else unreachable_message(client.endpoints),
    }


def format_hrb_report(report: dict[str, Any]) -> list[str]:
    """``hrb_report`` for a person: a line per shard, a row per node."""
    out = [f"HRB deployment ({report.get('quorum', '?')} shard quorum), core: {' '.join(report.get('core', []))}"]
    for shard in report["shards"]:
        out.append(
            f"shard {shard['shard']}: leader {shard['leader'] or 'unknown'}, voters {' '.join(shard['voters'])}"
        )
    out.append("node  shard  role       term  leader  commit  applied  core  convicted")
    for row in report["nodes"]:
        if not row["up"]:
            out.append(f"{row['node']:<5} {row['shard']:<6} down")
            continue
        out.append(
            f"{row['node']:<5} {row['shard']:<6} {row['role']:<10} {row['term']:<5} {row['leader'] or '-':<7} "
            f"{row['commit_index']:<7} {row['applied_index']:<8} {'yes' if row['core'] else '-':<5} "
            f"{' '.join(row['convicted']) or '-'}"
        )
    out.append(f"directory: {report['directory']}")
    return out


class _StartFailed(Exception):
    """A node's process ended, or the cluster found no leader in time."""


async def _wait_started(cluster: LocalCluster) -> str:
    """The leader's (or primary's) name once every node answers ``Status``;
    ``_StartFailed`` when a node's process ended or ``START_WAIT_S`` passed."""
    client = _client(cluster)
    try:
        deadline = time.monotonic() + START_WAIT_S
        statuses: list[StatusReply | None] = []
        while time.monotonic() < deadline:
            for node in cluster.ids:
                reason = cluster.exit_reason(node)
                if reason is not None:
                    raise _StartFailed(f"{node_name(node)} could not start: {reason}")
            statuses = await client.cluster_status()
            leader = _leader([s for s in statuses if s is not None])
            if (
                leader is not None
                and all(s is not None for s in statuses)
                and (not cluster.ranges or len(_range_rows(await client.cluster_ranges())) >= cluster.ranges)
            ):
                return leader
            await asyncio.sleep(POLL_INTERVAL_S)
        silent = [node_name(n) for n, s in zip(cluster.ids, statuses) if s is None]
        what = f"{', '.join(silent)} did not answer" if silent else "no leader was elected"
        if not silent and cluster.ranges and _leader([s for s in statuses if s is not None]) is not None:
            what = "not every range elected a leader"
        raise _StartFailed(
            f"{what} within {START_WAIT_S:g} s (see {cluster.directory}/n*.log and n*.stderr)"
        )
    finally:
        await client.close()


def _leader(statuses: list[StatusReply]) -> str | None:
    """The node the answering nodes agree leads: a Raft node that says it is
    the leader, or the primary a BFT majority names."""
    for status in statuses:
        if status.role == "leader":
            return node_name(NodeId(status.node))
    named = [s.metrics.get("bft.leader") for s in statuses]
    for candidate in set(named):
        if candidate is not None and named.count(candidate) * 2 > len(statuses):
            return node_name(NodeId(candidate))
    return None


def _range_rows(replies: list[RangesReply | None]) -> list[dict[str, Any]]:
    """One row per range that has a leader: the leader's view (bounds,
    replicas, term, commit index), the highest term's when two claim it."""
    rows = []
    for range_id, view in leading_views(replies).items():
        rows.append(
            {
                "range": range_id,
                "start": view.start,
                "end": view.end,
                "generation": view.generation,
                "leader": node_name(NodeId(view.leader)) if view.leader is not None else None,
                "term": view.term,
                "commit_index": view.commit_index,
                "replicas": [node_name(NodeId(n)) for n in view.replicas],
                "quiesced": view.quiesced,
            }
        )
    return rows


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
    """Leader, term, commit index, lag and refusals of every node (exit 1 if none answers)."""
    try:
        cluster = LocalCluster.open(directory)
        hrb = cluster.protocol == "hrb"
        report = asyncio.run(hrb_report(cluster) if hrb else cluster_report(cluster))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        for line in format_hrb_report(report) if hrb else format_report(report):
            typer.echo(line)
    if report["error"] is not None:
        raise fail(report["error"], 1)


COLUMNS = (
    ("node", "node"),
    ("role", "role"),
    ("term", "term"),
    ("leader", "leader"),
    ("commit", "commit_index"),
    ("applied", "applied_index"),
    ("lag", "lag"),
    ("member", "member"),
    ("pid", "pid"),
    ("refusals", "refusal_count"),
)
BFT_HEADINGS = {"term": "view", "leader": "primary"}


def format_report(report: dict[str, Any]) -> list[str]:
    """``cluster_report`` for a person: a table whose widths follow its
    contents (80 columns for anything short of millions of entries), then
    the membership, warnings and the last refusals each node logged."""
    rows = report["nodes"]
    if not any(row["up"] for row in rows):
        return []
    bft = byzantine_fault_tolerant(report["protocol"])
    headings = [BFT_HEADINGS.get(h, h) if bft else h for h, _ in COLUMNS]
    cells = [
        ["-" if row.get(key) is None else str(row[key]) for _, key in COLUMNS] for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headings)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    role = "primary" if bft else "leader"
    out = [f"{report['protocol']} cluster, {role} {report['leader'] or 'unknown'}"]
    out += [line(headings), *(line(c) for c in cells)]
    out.append(
        f"voters: {' '.join(report['voters']) or '-'}  learners: {' '.join(report['learners']) or '-'}"
    )
    for warning in report["warnings"]:
        out.append(f"warning: {warning}")
    ranges = report.get("ranges")
    if ranges is not None:
        out += _format_ranges(report)
    out.append(f"directory: {report['directory']}")
    for row in rows:
        if row.get("refusals"):
            counted = ", ".join(f"{k} {v}" for k, v in sorted(row["refusals"].items()))
            out.append(f"{row['node']} refused: {counted}")
        for message in row["refusals_logged"][-3:]:
            out.append(f"{row['node']} log: {message}")
    return out


def _format_ranges(report: dict[str, Any]) -> list[str]:
    """The ranges table: bounds, leader, term, commit index, replicas."""
    rows = report["ranges"]
    out = [f"ranges: {len(rows)} with a leader"]
    leaderless = report.get("ranges_without_leader") or []
    if leaderless:
        out[0] += f"; without a leader: {' '.join(map(str, leaderless))}"
    for row in report["nodes"]:
        if "ranges_hosted" in row:
            out[0] += f"; {row['node']} leads {row['ranges_leading']} of {row['ranges_hosted']}"
    headings = ["range", "start", "end", "leader", "term", "commit", "replicas", "quiet"]
    cells = [
        [
            str(r["range"]),
            "-" if r["start"] is None else repr(r["start"]),
            "end" if r["end"] is None else repr(r["end"]),
            r["leader"] or "-",
            str(r["term"]),
            str(r["commit_index"]),
            ",".join(r["replicas"]),
            "yes" if r["quiesced"] else "no",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headings)]
    out.append("  ".join(h.ljust(w) for h, w in zip(headings, widths)).rstrip())
    out += ["  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip() for c in cells]
    return out


def shared_seed_warning(nodes: list[str]) -> str:
    return (
        f"{', '.join(nodes)} sign with keys derived from the shared test key seed "
        "(no keys_dir): for tests only, whoever knows the seed can sign as any replica; "
        "give each node its own key with 'quorate keys init' and keys_dir"
    )


async def cluster_report(cluster: LocalCluster) -> dict[str, Any]:
    client = _client(cluster)
    try:
        statuses = await client.cluster_status()
    finally:
        await client.close()
    answering = [s for s in statuses if s is not None]
    bft = byzantine_fault_tolerant(cluster.protocol)
    leader_commit = max(
        (s.commit_index for s in answering if s.role == "leader"), default=None
    )
    leader = _leader(answering)
    # The leader's configuration is the cluster's; without one, the most advanced view.
    view = max(
        answering, key=lambda s: (s.role == "leader", s.commit_index, s.term), default=None
    )
    # While joint, the outgoing configuration's voters still vote.
    voters = set(view.voters) | set(view.outgoing) if view is not None else set()
    learners = set(view.learners) - voters if view is not None else set()
    if bft and not voters:
        voters = set(cluster.ids)  # a fixed replica set
    rows = []
    seeded: list[str] = []
    for node, status in zip(cluster.ids, statuses):
        row: dict[str, Any] = {
            "node": node_name(node),
            "pid": cluster.pid(node),
            "up": status is not None,
            "member": "voter" if node in voters else "learner" if node in learners else None,
        }
        if status is not None:
            refusals = summarize_metrics(status.metrics)
            if bft:
                primary = status.metrics.get("bft.leader")
                row.update(
                    role="primary" if primary == status.node else "backup",
                    term=status.metrics.get("bft.view"),
                    leader=None if primary is None else node_name(NodeId(primary)),
                    commit_index=status.metrics.get("bft.executed_seq"),
                    applied_index=status.applied_index,
                    lag=None,
                )
            else:
                row.update(
                    role=status.role,
                    term=status.term,
                    leader=None if status.leader is None else node_name(NodeId(status.leader)),
                    commit_index=status.commit_index,
                    applied_index=status.applied_index,
                    lag=None
                    if leader_commit is None
                    else max(0, leader_commit - status.applied_index),
                )
            row.update(refusals=refusals, refusal_count=sum(refusals.values()))
            # Round trips this node measured to its connected peers (peer pings).
            row["peer_rtt_ms"] = {node_name(NodeId(p)): ms for p, ms in sorted(status.peer_rtt_ms.items())}
            if status.metrics.get(SHARED_SEED_METRIC):
                seeded.append(node_name(node))
        row["refusals_logged"] = cluster.refusals(node)
        rows.append(row)
    error = None
    if not answering:
        error = unreachable_message(client.endpoints)
    ranges: list[dict[str, Any]] | None = None
    leaderless: list[int] = []
    if cluster.ranges and answering:
        client = _client(cluster)
        try:
            listed = await client.cluster_ranges()
        finally:
            await client.close()
        ranges = _range_rows(listed)
        hosted = {v.range_id for reply in listed if reply is not None for v in reply.ranges}
        for row, reply in zip(rows, listed):
            if reply is not None:
                row["ranges_hosted"] = len(reply.ranges)
                row["ranges_leading"] = sum(1 for v in reply.ranges if v.role == "leader")
        leaderless = sorted(hosted - {row["range"] for row in ranges})
    return {
        "directory": str(cluster.directory),
        "protocol": MULTIRAFT if cluster.ranges else cluster.protocol,
        "leader": leader,
        "voters": [node_name(NodeId(n)) for n in sorted(voters)],
        "learners": [node_name(NodeId(n)) for n in sorted(learners)],
        "nodes": rows,
        "nodes_up": len(answering),
        "warnings": [shared_seed_warning(seeded)] if seeded else [],
        "error": error,
        **({"ranges": ranges, "ranges_without_leader": leaderless} if ranges is not None else {}),
    }
