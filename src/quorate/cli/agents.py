"""``quorate agents``: agent identities that sign their own votes.

``quorate agents add NAME`` makes an Ed25519 key pair, saves the signing
key to ``<cluster>/agents/NAME.key`` (mode 0600, never overwritten; with
``--keys-dir`` elsewhere) and registers the public key through consensus,
so every replica can check NAME's ballots. ``list`` prints the registered
agents, ``sign NAME PROPOSAL OPTION`` prints NAME's signature over that
ballot (hex) for a client that cannot sign itself (an MCP agent passes it
to ``consensus_vote``).

Exit codes as ``quorate kv``: 1 when the cluster refused (another key has
that name) or did not answer; 2 for usage mistakes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from quorate.cli.kv import Directory, Endpoints, Insecure, Timeout, TlsDir, TlsName, _target
from quorate.cli.main import app, fail
from quorate.client import Client
from quorate.client.agents import AsyncVotes
from quorate.client.contact import DEFAULT_DEADLINE_S
from quorate.client.identity import AGENTS_DIR, create_identity, identity_path, load_identity
from quorate.errors import ConfigError
from quorate.runtime.aio.cluster import DEFAULT_CLUSTER_DIR

agents_app = typer.Typer(help="Agent identities (Ed25519 keys that sign votes).", no_args_is_help=True)
app.add_typer(agents_app, name="agents")

KeysDir = Annotated[
    Path | None,
    typer.Option("--keys-dir", help="Where agent keys live [default: <cluster dir>/agents]."),
]


def _keys_dir(keys_dir: Path | None, directory: Path | None) -> Path:
    if keys_dir is not None:
        return keys_dir
    return (directory or DEFAULT_CLUSTER_DIR) / AGENTS_DIR


@agents_app.command("add")
def add_command(
    name: str,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
    keys_dir: KeysDir = None,
) -> None:
    """Create agent NAME's key pair and register its public key with the cluster."""
    folder = _keys_dir(keys_dir, directory)
    try:
        path = identity_path(folder, name)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)

    def register(client: Client) -> dict[str, Any]:
        # Only once a node answered: a cluster that is down leaves no key behind.
        identity = load_identity(folder, name) if path.exists() else create_identity(folder, name)
        return client.run(AsyncVotes(client.async_client.execute).register(identity))

    registered = target.run(register)
    typer.echo(f"agent {name} registered (public key {registered['public_key']}); key in {path}")


@agents_app.command("list")
def list_command(
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The registered agents."""
    target = _target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    agents = target.run(lambda c: c.run(AsyncVotes(c.async_client.execute).agents()))
    if as_json:
        typer.echo(json.dumps({"agents": agents}))
        return
    for agent in agents:
        typer.echo(f"{agent['name']}  {agent['public_key']}")


@agents_app.command("sign")
def sign_command(
    name: str,
    proposal: str,
    option: str,
    directory: Directory = None,
    keys_dir: KeysDir = None,
) -> None:
    """Print NAME's signature (hex) over its ballot for OPTION of PROPOSAL."""
    try:
        identity = load_identity(_keys_dir(keys_dir, directory), name)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(identity.sign_ballot(proposal, option).hex())
