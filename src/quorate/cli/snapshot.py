"""``quorate snapshot save|restore``: back up a running cluster, and build a
new cluster's data directories from the backup (as ``etcdctl snapshot``).

Theory of operation.

- ``save FILE`` asks the leader for a linearizable image of the store
  (``quorate.state.backup``: taken like a ReadIndex read, at the applied
  index, so it holds every write acknowledged before the command started),
  fetches it chunk by chunk from the node that took it, checks its SHA-256,
  and writes the snapshot file atomically: a temporary file in the same
  directory, fsynced, renamed over ``FILE``, and the directory fsynced. A
  crash leaves the old ``FILE`` or the new one, never half of one.
- ``restore FILE`` checks the file (magic, length, checksum, format version;
  a damaged file is refused with one line, exit 2) and that its data loads,
  then writes, into each empty data directory, the image as the node's
  snapshot at the saved index and term, with the new cluster's members as
  its configuration. ``--dir DIR --nodes N`` fills ``DIR/n1`` ... ``DIR/nN``,
  the layout of ``quorate cluster up --dir DIR --nodes N``, which then starts
  the restored cluster; ``--data-dir D --node nK --members n1,n2,n3`` fills
  one node's directory of a cluster laid out by hand.

Raft clusters only: PBFT and HotStuff nodes keep no snapshot a node could
start from, so their backups would have nowhere to go.

Exit codes: 0 done; 1 the cluster refused or did not answer; 2 a usage
mistake, an unreadable or damaged file, or a target that already holds data.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from quorate.cli.kv import Directory, Endpoints, Insecure, Target, Timeout, TlsDir, TlsName
from quorate.cli.main import app, fail
from quorate.client.aio import AsyncClient
from quorate.client.contact import DEFAULT_DEADLINE_S, ClientError
from quorate.ids import NodeId, node_name, parse_node_name
from quorate.runtime.aio.config import STORAGE_KINDS
from quorate.state.backup import (
    BackupChunk,
    BackupFileError,
    decode_backup_file,
    encode_backup_file,
)
from quorate.state.kv import KVStore

SUPPORTED_PROTOCOLS = ("raft",)
STATUS_RETRY_S = 0.2
"""Pause between rounds of Status requests while no node answers (starting up)."""

snapshot_app = typer.Typer(help="Back up a running cluster and restore it (like etcdctl snapshot).", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")


@snapshot_app.command("save")
def save_command(
    file: Annotated[Path, typer.Argument(help="Where to write the snapshot.")],
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    timeout_s: Timeout = DEFAULT_DEADLINE_S,
) -> None:
    """Write a consistent, checksummed snapshot of the cluster's store to FILE
    (the cluster in ./quorate-cluster unless --dir or --endpoints names another)."""
    if file.is_dir():
        raise fail(f"{file} is a directory; give a file name")
    if not file.parent.is_dir():
        raise fail(f"{file.parent} is not a directory")
    target = Target(directory, endpoints, insecure, tls_dir, tls_name, timeout_s)
    client = target.async_client()
    where = endpoints or str(directory or "./quorate-cluster")
    try:
        protocol, first, data = asyncio.run(_fetch(client, where))
    except ClientError as exc:
        raise fail(f"refused: {exc}", 1) from None
    except TimeoutError as exc:
        raise fail(f"no answer: {exc}", 1) from None
    raw = encode_backup_file(protocol, first.index, first.term, time.time(), data)
    try:
        _write_atomically(file, raw)
    except OSError as exc:
        raise fail(f"cannot write {file}: {exc.strerror or exc}") from None
    typer.echo(
        f"saved {file}: {protocol} store at index {first.index} (term {first.term}), "
        f"{len(data)} bytes, sha256 {first.sha256.hex()[:16]}"
    )


async def _fetch(client: AsyncClient, endpoints: str) -> tuple[str, BackupChunk, bytes]:
    """(protocol, first chunk, every byte of the image), checked."""
    try:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + client.deadline_s
        while not (statuses := [s for s in await client.cluster_status() if s is not None]):
            if loop.time() >= give_up:
                raise TimeoutError(f"no node at {endpoints} answered within {client.deadline_s} s")
            await asyncio.sleep(STATUS_RETRY_S)
        protocol = statuses[0].protocol
        if protocol not in SUPPORTED_PROTOCOLS:
            raise ClientError(f"snapshots are for Raft clusters; this one runs {protocol}")
        first = await client.backup_chunk()
        parts = [first.data]
        received = len(first.data)
        while received < first.total_bytes:
            chunk = await client.backup_chunk(first.image, received)
            if chunk.sha256 != first.sha256 or not chunk.data:
                raise ClientError("the snapshot changed while it was fetched (a node restarted?); save again")
            parts.append(chunk.data)
            received += len(chunk.data)
        data = b"".join(parts)
        if len(data) != first.total_bytes or hashlib.sha256(data).digest() != first.sha256:
            raise ClientError("the fetched snapshot does not match its checksum; save again")
        return protocol, first, data
    finally:
        await client.close()


def _write_atomically(file: Path, raw: bytes) -> None:
    from quorate.storage.snapshot_files import fsync_directory

    temp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, file)
    finally:
        temp.unlink(missing_ok=True)
    fsync_directory(file.parent)


@snapshot_app.command("restore")
def restore_command(
    file: Annotated[Path, typer.Argument(help="A file written by 'quorate snapshot save'.")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="New cluster directory: fills DIR/n1 ... DIR/nN.")
    ] = None,
    nodes: Annotated[int, typer.Option("--nodes", help="Nodes of the new cluster (with --dir).")] = 3,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="One node's data directory (with --node, --members).")
    ] = None,
    node: Annotated[str | None, typer.Option("--node", help="That node's name, e.g. n2.")] = None,
    members: Annotated[
        str | None, typer.Option("--members", help="Every member of the new cluster, e.g. n1,n2,n3.")
    ] = None,
    storage: Annotated[str, typer.Option("--storage", help=f"Storage engine: {', '.join(STORAGE_KINDS)}.")] = "sqlite",
) -> None:
    """Build new, empty data directories from a snapshot file."""
    targets, voters = _targets(directory, nodes, data_dir, node, members)
    if storage not in STORAGE_KINDS:
        raise fail(f"--storage must be one of {', '.join(STORAGE_KINDS)}, got {storage!r}")
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        backup = decode_backup_file(raw)
    except BackupFileError as exc:
        raise fail(f"{file}: {exc}") from None
    header = backup.header
    if header.protocol not in SUPPORTED_PROTOCOLS:
        raise fail(f"{file} holds a {header.protocol} store; only Raft snapshots can be restored")
    store = KVStore()
    try:
        store.restore(backup.data)
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise fail(f"{file}: the store in it does not load ({exc})") from None
    for _, path in targets:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise fail(f"{path} already holds data; restore into a new, empty directory")
    for _, path in targets:
        _write_data_dir(path, storage, header.index, header.term, voters, backup.data)
    typer.echo(
        f"restored index {header.index} (term {header.term}, {len(store)} key{'' if len(store) == 1 else 's'}, "
        f"saved {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(header.created_at_s))}) into "
        + ", ".join(str(p) for _, p in targets)
    )
    if directory is not None:
        typer.echo(f"start it with: quorate cluster up --dir {directory} --nodes {nodes}")


def _targets(
    directory: Path | None, nodes: int, data_dir: Path | None, node: str | None, members: str | None
) -> tuple[list[tuple[NodeId, Path]], tuple[int, ...]]:
    """(node, data directory) pairs to fill, and the new cluster's voters."""
    if (directory is None) == (data_dir is None):
        raise fail("give --dir (a new local cluster) or --data-dir (one node), not both")
    if directory is not None:
        if node is not None or members is not None:
            raise fail("--node and --members go with --data-dir")
        if nodes < 1:
            raise fail(f"--nodes must be at least 1, got {nodes}")
        ids = [NodeId(i) for i in range(1, nodes + 1)]
        return [(n, directory / node_name(n)) for n in ids], tuple(int(n) for n in ids)
    assert data_dir is not None
    if node is None or members is None:
        raise fail("--data-dir needs --node and --members")
    try:
        me = parse_node_name(node)
        voters = sorted({parse_node_name(m.strip()) for m in members.split(",") if m.strip()})
    except ValueError as exc:
        raise fail(str(exc)) from None
    if me not in voters:
        raise fail(f"{node_name(me)} is not in --members")
    return [(me, data_dir)], tuple(int(v) for v in voters)


def _write_data_dir(path: Path, storage: str, index: int, term: int, voters: tuple[int, ...], data: bytes) -> None:
    """The snapshot as the node's own, committed at ``index``: the node starts
    from it as after a compaction, and its term continues from ``term``."""
    from quorate.raft.messages import HardState, Snapshot
    from quorate.runtime.aio.node import open_disk_storage

    path.mkdir(parents=True, exist_ok=True)
    disk = open_disk_storage(storage, path, hard_state_type=HardState, snapshot_type=Snapshot)
    try:
        disk.persist(HardState(term, None, index), [], Snapshot(index, term, voters, (), data))
    finally:
        disk.close()
