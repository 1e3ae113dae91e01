"""``quorate dashboard`` in headless Chromium (Debian's ``chromium`` through
playwright's ``executable_path``): the page loads, shows the nodes and the
leader, and updates after the leader is killed. The screenshot it takes is
the README's (``QUORATE_SCREENSHOT_DIR`` keeps it). Against a multi-Raft
cluster, the dashboard shows every range group with its leader, and the page
draws them (``quorate cluster status`` shows the same ranges)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import FAST_RAFT, START_LIMIT_S, WAIT_LIMIT_S, free_base_port

from quorate.ids import NodeId
from quorate.runtime.aio.cluster import LocalCluster, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    made = LocalCluster(tmp_path / "cluster", nodes=3, base_port=free_base_port(3), insecure=True, options=dict(FAST_RAFT))
    made.write_configs()
    made.start_all()
    try:
        yield made
    finally:
        made.kill_all()


@pytest.fixture
def dashboard(cluster: LocalCluster) -> Iterator[str]:
    with _dashboard(cluster) as url:
        yield url


@contextlib.contextmanager
def _dashboard(cluster: LocalCluster) -> Iterator[str]:
    port = free_base_port(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "quorate", "dashboard", "--endpoints", ",".join(cluster.endpoints), "--insecure",
         "--port", str(port), "--interval", "0.2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        assert wait_for(lambda: _state(url) is not None or process.poll() is not None, START_LIMIT_S, 0.1)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _state(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url + "state", timeout=2) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def test_state_follows_the_cluster_without_a_browser(cluster: LocalCluster, dashboard: str) -> None:
    assert wait_for(lambda: (_state(dashboard) or {}).get("leader") is not None, WAIT_LIMIT_S, 0.1)
    state = _state(dashboard)
    assert state is not None and state["nodes_up"] == 3
    assert [n["node"] for n in state["nodes"]] == [1, 2, 3]  # type: ignore[union-attr, index]
    roles = sorted(n["role"] for n in state["nodes"])  # type: ignore[union-attr, index]
    assert roles == ["follower", "follower", "leader"]
    with urllib.request.urlopen(dashboard, timeout=5) as answer:
        assert b"<title>quorate dashboard</title>" in answer.read()


@needs_chromium
def test_the_page_shows_the_nodes_and_the_leader_and_follows_a_leader_change(
    cluster: LocalCluster, dashboard: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            page.goto(dashboard)
            timeout_ms = WAIT_LIMIT_S * 1000
            expect(page.locator("#nodes tr")).to_have_count(3, timeout=timeout_ms)
            expect(page.locator("#leader")).to_have_text(_leader_pattern(), timeout=timeout_ms)
            _write(cluster, 200)  # some load for the throughput chart
            first = page.locator("#leader").inner_text()
            old = int(first.removeprefix("n"))
            expect(page.locator(f"#nodes tr[data-node='{old}'] td.role")).to_have_text("leader")
            cluster.kill(NodeId(old))
            expect(page.locator(f"#nodes tr[data-node='{old}'] td.role")).to_have_text("down", timeout=timeout_ms)
            expect(page.locator("#leader")).not_to_have_text(first, timeout=timeout_ms)
            expect(page.locator("#leader")).to_have_text(_leader_pattern(), timeout=timeout_ms)
            new = page.locator("#leader").inner_text()
            assert new != first
            expect(page.locator(f"#nodes tr[data-node='{new.removeprefix('n')}'] td.role")).to_have_text("leader")
            expect(page.locator("#events")).to_contain_text(f"leader is now {new}", timeout=timeout_ms)
            expect(page.locator("#events")).to_contain_text(f"{first} stopped answering")
            expect(page.locator("#nodes-up")).to_have_text("2 / 3")
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            keep = os.environ.get("QUORATE_SCREENSHOT_DIR")
            if keep:
                shutil.copy(shot, Path(keep) / "dashboard.png")
        finally:
            browser.close()


RANGES = 4


def test_a_multi_raft_cluster_shows_every_range_and_its_leader(tmp_path: Path) -> None:
    cluster = LocalCluster(
        tmp_path / "cluster", nodes=3, base_port=free_base_port(3), insecure=True, options=dict(FAST_RAFT), ranges=RANGES
    )
    cluster.write_configs()
    cluster.start_all()
    try:
        with _dashboard(cluster) as url:

            def all_led() -> bool:
                state = _state(url) or {}
                return len(state.get("groups") or []) >= RANGES and not state.get("groups_leaderless")

            assert wait_for(all_led, WAIT_LIMIT_S, 0.2), _state(url)
            state = _state(url)
            assert state is not None
            groups = state["groups"]
            assert isinstance(groups, list)
            assert all(g["leader"] in (1, 2, 3) and g["replicas"] for g in groups)
            leaders = state["leaders_per_node"]
            assert isinstance(leaders, dict) and sum(leaders.values()) == len(groups)
            if CHROMIUM is not None:
                from playwright.sync_api import expect, sync_playwright

                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
                    try:
                        page = browser.new_page(viewport={"width": 1100, "height": 900})
                        page.goto(url)
                        expect(page.locator("#groups-section")).to_be_visible(timeout=WAIT_LIMIT_S * 1000)
                        expect(page.locator("#groups tr")).to_have_count(len(groups), timeout=WAIT_LIMIT_S * 1000)
                    finally:
                        browser.close()
    finally:
        cluster.kill_all()


def _write(cluster: LocalCluster, count: int) -> None:
    from quorate import Client

    with Client(cluster.endpoints, insecure=True) as kv:  # its own loop thread, beside playwright's
        for i in range(count):
            kv.put(f"k{i}", "v")


def _leader_pattern() -> object:
    import re

    return re.compile(r"^n[123]$")


@pytest.mark.slow
def test_an_hrb_deployment_shows_its_shards_and_core_with_their_leaders(tmp_path: Path) -> None:
    base = free_base_port(8)
    env = {**os.environ, "QUORATE_BASE_PORT": str(base)}
    directory = tmp_path / "hrb"
    up = subprocess.run(
        [sys.executable, "-m", "quorate", "cluster", "up", "--protocol", "hrb", "--shards", "2", "--shard-size", "4",
         "--core", "4", "--insecure", "--dir", str(directory)],
        capture_output=True, text=True, env=env, timeout=180, stdin=subprocess.DEVNULL,
    )
    cluster = LocalCluster.open(directory)
    try:
        assert up.returncode == 0, up.stderr
        with _dashboard(cluster) as url:

            def shown() -> bool:
                state = _state(url) or {}
                kinds = sorted(str(g["kind"]) for g in state.get("groups") or [])  # type: ignore[union-attr]
                return kinds == ["core", "shard", "shard"]

            assert wait_for(shown, WAIT_LIMIT_S, 0.3), _state(url)
            state = _state(url)
            assert state is not None and state["nodes_up"] == 8 and not state["split"]
            groups = state["groups"]
            assert isinstance(groups, list)
            core = next(g for g in groups if g["kind"] == "core")
            assert state["leader"] == core["leader"]
            for shard in (g for g in groups if g["kind"] == "shard"):
                assert shard["leader"] in shard["replicas"] and len(shard["replicas"]) == 4
    finally:
        cluster.kill_all()
