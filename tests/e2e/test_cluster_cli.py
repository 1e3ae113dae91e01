"""A new user's first steps with real clusters, as commands: ``quorate
cluster up`` for each protocol, then ``quorate kv`` and ``quorate.Client()``
with no other flag or argument (they read ``./quorate-cluster``), and every
way those steps can fail ending in one line with a non-zero exit code:

- ``cluster up`` that cannot start a node (its port taken): exit 1, that
  node's own reason, no process left running;
- ``cluster status`` and ``kv`` against a stopped cluster: exit 1 at once,
  "no node of the cluster at ... answered";
- ``node --protocol pbft`` on a Raft data directory: exit 2, one line;
- a wrong TLS path from Python: the project's ``ConfigError`` naming the
  file and where the certificates are, with no exception chained to it;
- a PBFT node without ``keys_dir``: a warning at start and in ``cluster
  status``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.e2e.conftest import listen_base_port

from quorate.errors import ConfigError
from quorate.runtime.aio.cluster import LocalCluster

pytestmark = pytest.mark.timeout(240)
CLI_TIMEOUT_S = 90.0
"""Bound on one command (its own waits are shorter); reaching it fails the test."""


def quorate(
    cwd: Path, *args: str, base_port: int | None = None, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """Run ``quorate ARGS`` in ``cwd`` as a user would."""
    env = {**os.environ, "COLUMNS": str(columns)}
    if base_port is not None:
        env["QUORATE_BASE_PORT"] = str(base_port)
    return subprocess.run(
        [sys.executable, "-m", "quorate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr.strip()}"
    return result.stdout


def one_line(result: subprocess.CompletedProcess[str], code: int, words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, f"exit {result.returncode}: {result.stderr.strip()}"
    assert len(lines) == 1 and lines[0].startswith("quorate: error: "), result.stderr
    assert words in lines[0], lines[0]
    return lines[0]


def down(cwd: Path) -> None:
    quorate(cwd, "cluster", "down")


@pytest.mark.parametrize("protocol", ["pbft", "hotstuff"])
def test_cluster_up_of_a_bft_protocol_then_kv_with_no_other_flags(tmp_path: Path, protocol: str) -> None:
    base = listen_base_port(4)
    try:
        up = ok(quorate(tmp_path, "cluster", "up", "--protocol", protocol, base_port=base))
        assert f"{protocol} cluster of 4" in up and "primary: n" in up
        assert "client certificate:" in up and "signing keys:" in up
        assert (tmp_path / "quorate-cluster" / "keys" / "public-keys.toml").is_file()
        assert (tmp_path / "quorate-cluster" / "certs" / "client.crt").is_file()
        assert ok(quorate(tmp_path, "kv", "put", "greeting", "hello")).strip() == "OK"
        assert ok(quorate(tmp_path, "kv", "get", "greeting")).strip() == "hello"
        status = ok(quorate(tmp_path, "cluster", "status", columns=80))
        assert "view" in status and "primary" in status and "warning" not in status
    finally:
        down(tmp_path)


def test_raft_cluster_from_the_shell_and_from_python_then_stopped(tmp_path: Path) -> None:
    base = listen_base_port(3)
    try:
        up = ok(quorate(tmp_path, "cluster", "up", base_port=base))
        assert "raft cluster of 3" in up and "logs:" in up
        assert ok(quorate(tmp_path, "kv", "put", "config/mode", "fast")).strip() == "OK"
        assert ok(quorate(tmp_path, "kv", "get", "config/mode")).strip() == "fast"
        # Python, in the same directory, with no argument at all.
        script = textwrap.dedent(
            """
            from quorate import Client
            with Client() as kv:
                kv.cas("config/mode", "fast", "safe")
                print(kv.get("config/mode"))
            """
        )
        python = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert python.returncode == 0, python.stderr
        assert python.stdout.strip() == "safe"
        # Leadership moves with no flags either.
        report = json.loads(ok(quorate(tmp_path, "cluster", "status", "--json")))
        target = next(row["node"] for row in report["nodes"] if row["role"] == "follower")
        ok(quorate(tmp_path, "leader", "transfer", target))
        # 80 columns, nothing cut.
        table = ok(quorate(tmp_path, "cluster", "status", columns=80))
        lines = [x for x in table.splitlines() if not x.startswith("directory: ")]
        assert all(len(line) <= 80 for line in lines), table
        assert "…" not in table and "follower" in table
    finally:
        down(tmp_path)
    stopped = quorate(tmp_path, "cluster", "status")
    one_line(stopped, 1, f"no node of the cluster at 127.0.0.1:{base},")
    as_json = quorate(tmp_path, "cluster", "status", "--json")
    assert as_json.returncode == 1
    assert "no node of the cluster" in json.loads(as_json.stdout)["error"]
    line = one_line(quorate(tmp_path, "kv", "get", "config/mode"), 1, "answered (is it running?")
    assert f"127.0.0.1:{base},127.0.0.1:{base + 1},127.0.0.1:{base + 2}" in line
    one_line(quorate(tmp_path, "kv", "get", "x", "--timeout", "-1"), 2, "--timeout")
    one_line(quorate(tmp_path, "kv", "get", "x", "--dir", "elsewhere"), 2, "no cluster in elsewhere")


def test_cluster_up_with_a_port_taken_exits_1_with_that_nodes_reason(tmp_path: Path) -> None:
    base = listen_base_port(3)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 1))
        squatter.listen()
        result = quorate(tmp_path, "cluster", "up", "--insecure", base_port=base)
    line = one_line(result, 1, "n2 could not start:")
    assert "address already in use" in line.lower() or "in use" in line, line
    assert "the other nodes were stopped" in line
    cluster = LocalCluster.open(tmp_path / "quorate-cluster")
    assert not any(cluster.running(n) for n in cluster.ids)


def test_a_node_refuses_a_data_directory_of_another_protocol(tmp_path: Path) -> None:
    base = listen_base_port(3)
    try:
        ok(quorate(tmp_path, "cluster", "up", "--insecure", base_port=base))
    finally:
        down(tmp_path)
    config = tmp_path / "quorate-cluster" / "n1.toml"
    result = quorate(tmp_path, "node", "--config", str(config), "--protocol", "pbft")
    line = one_line(result, 2, "holds raft data")
    assert "--protocol raft" in line


def test_a_wrong_tls_path_from_python_is_a_config_error_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quorate import Client

    monkeypatch.chdir(tmp_path)
    (tmp_path / "quorate-cluster" / "certs").mkdir(parents=True)
    (tmp_path / "quorate-cluster" / "certs" / "ca.crt").write_text("")
    with pytest.raises(ConfigError) as info:
        Client(["127.0.0.1:7001"], tls="certs")
    message = str(info.value)
    assert "TLS directory certs does not exist" in message
    assert "quorate-cluster/certs" in message
    assert info.value.__cause__ is None and info.value.__context__ is None
    with pytest.raises(ConfigError, match="no cluster in nowhere"):
        Client(cluster="nowhere")


def test_a_bft_node_without_keys_warns_at_start_and_in_status(tmp_path: Path) -> None:
    cluster = LocalCluster(
        tmp_path / "seeded",
        nodes=4,
        base_port=listen_base_port(4),
        insecure=True,
        protocol="pbft",
        options={"view_change_timeout_s": 0.5},
    )
    cluster.write_configs()
    cluster.start_all()
    try:
        for _ in range(100):
            probe = quorate(tmp_path, "cluster", "status", "--dir", str(cluster.directory), "--json")
            if probe.returncode == 0 and json.loads(probe.stdout)["nodes_up"] == 4:
                break
        status = quorate(tmp_path, "cluster", "status", "--dir", str(cluster.directory))
        assert status.returncode == 0, status.stderr
        text = " ".join(status.stdout.split())
        assert "warning: n1, n2, n3, n4 sign with keys derived from the shared test key seed" in text
        assert "for tests only" in text
        stderr = cluster.stderr_path(cluster.ids[0]).read_text()
        assert "quorate: warning: n1: no keys_dir" in stderr and "for tests only" in stderr
    finally:
        cluster.kill_all()
