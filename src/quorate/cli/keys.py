"""``quorate keys``: per-node signing keys, and the key registry of a running
cluster.

Theory of operation: ``init`` creates one Ed25519 key per node (``n1.key``,
mode 0600) and the registry of their public keys (``public-keys.toml``);
``issue`` adds one node. Copy each node its own ``.key`` file and everyone the
registry, and point the node config's ``keys_dir`` at them
(``quorate.crypto.keyfiles``). An existing key is never replaced without
``--force``; mistakes end with a one-line error and exit code 2.

Once the cluster runs, ``public-keys.toml`` is the registry's *genesis* and
is never edited again: what changes goes through the log
(``quorate.security.keyregistry``, via ``quorate.client.keys``):

- ``rotate NODE`` (run where NODE's key is): a new key, announced signed by
  the old one; the members approve it, NODE switches to it and retires the
  old one after the overlap. Exit 0 once the old key is retired.
- ``revoke NODE --as n1,n2``: each member named signs the revocation (their
  keys must be in ``--keys-dir``); it takes effect at the approval that makes
  ⌊n/2⌋ + 1 members.
- ``admit NODE`` / ``approve NODE --as ...``: a new member's admission (with
  ``admission = "quorum"``, ``member add`` waits for it).
- ``status``: the registry as the cluster holds it.
- ``dkg start SESSION --threshold T --as NODE``: the members generate a
  threshold key with no dealer, through the log (``quorate.security.dkg_log``);
  ``dkg status [--wait SESSION]``: each node's state of each session and a
  digest of the group key it computed (the members agree when the digests
  do; every node logs the full key). ``[security] dkg_threshold`` makes a
  cluster run session ``genesis`` by itself once it is up.

Exit codes as for ``quorate kv``: 1 when the cluster refused (the registry's
reason follows ``refused:``), did not answer, or did not finish in time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from quorate.cli.kv import Directory, Endpoints, Insecure, Target, Timeout, TlsDir, TlsName
from quorate.cli.main import app, fail, missing_module
from quorate.client import ClientError, ClusterUnreachable
from quorate.client.aio import AsyncClient
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name, parse_node_name
from quorate.runtime.aio.cluster import DEFAULT_CLUSTER_DIR, KEYS_DIR

T = TypeVar("T")
DEFAULT_REGISTRY_TIMEOUT_S = 60.0

DEFAULT_DIRECTORY = "keys"
PUBLIC_KEYS_FILE = "public-keys.toml"  # quorate.crypto.keyfiles.PUBLIC_KEYS_FILE (imported lazily)

keys_app = typer.Typer(
    help="Per-node Ed25519 keys for PBFT and HotStuff nodes (keys_dir).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

DirectoryOption = Annotated[Path, typer.Option("--dir", help="Directory of the key files.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace existing keys.")]


def _keyfiles() -> Any:
    """``quorate.crypto.keyfiles``, which needs PyNaCl: imported when a keys
    command runs, so the rest of the CLI works in an installation without it."""
    try:
        from quorate.crypto import keyfiles
    except ImportError as exc:
        raise fail(missing_module(exc)) from None
    return keyfiles


def _node(text: str) -> NodeId:
    try:
        return NodeId(parse_node_name(text))
    except ValueError:
        raise fail(f"invalid node {text!r}: use a name like n1 or a number") from None


@keys_app.command("init")
def init_command(
    nodes: Annotated[int, typer.Option("--nodes", help="Create keys for n1 .. nNODES.")] = 3,
    directory: DirectoryOption = Path(DEFAULT_DIRECTORY),
    force: ForceOption = False,
) -> None:
    """Create a key for each of n1..nNODES and the public-key registry."""
    if nodes < 1:
        raise fail(f"--nodes must be >= 1, got {nodes}")
    keyfiles = _keyfiles()
    try:
        if not force:
            for i in range(1, nodes + 1):
                path = keyfiles.key_file(directory, NodeId(i))
                if path.exists():
                    raise ConfigError(f"{path} exists; pass --force to replace the keys")
        for i in range(1, nodes + 1):
            keyfiles.issue_node_key(directory, NodeId(i), force=force)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {nodes} node keys and {directory / PUBLIC_KEYS_FILE}")


@keys_app.command("issue")
def issue_command(
    node: Annotated[str, typer.Argument(help="The node (n4 or 4).")],
    directory: DirectoryOption = Path(DEFAULT_DIRECTORY),
    force: ForceOption = False,
) -> None:
    """Create one node's key and add it to the registry."""
    node_id = _node(node)
    keyfiles = _keyfiles()
    try:
        public = keyfiles.issue_node_key(directory, node_id, force=force)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {keyfiles.key_file(directory, node_id)} ({node_name(node_id)} = {public.hex()})")


