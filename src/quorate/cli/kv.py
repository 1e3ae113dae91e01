"""``quorate kv``, ``quorate member`` and ``quorate leader``: a cluster from the shell.

Theory of operation: each command builds one ``quorate.Client``, checks that
some node answers (``Client.reachable``: a cluster that is down fails at once
with one line, not after the timeout), does one operation and prints the
answer (``get`` prints the value, or exits 1 when the key is absent; ``cas``
exits 1 when the swap did not happen). Membership changes and leadership
transfers go to the leader, which the client finds by following redirects.

*Which cluster.* By default the one ``quorate cluster up`` wrote in
``./quorate-cluster`` (``--dir`` names another): its ``cluster.json`` gives
the endpoints, the TLS directory and the protocol, so ``quorate kv put k v``
needs no other flag. ``--endpoints`` names the nodes instead; their TLS
settings then come from ``--tls-dir`` or ``--insecure``, else from the
cluster directory when there is one.

Membership, as etcd recommends: start the new node with ``join = true``
(see ``quorate.runtime.aio.config``), ``quorate member add n4 --address
host:port --learner`` so it catches up without counting for the quorum, then
``quorate member promote n4``. The address travels in the configuration
entry, so every member learns it. A change is answered once the leader has
appended it; one still committing makes the next one wait (up to
``--timeout``).

Exit codes: 0 done; 1 the cluster refused (the reason follows ``refused:``),
no node answered, or no answer came within ``--timeout``; 2 a usage or
configuration mistake (bad node name, address, endpoints or TLS files, no
cluster directory).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from quorate.cli.main import app, fail
from quorate.client import Client, ClientError, ClusterUnreachable
from quorate.client.aio import AsyncClient
from quorate.client.contact import DEFAULT_DEADLINE_S, DEFAULT_TIMEOUT_S, parse_endpoints
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name, parse_node_name
from quorate.runtime.aio.cluster import CLUSTER_FILE, DEFAULT_CLUSTER_DIR
from quorate.runtime.aio.config import parse_address

kv_app = typer.Typer(help="Read and write the replicated key-value store.", no_args_is_help=True)
member_app = typer.Typer(
    help="Change the cluster's membership (one node at a time).", no_args_is_help=True
)
leader_app = typer.Typer(help="Leadership.", no_args_is_help=True)
app.add_typer(kv_app, name="kv")
app.add_typer(member_app, name="member")
app.add_typer(leader_app, name="leader")

Directory = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help=f"The cluster directory 'quorate cluster up' wrote [default: {DEFAULT_CLUSTER_DIR}].",
        show_default=False,
    ),
]
Endpoints = Annotated[
    str | None,
    typer.Option("--endpoints", help="host:port,host:port,... (instead of the cluster directory)."),
]
Insecure = Annotated[bool, typer.Option("--insecure", help="Plain TCP.")]
TlsDir = Annotated[
    Path | None, typer.Option("--tls-dir", help="Directory with ca.crt and the client certificate.")
]
TlsName = Annotated[str, typer.Option("--tls-name", help="Client certificate name in --tls-dir.")]
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Key space.")]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        "--deadline-s",
        help="Give up (exit 1) after this many seconds without an answer.",
    ),
]


class Target:
    """The cluster a command talks to and how (the options every command shares)."""

    __slots__ = ("directory", "endpoints", "insecure", "timeout_s", "tls_dir", "tls_name")

    def __init__(
        self,
        directory: Path | None,
        endpoints: str | None,
        insecure: bool,
        tls_dir: Path | None,
        tls_name: str,
        timeout_s: float,
    ) -> None:
        self.directory = directory
        self.endpoints = endpoints
        self.insecure = insecure
        self.tls_dir = tls_dir
        self.tls_name = tls_name
        self.timeout_s = timeout_s

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments of ``Client`` / ``AsyncClient`` for this target."""
        if not self.timeout_s > 0:
            raise fail(f"--timeout must be > 0 seconds, got {self.timeout_s}")
        cluster = self.directory
        if (
            cluster is None
            and self.endpoints is not None
            and self.tls_dir is None
            and not self.insecure
            and (DEFAULT_CLUSTER_DIR / CLUSTER_FILE).is_file()
        ):
            cluster = DEFAULT_CLUSTER_DIR  # its certificates, for the endpoints given
        try:
            endpoints = None if self.endpoints is None else parse_endpoints(self.endpoints)
        except ConfigError as exc:
            raise fail(str(exc)) from None
        return {
            "endpoints": endpoints,
            "cluster": cluster,
            "tls": self.tls_dir,
            "tls_name": self.tls_name,
            "insecure": self.insecure,
            "timeout_s": min(DEFAULT_TIMEOUT_S, self.timeout_s),
            "deadline_s": self.timeout_s,
        }

    def client(self) -> Client:
        try:
            return Client(**self.client_options())
        except ConfigError as exc:
            raise fail(str(exc)) from None

    def async_client(self) -> AsyncClient:
        try:
            return AsyncClient(**self.client_options())
        except ConfigError as exc:
            raise fail(str(exc)) from None

    def run(self, action: Callable[[Client], Any]) -> Any:
        """``action(client)`` once some node answered; failures end in one line."""
        client = self.client()
        try:
            client.reachable()
            return action(client)
        except ClusterUnreachable as exc:
            raise fail(str(exc), 1) from None
        except ClientError as exc:
            raise fail(f"refused: {exc}", 1) from None
        except TimeoutError as exc:
            raise fail(str(exc), 1) from None
        finally:
            client.close()


