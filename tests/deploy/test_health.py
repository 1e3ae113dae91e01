"""The node's /readyz and /livez on a port of their own (real processes);
the transport's dead-peer detection on peer sockets; the config field."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.e2e.conftest import FAST_RAFT, WAIT_LIMIT_S, free_base_port

from quorate.errors import ConfigError
from quorate.runtime.aio.cluster import LocalCluster
from quorate.runtime.aio.config import load_node_config, node_config_from_mapping
from quorate.runtime.aio.health import readiness
from quorate.runtime.aio.transport import _detect_dead_peer


def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_status(port: int, code: int) -> dict:
    deadline = time.monotonic() + WAIT_LIMIT_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = _get(port, "/readyz")
        except OSError as exc:
            last = exc
        else:
            if status == code:
                return body
            last = (status, body)
        time.sleep(0.1)
    raise AssertionError(f"/readyz never answered {code}: {last}")


def test_readyz_answers_503_until_a_leader_is_known_then_200(tmp_path: Path) -> None:
    base = free_base_port(6)
    cluster = LocalCluster(tmp_path / "c", nodes=3, base_port=base, insecure=True, options=dict(FAST_RAFT))
    cluster.write_configs()
    health = {node: base + 3 + i for i, node in enumerate(cluster.ids)}
    for node in cluster.ids:
        config = dataclasses.replace(cluster.node_config(node), health_listen=("127.0.0.1", health[node]))
        cluster.config_path(node).write_text(config.to_toml())
    first = cluster.ids[0]
    try:
        cluster.start(first)
        # Alone, n1 reaches no quorum: live but not ready.
        body = _wait_status(health[first], 503)
        assert body["ready"] is False and "connected to 0 of the 1 peers" in body["why"]
        assert _get(health[first], "/livez") == (200, {"live": True})
        assert _get(health[first], "/metrics")[0] == 404
        assert _get(health[first], "/readyz", method="POST")[0] == 405
        cluster.start_all()
        for node in cluster.ids:
            assert _wait_status(health[node], 200)["ready"] is True
        # The protocol port still speaks frames only: HTTP there is refused.
        with socket.create_connection(cluster.address(first), timeout=2) as s:
            s.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
            s.settimeout(WAIT_LIMIT_S)
            assert b"HTTP" not in s.recv(1024)
    finally:
        cluster.kill_all()


@pytest.mark.parametrize(
    ("metrics", "leader", "members", "connected", "ready"),
    [
        ({}, 2, 3, 1, True),  # raft: a majority is itself and one peer
        ({}, 2, 3, 0, False),  # a leader it heard of, but no peer reachable now
        ({}, None, 3, 2, False),  # electing
        ({"bft.view": 0, "bft.leader": 1}, None, 4, 2, True),  # 2f + 1 = 3 with itself
        ({"bft.view": 0, "bft.leader": 1}, None, 4, 1, False),
        ({"bft.view": 3, "bft.leader": 4}, None, 7, 3, False),  # n = 7: f = 2, needs 4 peers
    ],
)
def test_readiness_needs_a_leader_and_a_quorum_of_connections(
    metrics: dict[str, int], leader: int | None, members: int, connected: int, ready: bool
) -> None:
    status = SimpleNamespace(
        leader=leader, role="follower", metrics=metrics, voters=tuple(range(1, members + 1)), members={}
    )
    assert readiness(status, connected)[0] is ready


def test_health_listen_is_validated_and_round_trips(tmp_path: Path) -> None:
    raw = {"id": "n1", "listen": "127.0.0.1:7001", "data_dir": "d", "insecure": True}
    config = node_config_from_mapping({**raw, "health_listen": "0.0.0.0:8080"})
    assert config.health_listen == ("0.0.0.0", 8080)
    path = tmp_path / "n1.toml"
    path.write_text(config.to_toml())
    assert load_node_config(path).health_listen == ("0.0.0.0", 8080)
    with pytest.raises(ConfigError, match="port of its own"):
        node_config_from_mapping({**raw, "health_listen": "127.0.0.1:7001"})
    with pytest.raises(ConfigError, match="health_listen"):
        node_config_from_mapping({**raw, "health_listen": "8080"})


def test_peer_sockets_give_up_on_a_silent_peer() -> None:
    async def main() -> tuple[int, int]:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        _detect_dead_peer(writer, 10.0)
        sock = writer.get_extra_info("socket")
        options = (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )
        writer.close()
        server.close()
        return options

    keepalive, user_timeout_ms = asyncio.run(main())
    assert keepalive == 1 and user_timeout_ms == 10_000
