"""``quorate demo --json`` end to end: a real cluster loses its leader to
SIGKILL, loses no acknowledged write and stays linearizable. With ``--keep``
it says where it kept its directory (stderr and JSON); with ``--history``
it writes the history in the checker's format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)


def test_demo_json_reports_no_loss_and_linearizable(tmp_path: Path) -> None:
    history = tmp_path / "history.json"
    result = subprocess.run(
        [sys.executable, "-m", "quorate", "demo", "--json", "--insecure", "--keep",
         "--history", str(history)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    kept = Path(summary.get("kept_directory", ""))
    try:
        assert result.returncode == 0, (summary, result.stderr[-2000:])
        assert summary["acked_writes"] > 0
        assert summary["acked_writes_lost"] == 0
        assert summary["linearizable"] is True
        assert summary["leader_changes"] >= 1
        assert summary["recovery_seconds"] > 0
        # --keep: the directory is named on stderr (the JSON run is otherwise
        # silent there) and it holds the nodes' logs.
        assert result.stderr.strip().splitlines()[-1].startswith(f"kept {kept}: ")
        assert (kept / "n1.log").is_file() and (kept / "cluster.json").is_file()
        # --history: the file the checker reads, and it agrees.
        assert summary["history_file"] == str(history)
        events = json.loads(history.read_text())
        assert len(events) >= summary["history_operations"] > 0
        check = subprocess.run(
            [sys.executable, "-m", "quorate", "check", str(history)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        if kept.name.startswith("quorate-demo-"):
            shutil.rmtree(kept, ignore_errors=True)


def test_demo_refuses_a_history_path_it_cannot_write() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quorate", "demo", "--history", "/nonexistent-dir/h.json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write the history" in lines[0]


@pytest.mark.slow  # a whole demo (~30 s on a loaded machine) with the dashboard beside it
def test_demo_serves_the_dashboard_while_it_runs_and_stops_it_after(tmp_path: Path) -> None:
    import time
    import urllib.request

    from tests.e2e.conftest import free_base_port

    port = free_base_port(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "quorate", "demo", "--json", "--insecure", "--dashboard",
         "--dashboard-port", str(port), "--dashboard-hold", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and seen.get("leader") is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=2) as answer:
                    seen = json.loads(answer.read())
            except OSError:
                time.sleep(0.2)
        out, err = process.communicate(timeout=170)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err[-2000:]
    assert seen.get("leader") in (1, 2, 3) and seen.get("nodes_up") == 3
    assert json.loads(out.strip().splitlines()[-1])["linearizable"] is True
    with pytest.raises(OSError):  # the dashboard stopped with the demo
        urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=2)