def _target(
    directory: Path | None,
    endpoints: str | None,
    insecure: bool,
    tls_dir: Path | None,
    tls_name: str,
    timeout_s: float,
) -> Target:
    return Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)


@kv_app.command("put")
def put_command(
    key: str,
    value: str,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
    namespace: Namespace = "",
    ttl_s: Annotated[
        float | None, typer.Option("--ttl-s", help="Expire after this many seconds.")
    ] = None,
) -> None:
    """Set KEY to VALUE."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    target.run(lambda c: c.put(key, value, namespace=namespace, ttl_s=ttl_s))
    typer.echo("OK")


@kv_app.command("get")
def get_command(
    key: str,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
    namespace: Namespace = "",
) -> None:
    """Print KEY's value (linearizable read); exit 1 if absent."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    value = target.run(lambda c: c.get(key, namespace=namespace))
    if value is None:
        raise fail(f"{key!r} not found", 1)
    typer.echo(value)


@kv_app.command("delete")
def delete_command(
    key: str,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
    namespace: Namespace = "",
) -> None:
    """Delete KEY; exit 1 if it was absent."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    if not target.run(lambda c: c.delete(key, namespace=namespace)):
        raise fail(f"{key!r} not found", 1)
    typer.echo("OK")


@kv_app.command("cas")
def cas_command(
    key: str,
    expected: Annotated[str, typer.Argument(help="Expected value; '' with --absent")],
    new: str,
    absent: Annotated[bool, typer.Option("--absent", help="Expect the key to be absent.")] = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
    namespace: Namespace = "",
) -> None:
    """Set KEY to NEW iff it holds EXPECTED; exit 1 (printing the current value) otherwise."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    swapped, current = target.run(
        lambda c: c.cas(key, None if absent else expected, new, namespace=namespace)
    )
    if not swapped:
        raise fail(f"not swapped; current value is {current!r}", 1)
    typer.echo("OK")


@kv_app.command("list")
def list_command(
    prefix: Annotated[str, typer.Argument()] = "",
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
    namespace: Namespace = "",
    limit: Annotated[int, typer.Option("--limit")] = 1000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List keys starting with PREFIX (linearizable)."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    items = target.run(lambda c: c.list(prefix, namespace=namespace, limit=limit))
    if as_json:
        typer.echo(json.dumps(dict(items)))
        return
    for key, value in items:
        typer.echo(f"{key}\t{value}")


def _node(text: str) -> int:
    try:
        return int(parse_node_name(text))
    except ValueError as exc:
        raise fail(str(exc)) from None


def _admin(action: str, node: str, address: str, target: Target) -> None:
    node_id = _node(node)
    if action in ("add", "add_learner"):
        try:
            parse_address(address, "--address")
        except ConfigError as exc:
            raise fail(str(exc)) from None
    target.run(lambda c: c.admin(action, node_id, address))
    typer.echo(f"OK: {action} {node_name(NodeId(node_id))} accepted by the leader")


@member_app.command("add")
def member_add(
    node: str,
    address: Annotated[str, typer.Option("--address", help="The new node's host:port.")],
    learner: Annotated[
        bool, typer.Option("--learner", help="Add as a non-voting learner (then promote).")
    ] = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """Add NODE (a voter, or a learner with --learner); every member learns its address."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    _admin("add_learner" if learner else "add", node, address, target)


@member_app.command("remove")
def member_remove(
    node: str,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """Remove NODE (a voter or a learner); a removed leader steps down."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    _admin("remove", node, "", target)


@member_app.command("promote")
def member_promote(
    node: str,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """Make learner NODE a voter."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    _admin("promote", node, "", target)


@leader_app.command("transfer")
def leader_transfer(
    node: str,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """Hand leadership to voter NODE (it wins an election within a few heartbeats)."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    _admin("transfer", node, "", target)
