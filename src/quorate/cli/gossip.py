"""``quorate gossip node`` and ``quorate gossip op``: a real gossip group.

``gossip node --id N --listen H:P --peers 2=H:P,3=H:P --data-dir D``
(``--insecure`` or ``--tls-dir``) runs one member (``runtime.aio.gossip``:
SWIM plus a durable PN-Counter and OR-Set) until SIGTERM or SIGINT. Once
listening it prints one line, ``listening <host>:<port>``, on stdout.

``gossip op --connect H:P --node N OP [ARG]`` sends one operation (increment
AMOUNT, add ELEMENT, remove ELEMENT, read) to a member and prints its reply as
one JSON object.

Bad flags end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import typer

from quorate.cli.main import app, fail
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.config import format_address, parse_address
from quorate.runtime.aio.gossip import (
    GOSSIP_CLIENT_MESSAGE_TYPES,
    GOSSIP_OPERATIONS,
    GossipNode,
    GossipReply,
    GossipRequest,
)
from quorate.runtime.aio.tls import TlsConfig
from quorate.runtime.aio.transport import Address, ClientConnection
from quorate.swim import SwimConfig

gossip_app = typer.Typer(
    help="A real gossip group: SWIM membership with a PN-Counter and an OR-Set.",
    no_args_is_help=True,
)
app.add_typer(gossip_app, name="gossip")

CLIENT_ID = 1 << 20
"""The id the ``op`` command announces itself with."""
OP_TIMEOUT_S = 10.0
RETRY_PAUSE_S = 0.1
"""Pause between connection attempts to a member that is not listening yet."""


def parse_peers(text: str) -> dict[NodeId, Address]:
    """``"2=127.0.0.1:7002,3=127.0.0.1:7003"`` → ``{2: (...), 3: (...)}``."""
    peers: dict[NodeId, Address] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, sep, address = item.partition("=")
        if not sep or not node.strip().isdigit() or int(node) < 1:
            raise ConfigError(f'--peers items must look like "2=127.0.0.1:7002", got {item!r}')
        peers[NodeId(int(node))] = parse_address(address, f"the address of peer {node}")
    return peers


def _security(insecure: bool, tls_dir: str | None, name: str) -> TlsConfig | None:
    if insecure == (tls_dir is not None):
        raise ConfigError("choose exactly one of --insecure and --tls-dir")
    return None if tls_dir is None else TlsConfig.from_directory(tls_dir, name)


async def _serve(node: GossipNode) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    address = await node.start()
    typer.echo(f"listening {format_address(address)}")
    try:
        await stop.wait()
    finally:
        await node.close()


@gossip_app.command("node")
def gossip_node(
    node_id: int = typer.Option(..., "--id", help="This member's id (1, 2, ...: n1, n2, ...)."),
    listen: str = typer.Option(..., "--listen", help="host:port to listen on."),
    peers: str = typer.Option("", "--peers", help='Other members: "2=host:port,3=host:port".'),
    data_dir: str = typer.Option("gossip-data", "--data-dir", help="Where the replica lives."),
    insecure: bool = typer.Option(False, "--insecure", help="Plain TCP (no TLS)."),
    tls_dir: str | None = typer.Option(None, "--tls-dir", help="ca.crt, n<id>.crt, n<id>.key."),
    protocol_period: float = typer.Option(
        1.0, "--protocol-period", help="SWIM protocol period (s); the other timers scale with it."
    ),
) -> None:
    """Run one gossip member until SIGTERM or Ctrl-C."""
    try:
        if node_id < 1:
            raise ConfigError(f"--id must be >= 1 (members are n1, n2, ...), got {node_id}")
        address = parse_address(listen, "--listen")
        peer_map = parse_peers(peers)
        tls = _security(insecure, tls_dir, node_name(NodeId(node_id)))
        if tls is not None:
            tls.server_context()  # fail now, with the path, if a file is missing
        scale = protocol_period
        swim = SwimConfig(
            protocol_period_s=scale,
            probe_timeout_s=scale / 2,
            gossip_interval_s=scale / 5,
            anti_entropy_interval_s=scale * 2,
            reconnect_interval_s=scale * 2,
            shuffle_interval_s=scale * 2,
        ).validate()
        node = GossipNode(
            NodeId(node_id),
            address,
            peer_map,
            Path(data_dir),
            tls=tls,
            insecure=insecure,
            swim=swim,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    try:
        asyncio.run(_serve(node))
    except OSError as exc:
        raise fail(f"{node_name(NodeId(node_id))} cannot start: {exc}") from None


async def request(
    address: Address,
    node: NodeId,
    message: GossipRequest,
    *,
    tls: TlsConfig | None = None,
    insecure: bool = False,
) -> GossipReply:
    """Send one operation to the member at ``address``; await its reply."""
    connection = await ClientConnection.open(
        address, CLIENT_ID, GOSSIP_CLIENT_MESSAGE_TYPES, tls=tls, node=node, insecure=insecure
    )
    try:
        connection.send(message)
        while True:
            reply = await asyncio.wait_for(connection.receive(), OP_TIMEOUT_S)
            if isinstance(reply, GossipReply) and reply.request_id == message.request_id:
                return reply
    finally:
        await connection.close()


async def _request_until(
    address: Address,
    node: NodeId,
    message: GossipRequest,
    tls: TlsConfig | None,
    insecure: bool,
    timeout_s: float,
) -> GossipReply:
    """``request``, retried while the member refuses connections (it is
    still starting), until ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                return await request(address, node, message, tls=tls, insecure=insecure)
        except ConnectionRefusedError:
            if loop.time() + RETRY_PAUSE_S >= deadline:
                raise
            await asyncio.sleep(RETRY_PAUSE_S)


