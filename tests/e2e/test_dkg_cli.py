"""Distributed key generation started by the cluster itself and by an
operator, on real node processes: ``[security] dkg_threshold`` makes the
members run session ``genesis`` once they are up; ``quorate keys dkg start``
runs another with a chosen threshold and members; ``quorate keys dkg
status`` shows every node done with the same group key digest, and every
node's log holds the full key (the same on all). Bad input ends in one line."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.conftest import FAST_RAFT, WAIT_LIMIT_S, free_base_port

from quorate.ids import node_name
from quorate.runtime.aio.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.timeout(300)

KEY_LOGGED = re.compile(r"DKG session (\S+) done: group public key ([0-9a-f]+)")


def quorate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quorate", *args], capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL
    )


def _keys_logged(cluster: LocalCluster, session: str) -> dict[str, str]:
    out = {}
    for node in cluster.ids:
        for record in cluster.log_records(node):
            found = KEY_LOGGED.search(str(record.get("msg", "")))
            if found and found.group(1) == session:
                out[node_name(node)] = found.group(2)
    return out


def test_a_cluster_generates_its_threshold_key_by_itself_and_on_request(tmp_path: Path) -> None:
    cluster = LocalCluster(
        tmp_path / "c", nodes=4, base_port=free_base_port(4), insecure=True, options=dict(FAST_RAFT), node_keys=True
    )
    cluster.write_configs()
    for node in cluster.ids:
        config = dataclasses.replace(
            cluster.node_config(node), security={"dkg_threshold": 3, "relay_retry_s": 0.3}
        )
        cluster.config_path(node).write_text(config.to_toml())
    cluster.start_all()
    endpoints = ",".join(cluster.endpoints)
    try:
        assert wait_for(
            lambda: "not found" in quorate("kv", "get", "any", "--endpoints", endpoints, "--insecure").stderr,
            WAIT_LIMIT_S, 0.5,
        ), "the cluster did not start"
        status = quorate("keys", "dkg", "status", "--endpoints", endpoints, "--insecure", "--wait", "genesis", "--json")
        assert status.returncode == 0, status.stderr
        genesis = json.loads(status.stdout)["sessions"]["genesis"]
        assert genesis["agreed"] and set(genesis["nodes"]) == {"n1", "n2", "n3", "n4"}

        started = quorate(
            "keys", "dkg", "start", "pair", "--threshold", "2", "--members", "n1,n2,n3", "--as", "n2",
            "--keys-dir", str(cluster.directory / "keys"), "--endpoints", endpoints, "--insecure",
        )
        assert started.returncode == 0, started.stderr
        assert "DKG session 'pair' done" in started.stdout
        state = json.loads(quorate("keys", "dkg", "status", "--endpoints", endpoints, "--insecure", "--json").stdout)
        pair = state["sessions"]["pair"]
        assert pair["agreed"] and pair["nodes"]["n4"]["state"] == "not a participant"
        assert pair["key_digest"] != genesis["key_digest"]
        assert wait_for(lambda: len(_keys_logged(cluster, "genesis")) == 4, WAIT_LIMIT_S, 0.2)
        assert len(set(_keys_logged(cluster, "genesis").values())) == 1  # one group key, logged by every member

        again = quorate(
            "keys", "dkg", "start", "pair", "--threshold", "2", "--as", "n1",
            "--keys-dir", str(cluster.directory / "keys"), "--endpoints", endpoints, "--insecure",
        )
        assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
        too_many = quorate(
            "keys", "dkg", "start", "big", "--threshold", "9", "--as", "n1",
            "--keys-dir", str(cluster.directory / "keys"), "--endpoints", endpoints, "--insecure",
        )
        assert too_many.returncode == 2 and "--threshold" in too_many.stderr and "Traceback" not in too_many.stderr
    finally:
        cluster.kill_all()


def test_a_negative_dkg_threshold_is_a_config_error() -> None:
    from quorate.errors import ConfigError
    from quorate.runtime.aio.security import parse_security_table

    with pytest.raises(ConfigError, match="dkg_threshold"):
        parse_security_table({"dkg_threshold": -1})
    assert parse_security_table({"dkg_threshold": 3}).settings.dkg_threshold == 3
