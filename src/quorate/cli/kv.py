"""``quorate kv``, ``quorate member`` and ``quorate leader``: a cluster from the shell.

Theory of operation: each command builds one ``quorate.Client`` from
``--endpoints`` and TLS flags, does one operation and prints the answer
(``get`` prints the value, or exits 1 when the key is absent; ``cas`` exits 1
when the swap did not happen). Membership changes and leadership transfers
go to the leader, which the client finds by following redirects.

Membership, as etcd recommends: start the new node with ``join = true``
(see ``quorate.runtime.aio.config``), ``quorate member add n4 --address
host:port --learner`` so it catches up without counting for the quorum, then
``quorate member promote n4``. The address travels in the configuration
entry, so every member learns it. A change is answered once the leader has
appended it; one still committing makes the next one wait (up to
``--deadline-s``).

Exit codes: 0 done; 1 the cluster refused (the reason follows ``refused:``)
or did not answer within the deadline; 2 a usage or configuration mistake
(bad node name, address, endpoints or TLS files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from quorate.cli.main import app, fail
from quorate.client import Client, ClientError
from quorate.client.aio import DEFAULT_DEADLINE_S, DEFAULT_TIMEOUT_S, parse_endpoints
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name, parse_node_name
from quorate.runtime.aio.config import parse_address

kv_app = typer.Typer(help="Read and write the replicated key-value store.", no_args_is_help=True)
member_app = typer.Typer(
    help="Change the cluster's membership (one node at a time).", no_args_is_help=True
)
leader_app = typer.Typer(help="Leadership.", no_args_is_help=True)
app.add_typer(kv_app, name="kv")
app.add_typer(member_app, name="member")
app.add_typer(leader_app, name="leader")

Endpoints = Annotated[str, typer.Option("--endpoints", help="host:port,host:port,...")]
Insecure = Annotated[bool, typer.Option("--insecure", help="Plain TCP.")]
TlsDir = Annotated[
    Path | None, typer.Option("--tls-dir", help="Directory with ca.crt and the client certificate.")
]
TlsName = Annotated[str, typer.Option("--tls-name", help="Client certificate name in --tls-dir.")]
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Key space.")]
DeadlineS = Annotated[
    float,
    typer.Option("--deadline-s", help="Give up (exit 1) after this many seconds without an answer."),
]


def _client(
    endpoints: str,
    insecure: bool,
    tls_dir: Path | None,
    tls_name: str,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> Client:
    if not deadline_s > 0:
        raise fail(f"--deadline-s must be > 0 seconds, got {deadline_s}")
    try:
        return Client(
            parse_endpoints(endpoints),
            tls=tls_dir,
            tls_name=tls_name,
            insecure=insecure,
            timeout_s=min(DEFAULT_TIMEOUT_S, deadline_s),
            deadline_s=deadline_s,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _run(
    endpoints: str,
    insecure: bool,
    tls_dir: Path | None,
    tls_name: str,
    action: object,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> object:
    client = _client(endpoints, insecure, tls_dir, tls_name, deadline_s)
    try:
        return action(client)  # type: ignore[operator]
    except ClientError as exc:
        raise fail(f"refused: {exc}", 1) from None
    except TimeoutError as exc:
        raise fail(f"no answer: {exc}", 1) from None
    finally:
        client.close()


@kv_app.command("put")
def put_command(
    key: str,
    value: str,
    endpoints: Endpoints,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    namespace: Namespace = "",
    ttl_s: Annotated[
        float | None, typer.Option("--ttl-s", help="Expire after this many seconds.")
    ] = None,
) -> None:
    """Set KEY to VALUE."""
    _run(
        endpoints,
        insecure,
        tls_dir,
        tls_name,
        lambda c: c.put(key, value, namespace=namespace, ttl_s=ttl_s),
    )
    typer.echo("OK")


@kv_app.command("get")
def get_command(
    key: str,
    endpoints: Endpoints,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    namespace: Namespace = "",
) -> None:
    """Print KEY's value (linearizable read); exit 1 if absent."""
    value = _run(endpoints, insecure, tls_dir, tls_name, lambda c: c.get(key, namespace=namespace))
    if value is None:
        raise fail(f"{key!r} not found", 1)
    typer.echo(value)


