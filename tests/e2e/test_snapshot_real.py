"""``quorate snapshot save`` on a running cluster, ``quorate snapshot restore``
into a new one: every key written before the save reads back from the new
cluster (namespaces and TTLs included), which then takes writes of its own.
A target that already holds data is refused with one line and exit code 2; a
PBFT cluster, or no cluster at all, with exit code 1. (Damaged files:
``tests/unit/state/test_snapshot_cli.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e.conftest import WAIT_LIMIT_S

from quorate.client import Client
from quorate.runtime.aio.cluster import LocalCluster

pytestmark = pytest.mark.timeout(180)
KEYS = 200
CLI_TIMEOUT_S = 120.0


def quorate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quorate", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def refused(result: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("quorate: error:") and words in lines[0], result.stderr


def test_save_on_a_running_cluster_then_restore_into_a_new_one(
    make_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    old = make_cluster(3, name="old")
    old.write_configs()
    old.start_all()
    with Client(old.endpoints, insecure=True, deadline_s=WAIT_LIMIT_S) as client:
        for i in range(KEYS):
            client.put(f"key/{i:04d}", f"value-{i}")
        client.put("config/mode", "safe", namespace="ops")
        client.put("lease", "holder", ttl_s=3600.0)
        client.delete("key/0007")
    file = tmp_path / "backup.snap"
    saved = quorate("snapshot", "save", str(file), "--endpoints", ",".join(old.endpoints), "--insecure")
    assert saved.returncode == 0, saved.stderr
    assert f"saved {file}" in saved.stdout
    old.kill_all()  # the backup must not need the old cluster

    new = make_cluster(3, name="new")
    restored = quorate("snapshot", "restore", str(file), "--dir", str(new.directory), "--nodes", "3")
    assert restored.returncode == 0, restored.stderr
    assert f"{KEYS + 1} keys" in restored.stdout  # 200 - 1 deleted + namespaced + lease
    new.write_configs()
    new.start_all()
    with Client(new.endpoints, insecure=True, deadline_s=WAIT_LIMIT_S) as client:
        items = dict(client.list("key/", limit=10 * KEYS))
        assert items == {f"key/{i:04d}": f"value-{i}" for i in range(KEYS) if i != 7}
        assert client.get("config/mode", namespace="ops") == "safe"
        assert client.get("lease") == "holder"
        client.put("after-restore", "yes")
        assert client.get("after-restore") == "yes"

    # The restored directories now hold data: a second restore is refused.
    again = quorate("snapshot", "restore", str(file), "--dir", str(new.directory), "--nodes", "3")
    refused(again, 2, "already holds data")


def test_save_from_a_pbft_cluster_or_from_nowhere_fails_with_one_line(tmp_path: Path) -> None:
    from tests.e2e.conftest import free_base_port

    nobody = f"127.0.0.1:{free_base_port(1)}"
    refused(
        quorate("snapshot", "save", str(tmp_path / "x.snap"), "--endpoints", nobody, "--insecure", "--deadline-s", "1"),
        1,
        "no answer",
    )
    refused(quorate("snapshot", "save", str(tmp_path / "x.snap"), "--endpoints", "bad", "--insecure"), 2, "endpoint")
    cluster = LocalCluster(tmp_path / "pbft", nodes=4, base_port=free_base_port(4), insecure=True, protocol="pbft")
    cluster.write_configs()
    cluster.start_all()
    try:
        result = quorate("snapshot", "save", str(tmp_path / "x.snap"), "--endpoints", ",".join(cluster.endpoints), "--insecure")
        refused(result, 1, "Raft clusters")
    finally:
        cluster.kill_all()
    assert not (tmp_path / "x.snap").exists()