# -- the registry of a running cluster ------------------------------------------------
KeysDirOption = Annotated[
    Path | None,
    typer.Option("--keys-dir", help="Where the keys are (default: the cluster directory's keys/).", show_default=False),
]
SignersOption = Annotated[
    str, typer.Option("--as", help="Members who sign, comma-separated (their keys are in --keys-dir).")
]


def _keys_dir(keys_dir: Path | None, directory: Path | None) -> Path:
    found = keys_dir if keys_dir is not None else (directory or DEFAULT_CLUSTER_DIR) / KEYS_DIR
    if not found.is_dir():
        raise fail(f"no key directory {found} (give --keys-dir)")
    return found


def _signers(text: str) -> list[NodeId]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise fail("name the members who sign with --as n1,n2")
    return [_node(name) for name in names]


def run_registry(target: Target, action: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """``action(client)`` once some node answered; failures end in one line."""

    async def go() -> T:
        client = target.async_client()
        try:
            await client.reachable()
            return await action(client)
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except ClusterUnreachable as exc:
        raise fail(str(exc), 1) from None
    except ClientError as exc:
        raise fail(f"refused: {exc}", 1) from None
    except TimeoutError as exc:
        raise fail(str(exc), 1) from None
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _client_keys() -> Any:
    try:
        from quorate.client import keys
    except ImportError as exc:
        raise fail(missing_module(exc)) from None
    return keys


@keys_app.command("rotate")
def rotate_command(
    node: Annotated[str, typer.Argument(help="The node whose signing key to replace (n2).")],
    keys_dir: KeysDirOption = None,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_REGISTRY_TIMEOUT_S,
) -> None:
    """Replace NODE's signing key on the running cluster (no restart)."""
    node_id = _node(node)
    target = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    found = _keys_dir(keys_dir, directory)
    keys = _client_keys()

    async def action(client: AsyncClient) -> tuple[int, int]:
        decided = await keys.rotate_signing_key(client, found, node_id, timeout_s=timeout_s)
        retired = await keys.wait_until_retired(client, node_id, "signing", timeout_s=timeout_s)
        return decided.index or 0, int(retired)

    activated, retired = run_registry(target, action)
    typer.echo(
        f"{node_name(node_id)}: new signing key active from log index {activated}; "
        f"the old key retired at log index {retired}"
    )


@keys_app.command("revoke")
def revoke_command(
    node: Annotated[str, typer.Argument(help="The node to revoke.")],
    signers: SignersOption = "",
    reason: Annotated[str, typer.Option("--reason", help="Recorded with the revocation.")] = "",
    keys_dir: KeysDirOption = None,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_REGISTRY_TIMEOUT_S,
) -> None:
    """Revoke NODE's keys, signed by the members named with --as."""
    node_id = _node(node)
    members = _signers(signers)
    target = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    found = _keys_dir(keys_dir, directory)
    keys = _client_keys()
    decided = run_registry(target, lambda c: keys.revoke(c, found, node_id, members, reason))
    if decided.index is None:
        raise fail(f"{node_name(node_id)}'s revocation has {decided.subject} approvals; add members with --as", 1)
    typer.echo(f"{node_name(node_id)} revoked at log index {decided.index}")


@keys_app.command("admit")
def admit_command(
    node: Annotated[str, typer.Argument(help="The node asking to join (its key is made if missing).")],
    keys_dir: KeysDirOption = None,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_REGISTRY_TIMEOUT_S,
) -> None:
    """Ask the cluster to admit NODE; members then approve it (keys approve)."""
    node_id = _node(node)
    target = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    found = _keys_dir(keys_dir, directory)
    keys = _client_keys()
    subject = run_registry(target, lambda c: keys.request_admission(c, found, node_id))
    typer.echo(f"{node_name(node_id)}'s admission waits for approvals (subject {subject})")


@keys_app.command("approve")
def approve_command(
    node: Annotated[str, typer.Argument(help="The node whose pending admission or rotation to approve.")],
    signers: SignersOption = "",
    keys_dir: KeysDirOption = None,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_REGISTRY_TIMEOUT_S,
) -> None:
    """Approve what is pending for NODE, as each member named with --as."""
    node_id = _node(node)
    members = _signers(signers)
    target = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    found = _keys_dir(keys_dir, directory)
    keys = _client_keys()
    decided = run_registry(target, lambda c: keys.approve(c, found, node_id, members))
    if decided.index is None:
        typer.echo(f"approvals recorded for {node_name(node_id)}; not decided yet")
    else:
        typer.echo(f"{node_name(node_id)} admitted at log index {decided.index}")


def _short(key: str) -> str:
    """The first 16 hex digits of a key or fingerprint; a description as it is."""
    return key[:16] if all(c in "0123456789abcdef" for c in key) else key


@keys_app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_REGISTRY_TIMEOUT_S,
) -> None:
    """The cluster's key registry: members, keys, pending items, refusals."""
    target = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    keys = _client_keys()
    state: dict[str, Any] = run_registry(target, keys.describe)
    if as_json:
        typer.echo(json.dumps(state, sort_keys=True))
        return
    typer.echo(f"members: {', '.join(state['members'])} (quorum {state['quorum']}); as of log index {state['applied_index']}")
    for name, entry in state["nodes"].items():
        live = [r for r in entry["signing"] if r["retired_at"] is None]
        certs = [r["key"] for r in entry["tls"] if r["retired_at"] is None]
        status = f"revoked at {entry['revoked_at']}" if entry["revoked_at"] is not None else "active"
        typer.echo(
            f"{name}: {status}; signing {', '.join(_short(r['key']) for r in live) or '-'}; "
            f"certificate {', '.join(_short(c) for c in certs) or '-'}"
        )
    for item in state["pending"]:
        typer.echo(f"pending: {item['item']} {item['node']} ({len(item['approvals'])} approvals)")
    if state["refused"]:
        typer.echo("refused: " + ", ".join(f"{reason} ({count})" for reason, count in state["refused"].items()))