@kv_app.command("delete")
def delete_command(
    key: str,
    endpoints: Endpoints,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    namespace: Namespace = "",
) -> None:
    """Delete KEY; exit 1 if it was absent."""
    if not _run(
        endpoints, insecure, tls_dir, tls_name, lambda c: c.delete(key, namespace=namespace)
    ):
        raise fail(f"{key!r} not found", 1)
    typer.echo("OK")


@kv_app.command("cas")
def cas_command(
    key: str,
    expected: Annotated[str, typer.Argument(help="Expected value; '' with --absent")],
    new: str,
    endpoints: Endpoints,
    absent: Annotated[bool, typer.Option("--absent", help="Expect the key to be absent.")] = False,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    namespace: Namespace = "",
) -> None:
    """Set KEY to NEW iff it holds EXPECTED; exit 1 (printing the current value) otherwise."""
    outcome = _run(
        endpoints,
        insecure,
        tls_dir,
        tls_name,
        lambda c: c.cas(key, None if absent else expected, new, namespace=namespace),
    )
    assert isinstance(outcome, tuple)
    swapped, current = outcome
    if not swapped:
        raise fail(f"not swapped; current value is {current!r}", 1)
    typer.echo("OK")


@kv_app.command("list")
def list_command(
    endpoints: Endpoints,
    prefix: Annotated[str, typer.Argument()] = "",
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    namespace: Namespace = "",
    limit: Annotated[int, typer.Option("--limit")] = 1000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List keys starting with PREFIX (linearizable)."""
    items = _run(
        endpoints,
        insecure,
        tls_dir,
        tls_name,
        lambda c: c.list(prefix, namespace=namespace, limit=limit),
    )
    if as_json:
        typer.echo(json.dumps(dict(items)))  # type: ignore[call-overload]
        return
    for key, value in items:  # type: ignore[attr-defined]
        typer.echo(f"{key}\t{value}")


def _node(text: str) -> int:
    try:
        return int(parse_node_name(text))
    except ValueError as exc:
        raise fail(str(exc)) from None


def _admin(
    action: str,
    node: str,
    address: str,
    endpoints: str,
    insecure: bool,
    tls_dir: Path | None,
    tls_name: str,
    deadline_s: float,
) -> None:
    node_id = _node(node)
    if action in ("add", "add_learner"):
        try:
            parse_address(address, "--address")
        except ConfigError as exc:
            raise fail(str(exc)) from None
    _run(
        endpoints,
        insecure,
        tls_dir,
        tls_name,
        lambda c: c.admin(action, node_id, address),
        deadline_s,
    )
    typer.echo(f"OK: {action} {node_name(NodeId(node_id))} accepted by the leader")


@member_app.command("add")
def member_add(
    node: str,
    address: Annotated[str, typer.Option("--address", help="The new node's host:port.")],
    endpoints: Endpoints,
    learner: Annotated[
        bool, typer.Option("--learner", help="Add as a non-voting learner (then promote).")
    ] = False,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    deadline_s: DeadlineS = DEFAULT_DEADLINE_S,
) -> None:
    """Add NODE (a voter, or a learner with --learner); every member learns its address."""
    _admin(
        "add_learner" if learner else "add",
        node,
        address,
        endpoints,
        insecure,
        tls_dir,
        tls_name,
        deadline_s,
    )


@member_app.command("remove")
def member_remove(
    node: str,
    endpoints: Endpoints,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    deadline_s: DeadlineS = DEFAULT_DEADLINE_S,
) -> None:
    """Remove NODE (a voter or a learner); a removed leader steps down."""
    _admin("remove", node, "", endpoints, insecure, tls_dir, tls_name, deadline_s)


@member_app.command("promote")
def member_promote(
    node: str,
    endpoints: Endpoints,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    deadline_s: DeadlineS = DEFAULT_DEADLINE_S,
) -> None:
    """Make learner NODE a voter."""
    _admin("promote", node, "", endpoints, insecure, tls_dir, tls_name, deadline_s)


@leader_app.command("transfer")
def leader_transfer(
    node: str,
    endpoints: Endpoints,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    deadline_s: DeadlineS = DEFAULT_DEADLINE_S,
) -> None:
    """Hand leadership to voter NODE (it wins an election within a few heartbeats)."""
    _admin("transfer", node, "", endpoints, insecure, tls_dir, tls_name, deadline_s)
