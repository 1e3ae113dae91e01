"""``quorate keys init`` / ``quorate keys issue NODE``: per-node signing keys
for BFT clusters.

Theory of operation: ``init`` creates one Ed25519 key per node (``n1.key``,
mode 0600) and the registry of their public keys (``public-keys.toml``);
``issue`` adds one node. Copy each node its own ``.key`` file and everyone the
registry, and point the node config's ``keys_dir`` at them
(``quorate.crypto.keyfiles``). An existing key is never replaced without
``--force``; mistakes end with a one-line error and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from quorate.cli.main import app, fail, missing_module
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name, parse_node_name

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
