"""``quorate demo --json`` end to end: a real cluster loses its leader to
SIGKILL, loses no acknowledged write and stays linearizable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(180)


def test_demo_json_reports_no_loss_and_linearizable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quorate", "demo", "--json", "--insecure"],
        capture_output=True,
        text=True,
        timeout=170,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, (summary, result.stderr[-2000:])
    assert summary["acked_writes"] > 0
    assert summary["acked_writes_lost"] == 0
    assert summary["linearizable"] is True
    assert summary["leader_changes"] >= 1
    assert summary["recovery_seconds"] > 0