dkg_app = typer.Typer(help="Distributed key generation (threshold keys with no dealer) on a running cluster.", no_args_is_help=True)
keys_app.add_typer(dkg_app, name="dkg")


@dkg_app.command("start")
def dkg_start_command(
    session: Annotated[str, typer.Argument(help="A name for the session (at most 64 bytes).")],
    threshold: Annotated[int, typer.Option("--threshold", help="Signers needed (t of n).")],
    starter: Annotated[str, typer.Option("--as", help="The member that signs the start (its key must be in --keys-dir).")] = "n1",
    members: Annotated[str, typer.Option("--members", help="Participants, e.g. n1,n2,n3 (default: every member).")] = "",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until every member has its share.")] = True,
    keys_dir: KeysDirOption = None,
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_REGISTRY_TIMEOUT_S,
) -> None:
    """Start a DKG session; the nodes run it through the log by themselves."""
    starter_id = _node(starter)
    chosen = _signers(members) if members else None
    if threshold < 1:
        raise fail(f"--threshold must be at least 1, got {threshold}")
    if not session or len(session.encode()) > 64:
        raise fail("the session name must be 1 to 64 bytes")
    target = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    found = _keys_dir(keys_dir, directory)
    keys = _client_keys()

    async def action(client: AsyncClient) -> dict[str, Any] | None:
        await keys.start_dkg(client, found, starter_id, session, threshold, chosen)
        return await keys.wait_for_dkg(client, session, timeout_s) if wait else None

    state = run_registry(target, action)
    if state is None:
        typer.echo(f"DKG session {session!r} started; follow it with quorate keys dkg status")
        return
    entry = state["sessions"][session]
    if not entry["agreed"]:
        raise fail(f"DKG session {session!r} ended without agreement: {json.dumps(entry['nodes'], sort_keys=True)}", 1)
    typer.echo(
        f"DKG session {session!r} done on {len(entry['nodes'])} nodes; group key digest {entry['key_digest']} "
        "(the nodes' logs hold the full key)"
    )


@dkg_app.command("status")
def dkg_status_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    wait: Annotated[str, typer.Option("--wait", help="Wait until this session is done or failed.")] = "",
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_REGISTRY_TIMEOUT_S,
) -> None:
    """Each node's state of each DKG session, and whether the members agree on the key."""
    target = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    keys = _client_keys()

    async def action(client: AsyncClient) -> dict[str, Any]:
        result: dict[str, Any] = await (keys.wait_for_dkg(client, wait, timeout_s) if wait else keys.dkg_status(client))
        return result

    state = run_registry(target, action)
    if as_json:
        typer.echo(json.dumps(state, sort_keys=True))
    else:
        typer.echo(f"{state['nodes_answered']} of {state['nodes']} nodes answered")
        if not state["sessions"]:
            typer.echo("no DKG session")
        for name, entry in state["sessions"].items():
            verdict = "agreed" if entry["agreed"] else "failed" if entry["failed"] else "running" if not entry["done"] else "DISAGREE"
            nodes = ", ".join(f"{n} {v['state']}" for n, v in sorted(entry["nodes"].items()))
            digest = f"; key digest {entry['key_digest']}" if entry["key_digest"] else ""
            typer.echo(f"{name}: {verdict}{digest} ({nodes})")
    if wait and not state["sessions"].get(wait, {}).get("agreed"):
        raise typer.Exit(1)
