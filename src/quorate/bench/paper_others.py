"""Fig. 3, partition availability, recovery and storage: from the benchmarks that own them.

Theory of operation. These figures are measured by other faces of quorate:
HRB's simulator (``quorate sim hrb``: Byzantine leader detection, Fig. 3),
``quorate bench partition`` (availability under partitions) and ``quorate
bench recovery`` (recovery time, recovery bandwidth, storage). This module
runs each as its own process with ``--json`` (so a figure's memory and
crashes stay its own), keeps the whole JSON, and picks out the figures the
claims table compares. A face this build does not have (its ``--help``
fails) is reported as ``not available in this build``; nothing is estimated
in its place. Keys are looked up by the names the faces' issues give them;
a figure whose key is absent is reported as missing from that JSON.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

FIGURE_TIMEOUT_S = 300.0
FIGURE_TIMEOUT_QUICK_S = 60.0


def _quorate(*args: str) -> list[str]:
    return [sys.executable, "-m", "quorate", *args]


_LIST_COMMANDS = """
import json
import typer.main
from quorate.cli.main import _register, app
_register()
root = typer.main.get_command(app)
print(json.dumps({name: sorted(getattr(c, "commands", {})) for name, c in root.commands.items()}))
"""
_FACES: dict[str, list[str]] | None = None


def faces() -> dict[str, list[str]]:
    """The commands of this build's ``quorate`` CLI (group -> subcommands), read
    once in a child process (a benchmark does not import the CLI)."""
    global _FACES
    if _FACES is None:
        try:
            done = subprocess.run([sys.executable, "-c", _LIST_COMMANDS], capture_output=True, text=True, timeout=120)
            _FACES = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
            _FACES = {}
    return _FACES


def face_available(group: str, command: str) -> bool:
    """True when ``quorate GROUP COMMAND`` exists in this build."""
    return command in faces().get(group, [])


def _run_json(args: list[str], timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    command = "quorate " + " ".join(args[3:])
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "command": command, "reason": f"did not finish within {timeout_s:.0f} s"}
    wall = round(time.perf_counter() - started, 2)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"status": "failed", "command": command, "reason": f"exited {done.returncode}: {last}", "wall_s": wall}
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"status": "failed", "command": command, "reason": "printed no JSON", "wall_s": wall}
    return {"status": "measured", "command": command, "wall_s": wall, "json": data}


def _find(data: Any, *names: str) -> Any:
    """The first value under any of ``names``, searched depth first."""
    if isinstance(data, dict):
        for name in names:
            if name in data:
                return data[name]
        for value in data.values():
            found = _find(value, *names)
            if found is not None:
                return found
    return None


def _figure_3(quick: bool, seed: int) -> dict[str, Any]:
    if not face_available("sim", "hrb"):
        return {"status": "not available in this build", "reason": "no `quorate sim hrb` command"}
    nodes = 100 if quick else 200
    # f = floor((n - 1) / 3) Byzantine nodes would exceed what a shard leader
    # mix can place as leaders; the shard leaders turned Byzantine are the
    # behaviours HRB detects (equivocation, censorship, forging).
    args = _quorate(
        "sim", "hrb", "--nodes", str(nodes), "--shard-size", "25", "--core", "7", "--regions", "3",
        "--inter-region-ms", "50", "--bandwidth-gbps", "1", "--quorum", "byzantine",
        "--byzantine", "2:equivocating-leader,1:censoring-leader,1:forging-leader",
        "--duration", "10" if quick else "20", "--seed", str(seed), "--json",
    )
    out = _run_json(args, FIGURE_TIMEOUT_QUICK_S * 3 if quick else FIGURE_TIMEOUT_S)
    if out["status"] != "measured":
        return out
    detections = _find(out["json"], "detections") or []
    times = sorted(
        float(d["detected_after_s"]) for d in detections if isinstance(d, dict) and isinstance(d.get("detected_after_s"), (int, float))
    )
    out["detection_s"] = {
        "count": len(times),
        "median": round(statistics.median(times), 3) if times else None,
        "max": round(times[-1], 3) if times else None,
        "cdf": [[t, (i + 1) / len(times)] for i, t in enumerate(times)],
    }
    out["safety_violations"] = _find(out["json"], "safety_violations")
    out["liveness_ok"] = _find(out["json"], "liveness_ok")
    return out


def _partition(quick: bool, seed: int) -> dict[str, Any]:
    if not face_available("bench", "partition"):
        return {"status": "not available in this build", "reason": "no `quorate bench partition` command"}
    args = _quorate("bench", "partition", "--json", "--first-seed", str(seed), *(("--seeds", "1") if quick else ()))
    out = _run_json(args, FIGURE_TIMEOUT_QUICK_S if quick else FIGURE_TIMEOUT_S)
    if out["status"] == "measured":
        out["availability"] = _find(out["json"], "availability", "intra_shard_availability")
    return out


def _at(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


BANDWIDTH_STALE_S = 10.0
"""The stale period whose delta-sync saving is compared with the paper's -73 %."""


def _recovery(quick: bool, seed: int) -> dict[str, Any]:
    if not face_available("bench", "recovery"):
        return {"status": "not available in this build", "reason": "no `quorate bench recovery` command"}
    mb = "10" if quick else "100"
    args = _quorate("bench", "recovery", "--checkpoint-mb", mb, "--seed", str(seed), "--json")
    if quick:
        args.insert(-1, "--no-real")
    out = _run_json(args, FIGURE_TIMEOUT_QUICK_S if quick else FIGURE_TIMEOUT_S)
    if out["status"] == "measured":
        data = out["json"]
        out["checkpoint_mb"] = int(mb)
        # Keys of quorate.bench.recovery's report (simulated 1 Gbps recovery).
        out["recovery_s"] = _at(data, "recovery_sim", "checkpoint", "total_s")
        out["full_replication_s"] = _at(data, "recovery_sim", "full_state", "total_s")
        rows = data.get("delta") if isinstance(data.get("delta"), list) else []
        savings = {row.get("stale_s"): row.get("saving") for row in rows if isinstance(row, dict)}
        out["bandwidth_savings_by_stale_s"] = savings
        out["bandwidth_reduction"] = savings.get(BANDWIDTH_STALE_S)
        out["storage_reduction"] = _at(data, "storage", "saving")
    return out


def run_other_figure(figure: str, quick: bool, seed: int) -> dict[str, Any]:
    """One of ``3``, ``partition``, ``recovery``, ``storage`` (storage is part of recovery's JSON)."""
    if figure == "3":
        return _figure_3(quick, seed)
    if figure == "partition":
        return _partition(quick, seed)
    if figure in ("recovery", "storage"):
        return _recovery(quick, seed)
    raise ValueError(f"unknown figure {figure!r}")