@gossip_app.command("op")
def gossip_op(
    op: str = typer.Argument(..., help=f"One of {', '.join(GOSSIP_OPERATIONS)}."),
    argument: str = typer.Argument("", help="increment: the amount; add/remove: the element."),
    connect: str = typer.Option(..., "--connect", help="host:port of a member."),
    node_id: int = typer.Option(1, "--node", help="The member's id (checked with TLS)."),
    insecure: bool = typer.Option(False, "--insecure", help="Plain TCP (no TLS)."),
    tls_dir: str | None = typer.Option(None, "--tls-dir", help="ca.crt and client.crt/.key."),
    client_name: str = typer.Option(
        "client", "--client-name", help="Certificate name under --tls-dir."
    ),
    timeout_s: float = typer.Option(
        OP_TIMEOUT_S,
        "--timeout",
        help="Seconds to wait for the member, retrying while nothing listens yet (a member starting).",
    ),
) -> None:
    """Send one operation to a gossip member and print its reply as JSON."""
    try:
        if not timeout_s > 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {timeout_s}")
        address = parse_address(connect, "--connect")
        tls = _security(insecure, tls_dir, client_name)
        if op not in GOSSIP_OPERATIONS:
            raise ConfigError(f"unknown op {op!r}; use one of {', '.join(GOSSIP_OPERATIONS)}")
        amount = 0
        element = ""
        if op == "increment":
            try:
                amount = int(argument or "1")
            except ValueError:
                raise ConfigError(f"increment takes an integer amount, got {argument!r}") from None
        elif op in ("add", "remove"):
            if not argument:
                raise ConfigError(f"{op} needs an element")
            element = argument
    except ConfigError as exc:
        raise fail(str(exc)) from None
    message = GossipRequest(op, element=element, amount=amount, request_id=1)
    try:
        reply = asyncio.run(
            _request_until(address, NodeId(node_id), message, tls, insecure, timeout_s)
        )
    except (TimeoutError, OSError, EOFError) as exc:
        raise fail(f"no answer from {connect}: {exc or type(exc).__name__}", 1) from None
    typer.echo(
        json.dumps(
            {
                "ok": reply.ok,
                "counter": reply.counter,
                "elements": list(reply.elements),
                "members_up": list(reply.members_up),
                "state_root": reply.state_root.hex(),
                "error": reply.error,
            }
        )
    )
    if not reply.ok:
        raise typer.Exit(1)
