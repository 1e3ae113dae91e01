"""``quorate snapshot restore`` refuses every damaged or foreign file and every
wrong target with one line and exit code 2, writing nothing; a good file
fills one node's data directory with a snapshot that node recovers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quorate.cli import snapshot
from quorate.cli.main import app
from quorate.ids import NodeId
from quorate.raft import RaftConfig, RaftNode
from quorate.raft.messages import HardState, Snapshot
from quorate.runtime.aio.node import open_disk_storage
from quorate.state.backup import encode_backup_file
from quorate.state.kv import Command, KVStore, Put, encode_command

COMMANDS = (snapshot.restore_command, snapshot.save_command)  # importing registers them
runner = CliRunner()


def _good_file() -> bytes:
    store = KVStore()
    store.apply(1, encode_command(Command(1, 1, Put("k", "v"), time_s=5.0)))
    store.apply(2, encode_command(Command(1, 2, Put("t", "x", ttl_s=60.0), time_s=6.0)))
    return encode_backup_file("raft", 2, 3, 0.0, store.snapshot())


def refused(args: list[str], words: str) -> None:
    result = runner.invoke(app, ["snapshot", "restore", *args])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("quorate: error:") and words in lines[0], result.stderr


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda raw: raw[: len(raw) // 2], "truncated"),
        (lambda raw: raw[:-40] + bytes([raw[-40] ^ 1]) + raw[-39:], "checksum mismatch"),
        (lambda raw: b"PK\x03\x04 not a snapshot at all", "not a quorate snapshot"),
        (lambda raw: b"", "truncated"),
        (lambda raw: raw + b"\n", "after the checksum"),
    ],
    ids=["truncated", "flipped-bit", "foreign", "empty", "trailing"],
)
def test_a_damaged_file_is_refused_and_nothing_is_written(tmp_path: Path, damage: object, words: str) -> None:
    bad = tmp_path / "bad.snap"
    bad.write_bytes(damage(_good_file()))  # type: ignore[operator]
    refused([str(bad), "--dir", str(tmp_path / "target")], words)
    assert not (tmp_path / "target").exists()


def test_a_foreign_protocol_or_a_store_that_does_not_load_is_refused(tmp_path: Path) -> None:
    pbft = tmp_path / "pbft.snap"
    pbft.write_bytes(encode_backup_file("pbft", 1, 1, 0.0, b""))
    refused([str(pbft), "--dir", str(tmp_path / "t")], "only Raft snapshots")
    junk = tmp_path / "junk.snap"
    junk.write_bytes(encode_backup_file("raft", 1, 1, 0.0, b"\x93junk"))
    refused([str(junk), "--dir", str(tmp_path / "t")], "does not load")
    assert not (tmp_path / "t").exists()


def test_wrong_targets_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.snap"
    good.write_bytes(_good_file())
    refused([str(tmp_path / "missing.snap"), "--dir", str(tmp_path / "t")], "cannot read")
    refused([str(good)], "--dir")
    refused([str(good), "--dir", "a", "--data-dir", "b"], "not both")
    refused([str(good), "--data-dir", str(tmp_path / "d")], "--node")
    refused([str(good), "--data-dir", "d", "--node", "n4", "--members", "n1,n2"], "not in --members")
    refused([str(good), "--data-dir", "d", "--node", "four", "--members", "n1"], "not a node id")
    refused([str(good), "--dir", "x", "--nodes", "0"], "--nodes")
    refused([str(good), "--dir", "x", "--storage", "tape"], "--storage")
    occupied = tmp_path / "occupied" / "n2"
    occupied.mkdir(parents=True)
    (occupied / "something").write_text("data")
    refused([str(good), "--dir", str(tmp_path / "occupied")], "already holds data")
    assert not (tmp_path / "occupied" / "n1").exists()  # checked before anything is written


@pytest.mark.parametrize("storage", ["sqlite", "wal"])
def test_a_restored_node_recovers_the_snapshot_as_its_own(tmp_path: Path, storage: str) -> None:
    good = tmp_path / "good.snap"
    good.write_bytes(_good_file())
    target = tmp_path / "n2"
    result = runner.invoke(
        app,
        ["snapshot", "restore", str(good), "--data-dir", str(target), "--node", "n2", "--members", "n1,n2,n3", "--storage", storage],
    )
    assert result.exit_code == 0, result.output
    assert "restored index 2 (term 3, 2 keys" in result.stdout
    disk = open_disk_storage(storage, target, hard_state_type=HardState, snapshot_type=Snapshot)
    try:
        recovered = disk.recover()
    finally:
        disk.close()
    assert recovered.hard_state == HardState(3, None, 2)
    assert (recovered.snapshot.index, recovered.snapshot.term, recovered.snapshot.voters) == (2, 3, (1, 2, 3))
    core = RaftNode(
        NodeId(2), (NodeId(1), NodeId(2), NodeId(3)), config=RaftConfig(), rng=random.Random(1), now=0.0, recovered=recovered
    )
    assert core.commit_index == 2 and core.term == 3
    store = KVStore()
    store.restore(recovered.snapshot.data)
    assert store.get("k") == "v" and store.next_deadline_s == 66.0
