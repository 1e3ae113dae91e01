"""Mistakes a user makes are caught at the edge: a bad config exits 2 with one
line, and a node with a certificate from another CA is refused (and the
refusal is logged and counted where ``quorate cluster status`` reads it)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from quorate.cli.certs import create_ca, issue_certificate
from quorate.client import Client
from quorate.runtime.aio.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.timeout(120)


def run_node(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quorate", "node", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('id = "n1"\nlisten = "127.0.0.1:7001"\ndata_dir = "d"\n', "insecure = true"),
        (
            'id = "n1"\nlisten = "localhost"\ndata_dir = "d"\ninsecure = true\n',
            "listen must look like",
        ),
        (
            'id = "x"\nlisten = "127.0.0.1:7001"\ndata_dir = "d"\ninsecure = true\n',
            "id must be a node name",
        ),
        (
            'id = 1\nlisten = "127.0.0.1:1"\ndata_dir = "d"\ninsecure = true\n[options]\nelection_timeout_s = -1\n',
            "election_timeout_s",
        ),
        (
            'id = 1\nlisten = "127.0.0.1:1"\ndata_dir = "d"\ninsecure = true\nprotocol = "paxos"\n',
            "unknown protocol",
        ),
        ("id = [", "not valid TOML"),
        (
            'id = 1\nlisten = "127.0.0.1:1"\ndata_dir = "d"\ninsecure = true\nkeys_dir = "keys"\n',
            "quorate keys issue n1",
        ),
        (
            'id = 1\nlisten = "127.0.0.1:1"\ndata_dir = "d"\ninsecure = true\n[security]\nadmission = "anyone"\n',
            "admission must be one of ca, quorum",
        ),
        (
            'id = 1\nlisten = "127.0.0.1:1"\ndata_dir = "d"\ninsecure = true\n[security]\nmax_connections = 0\n',
            "max_connections must be an integer >= 1",
        ),
        (
            'id = 1\nlisten = "127.0.0.1:1"\ndata_dir = "d"\ninsecure = true\nprotocol = "pbft"\nkeys_dir = "nokeys"\n',
            "quorate keys issue n1",
        ),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "node.toml"
    config.write_text(text)
    result = run_node(config)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_node_with_a_foreign_ca_certificate_is_refused(
    make_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = make_cluster(3, insecure=False)
    cluster.write_configs()
    tls_dir = cluster.tls_dir
    assert tls_dir is not None
    tls_dir.mkdir(parents=True)
    create_ca(tls_dir)
    for name in ("n1", "n2", "client"):
        issue_certificate(tls_dir, name)
    # n3 gets its own directory with a certificate from someone else's CA.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    create_ca(foreign, name="another CA")
    issue_certificate(foreign, "n3")
    config = cluster.config_path(cluster.ids[2])
    config.write_text(config.read_text().replace(str(tls_dir), str(foreign)))
    cluster.start_all()
    with Client(cluster.endpoints[:2], tls=tls_dir, deadline_s=20.0) as client:
        client.put("k", "v")  # n1 and n2 form a quorum without n3
        assert wait_for(
            lambda: bool(cluster.refusals(cluster.ids[0]) or cluster.refusals(cluster.ids[1])), 20.0
        )
        refused = sum(
            client.status(e).metrics.get("transport.tls_refused", 0) for e in cluster.endpoints[:2]
        )
        assert refused > 0
    # The refusal reaches the node's log file when its logger flushes.
    assert wait_for(lambda: any("TLS" in m for n in cluster.ids[:2] for m in cluster.refusals(n)), 20.0)


def test_a_bft_node_refuses_a_private_key_that_is_not_its_own(tmp_path: Path) -> None:
    from quorate.crypto.keyfiles import issue_node_key, key_file
    from quorate.ids import NodeId

    for node in (1, 2):
        issue_node_key(tmp_path / "keys", NodeId(node))
    key_file(tmp_path / "keys", NodeId(1)).write_text(key_file(tmp_path / "keys", NodeId(2)).read_text())
    config = tmp_path / "node.toml"
    config.write_text(
        'id = 1\nlisten = "127.0.0.1:1"\ndata_dir = "d"\ninsecure = true\nprotocol = "pbft"\n'
        'keys_dir = "keys"\n[peers]\nn2 = "127.0.0.1:2"\n'
    )
    result = run_node(config)
    assert result.returncode == 2
    assert "does not match n1's public key" in result.stderr.strip()


def test_the_protocol_flag_is_validated_like_the_file(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('id = 1\nlisten = "127.0.0.1:1"\ndata_dir = "d"\ninsecure = true\nkeys_dir = "nokeys"\n')
    base = [sys.executable, "-m", "quorate", "node", "--config", str(config)]
    for flag, message in (("paxos", "unknown protocol 'paxos'"), ("hotstuff", "quorate keys issue n1")):
        result = subprocess.run([*base, "--protocol", flag], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert message in result.stderr.strip()
