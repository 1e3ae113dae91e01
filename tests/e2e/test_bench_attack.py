"""``quorate bench attack`` end to end: every attack refused or contained, the
cluster kept committing during each, nothing lost, the vote verified."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_attack_is_refused_or_contained_and_the_cluster_keeps_committing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quorate", "bench", "attack", "--json", "--window-s", "2"],
        capture_output=True,
        text=True,
        timeout=540,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, (result.stderr, [s for s in report["scenarios"] if not s["contained"]])
    assert report["ok"] and report["lost_writes"] == 0 and report["failed_writes"] == 0
    names = [s["attack"] for s in report["scenarios"]]
    assert names == ["sybil", "eclipse", "flood", "replay_forge", "forged_votes", "old_tls", "revoked"]
    for scenario in report["scenarios"]:
        assert scenario["attempts"] > 0
        assert scenario["throughput_during_ops"] > 0, scenario
    votes = next(s for s in report["scenarios"] if s["attack"] == "forged_votes")
    assert set(votes["answers"]) == {
        "unknown voter",
        "double vote",
        "bad ballot: bit proof does not verify",
        "bad ballot: commitment is not a Ristretto255 point",
        "bad ballot: bit proof is not 128 bytes of canonical scalars",
    }
    assert report["vote"]["verified_by_every_replica"]


@pytest.mark.timeout(60)
def test_a_bad_window_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quorate", "bench", "attack", "--window-s", "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "quorate: error: --window-s must be > 0 and --clients >= 1"
