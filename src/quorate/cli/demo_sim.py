"""``quorate demo --sim``: the main job's story in the deterministic simulator.

The simulated version: a 5-node Raft cluster in the deterministic simulator,
closed-loop clients writing, reading and compare-and-setting, and the
``chaos`` fault preset (crashes, restarts, partitions, one-way cuts, slow
nodes, clock skew, loss bursts) until a heal point, then a liveness phase. It
reports the elections, the faults, the committed operations, the online safety
invariants and the linearizability verdict of the recorded history.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from quorate.check import check_history
from quorate.cli.sim import latency_text, leadership_text, ops_text, run_failures
from quorate.runtime.sim.cluster import SimConfig, run

DEMO_NODES = 5
DEMO_DURATION_S = 20.0
DEMO_CLIENTS = 8
CHECK_TIMEOUT_S = 120.0


def run_sim_demo(
    seed: int, duration_s: float, as_json: bool, history_path: Path | None = None
) -> int:
    console = Console(stderr=as_json, highlight=False)
    config = SimConfig(
        protocol="raft",
        nodes=DEMO_NODES,
        duration_s=duration_s,
        clients=DEMO_CLIENTS,
        faults="chaos",
        seed=seed,
    )
    config.validate()
    schedule = config.fault_schedule()
    heal_at = config.effective_heal_at_s()
    console.print(
        f"[bold]quorate demo[/] — a simulated {DEMO_NODES}-node Raft cluster, "
        f"{DEMO_CLIENTS} clients, {duration_s:g} s of simulated time, seed {seed}"
    )
    kinds = collections.Counter(action.kind for action in schedule)
    console.print(
        "  faults planned: "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        + (f"; everything healed at {heal_at:g} s" if heal_at is not None else "")
    )
    with console.status("running the simulation…"):
        result = run(config)
    with console.status(f"checking {len(result.history) // 2} operations for linearizability…"):
        started = time.monotonic()
        verdict = check_history(result.history, timeout_s=CHECK_TIMEOUT_S, clock=time.monotonic)
        check_s = time.monotonic() - started
    if history_path is not None:
        history_path.write_text(json.dumps(result.history) + "\n", encoding="utf-8")
        console.print(f"  history written to {history_path}")
    console.print(f"  {leadership_text(result)}", markup=False)
    console.print(
        f"  faults injected: {result.faults_injected}; messages sent {result.messages_sent:,}, "
        f"dropped by the network {result.messages_dropped:,}"
    )
    console.print(f"  client {ops_text(result)}", markup=False)
    console.print(f"  {latency_text(result.latency_ms)}", markup=False)
    if result.recovered_after_s is not None:
        console.print(f"  after the heal the cluster committed again within {result.recovered_after_s:.3f} s")
    if result.safety_violations:
        first = result.safety_violations[0]
        console.print(f"  [red]SAFETY VIOLATION[/] at {first.get('time_s')} s: {first.get('message')}")
    else:
        console.print(
            "  safety invariants (election safety, log matching, leader completeness, "
            "state-machine safety): held on every event"
        )
    colour = "green" if verdict.verdict == "linearizable" else "red"
    console.print(
        f"  history: [{colour}]{verdict.verdict.replace('_', ' ')}[/] "
        f"({verdict.operations:,} operations over {verdict.keys_checked} keys, checked in {check_s:.1f} s)"
    )
    console.print(
        f"  run: {result.events:,} events in {result.wall_seconds:.1f} s; "
        f"trace sha256 {result.trace_sha256[:16]}… (same seed, same trace)"
    )
    failures = run_failures(result, verdict.linearizable)
    if as_json:
        report: dict[str, Any] = result.to_json()
        report["linearizable"] = verdict.linearizable
        report["mode"] = "sim"
        report["ok"] = not failures
        report["failures"] = failures
        sys.stdout.write(json.dumps(report) + "\n")
    if failures:
        sys.stderr.write(f"quorate: FAILED: {'; '.join(failures)}; reproduce with --seed {seed}\n")
    return 1 if failures else 0
