"""The quorum manager in the simulator: what it buys, measured.

Theory of operation. Every figure comes from seeded simulator runs of Raft
(``quorate.runtime.sim``) with ``NODES`` nodes over ``REGIONS`` regions
``INTER_REGION_MS`` apart (one way), every client in region 0, closed-loop
clients; medians over the seeds, each figure beside its peer from the same
seeds.

- ``latency``: commit latency (client-observed p50, p99 of the operations
  that finished in the steady window [``STEADY_FROM_S``, end)) with the
  static voter set (Raft's default: every node votes, majority quorums)
  against the ``network`` strategy, which moves to the clients' region with
  a small commit quorum.
- ``region_outage``: region 0's nodes crash at ``OUTAGE_AT_S`` and come back
  at ``OUTAGE_END_S``. Availability is the share of ``SLOT_S`` slots of the
  outage (from one election timeout after it starts) in which some
  operation succeeded. Both runs start from the same voter set,
  ``OUTAGE_STATIC_VOTERS``: three voters in region 0 and two in region 1 (a
  latency-minded placement, the ``network`` strategy's own kind of choice).
  The static run keeps it; the ``fault_tolerance`` strategy has until the
  outage to spread the voters so that no region holds a quorum's worth.
- ``degradation``: the ``network`` strategy manages the voters (its fast
  commits keep the leader busy, so a slow leader hurts); at
  ``DEGRADE_AT_S`` the leader's CPU becomes ``DEGRADE_FACTOR`` times slower
  (the simulator's ``slow`` fault). The leader is found by a first run
  whose clients stop there (the same seed gives the same run up to then; it
  reports the leader one operation timeout later, when it ends), so every
  run can be repeated with ``quorate sim raft ... --faults
  slow:L:200@12s``. Reported: when the manager decided to replace it and
  when the new configuration was in force (seconds after the degradation),
  and the commit latency p50 in the 5 s before, between, and the 5 s after.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from quorate.runtime.sim import SimConfig, run

NODES = 9
REGIONS = 3
INTER_REGION_MS = 50.0
CLIENTS = 4
SEEDS = (1, 2, 3)
LATENCY_DURATION_S = 12.0
STEADY_FROM_S = 6.0
OUTAGE_DURATION_S = 24.0
OUTAGE_AT_S = 12.0
OUTAGE_END_S = 20.0
OUTAGE_STATIC_VOTERS = (1, 4, 7, 2, 5)
"""n1, n4, n7 in region 0 and n2, n5 in region 1 (node i is in region (i - 1) mod 3)."""
ELECTION_TIMEOUT_S = 1.0
"""Raft's default; availability is measured from this long into the outage."""
SLOT_S = 0.5
DEGRADE_DURATION_S = 30.0
DEGRADE_AT_S = 12.0
DEGRADE_FACTOR = 200.0
WINDOW_S = 5.0

Progress = Callable[[str], None]


def _base(seed: int, duration_s: float, **extra: Any) -> SimConfig:
    return SimConfig(
        protocol="raft",
        nodes=NODES,
        regions=REGIONS,
        inter_region_ms=INTER_REGION_MS,
        clients=CLIENTS,
        client_region=0,
        duration_s=duration_s,
        seed=seed,
        **extra,
    )


def _ops(history: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """(completion time, latency s, outcome) of every finished operation."""
    started: dict[int, float] = {}
    out = []
    for event in history:
        if event["type"] == "invoke":
            started[event["process"]] = event["time"]
        else:
            start = started.pop(event["process"], None)
            if start is not None:
                out.append((event["time"], event["time"] - start, event["type"]))
    return out


def window_latency_ms(history: list[dict[str, Any]], start: float, end: float) -> dict[str, float | None]:
    """p50/p99 (ms) of operations answered (ok, or a compare-and-set that
    found another value) in [start, end)."""
    lat = sorted(latency for at, latency, kind in _ops(history) if start <= at < end and kind != "info")
    if not lat:
        return {"p50_ms": None, "p99_ms": None, "ops": 0}
    return {
        "p50_ms": round(lat[min(len(lat) - 1, len(lat) // 2)] * 1e3, 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3, 3),
        "ops": len(lat),
    }


def availability(history: list[dict[str, Any]], start: float, end: float) -> float:
    """Share of ``SLOT_S`` slots in [start, end) in which an operation succeeded."""
    slots = max(1, round((end - start) / SLOT_S))
    served = {int((at - start) // SLOT_S) for at, _, kind in _ops(history) if start <= at < end and kind == "ok"}
    return round(len(served) / slots, 4)


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def latency(seeds: Sequence[int] = SEEDS, progress: Progress | None = None) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {"static": [], "network": []}
    for seed in seeds:
        for name in rows:
            extra = {"quorum_manager": "network"} if name == "network" else {}
            result = run(_base(seed, LATENCY_DURATION_S, **extra))
            window = window_latency_ms(result.history, STEADY_FROM_S, LATENCY_DURATION_S)
            window["seed"] = seed
            window["final"] = result.quorum.get("final")
            window["safety_violations"] = len(result.safety_violations)
            rows[name].append(window)
            if progress is not None:
                progress(f"latency {name} seed {seed}")
    out: dict[str, Any] = {"window_s": [STEADY_FROM_S, LATENCY_DURATION_S], "runs": rows}
    for name, runs in rows.items():
        out[name] = {"p50_ms": _median([r["p50_ms"] for r in runs]), "p99_ms": _median([r["p99_ms"] for r in runs])}
    out["p50_ratio"] = _ratio(out["network"]["p50_ms"], out["static"]["p50_ms"])
    out["p99_ratio"] = _ratio(out["network"]["p99_ms"], out["static"]["p99_ms"])
    return out


def region_outage(seeds: Sequence[int] = SEEDS, progress: Progress | None = None) -> dict[str, Any]:
    region0 = [n for n in range(1, NODES + 1) if (n - 1) % REGIONS == 0]
    faults = ",".join(
        [f"crash:{n}@{OUTAGE_AT_S}s" for n in region0] + [f"restart:{n}@{OUTAGE_END_S}s" for n in region0]
    )
    measured_from = OUTAGE_AT_S + ELECTION_TIMEOUT_S
    rows: dict[str, list[dict[str, Any]]] = {"static": [], "fault_tolerance": []}
    for seed in seeds:
        for name in rows:
            extra: dict[str, Any] = {"voters": OUTAGE_STATIC_VOTERS, "faults": faults}
            if name == "fault_tolerance":
                extra["quorum_manager"] = "fault_tolerance"
            result = run(_base(seed, OUTAGE_DURATION_S, **extra))
            voters_at_outage = _voters_at(result.quorum, OUTAGE_AT_S)
            rows[name].append(
                {
                    "seed": seed,
                    "availability": availability(result.history, measured_from, OUTAGE_END_S),
                    "ok_ops_during_outage": sum(
                        1 for at, _, kind in _ops(result.history) if OUTAGE_AT_S <= at < OUTAGE_END_S and kind == "ok"
                    ),
                    "voters_at_outage": voters_at_outage,
                    "safety_violations": len(result.safety_violations),
                }
            )
            if progress is not None:
                progress(f"outage {name} seed {seed}")
    out: dict[str, Any] = {
        "outage_s": [OUTAGE_AT_S, OUTAGE_END_S],
        "measured_from_s": measured_from,
        "static_voters": list(OUTAGE_STATIC_VOTERS),
        "runs": rows,
    }
    for name, runs in rows.items():
        out[name] = {
            "availability": _median([r["availability"] for r in runs]),
            "ok_ops_during_outage": _median([r["ok_ops_during_outage"] for r in runs]),
        }
    return out


def _voters_at(report: dict[str, Any], at_s: float) -> list[int] | None:
    """The voter set the last accepted change before ``at_s`` asked for, as far
    as the proposals tell (None: no change accepted)."""
    voters: set[int] | None = None
    final = report.get("final") or {}
    for change in report.get("changes", []):
        if change["time_s"] >= at_s or change["outcome"] != "Accepted":
            continue
        if voters is None:
            voters = set(range(1, NODES + 1))
        voters |= set(change["add"])
        voters -= set(change["remove"]) | set(change["add_learners"])
    if voters is None:
        return final.get("voters")
    return sorted(voters)


def degradation(seeds: Sequence[int] = SEEDS, progress: Progress | None = None) -> dict[str, Any]:
    runs = []
    for seed in seeds:
        probe = run(_base(seed, DEGRADE_AT_S, quorum_manager="network"))
        final = probe.quorum.get("final") or {}
        leader = final.get("leader")
        if leader is None:
            continue
        faults = f"slow:{leader}:{DEGRADE_FACTOR}@{DEGRADE_AT_S}s"
        result = run(_base(seed, DEGRADE_DURATION_S, quorum_manager="network", faults=faults))
        events = result.quorum.get("manager_events", [])
        decided = next((e["time_s"] for e in events if e["time_s"] >= DEGRADE_AT_S and e["event"] == "change"), None)
        applied = next(
            (e["time_s"] for e in events if decided is not None and e["time_s"] >= decided and e["event"] == "applied"), None
        )
        after_from = applied if applied is not None else DEGRADE_AT_S
        runs.append(
            {
                "seed": seed,
                "degraded_leader": leader,
                "decided_after_s": None if decided is None else round(decided - DEGRADE_AT_S, 3),
                "converged_after_s": None if applied is None else round(applied - DEGRADE_AT_S, 3),
                "p50_before_ms": window_latency_ms(result.history, DEGRADE_AT_S - WINDOW_S, DEGRADE_AT_S)["p50_ms"],
                "p50_degraded_ms": window_latency_ms(result.history, DEGRADE_AT_S, after_from)["p50_ms"],
                "p50_after_ms": window_latency_ms(result.history, after_from, after_from + WINDOW_S)["p50_ms"],
                "final": result.quorum.get("final"),
                "safety_violations": len(result.safety_violations),
            }
        )
        if progress is not None:
            progress(f"degradation seed {seed}")
    return {
        "strategy": "network",
        "degrade_at_s": DEGRADE_AT_S,
        "cpu_factor": DEGRADE_FACTOR,
        "runs": runs,
        "decided_after_s": _median([r["decided_after_s"] for r in runs]),
        "converged_after_s": _median([r["converged_after_s"] for r in runs]),
        "p50_before_ms": _median([r["p50_before_ms"] for r in runs]),
        "p50_degraded_ms": _median([r["p50_degraded_ms"] for r in runs]),
        "p50_after_ms": _median([r["p50_after_ms"] for r in runs]),
    }


def report(seeds: Sequence[int] = SEEDS, progress: Progress | None = None) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready object."""
    return {
        "setup": {
            "nodes": NODES,
            "regions": REGIONS,
            "inter_region_ms_one_way": INTER_REGION_MS,
            "clients": CLIENTS,
            "client_region": 0,
            "seeds": list(seeds),
        },
        "latency": latency(seeds, progress),
        "region_outage": region_outage(seeds, progress),
        "degradation": degradation(seeds, progress),
    }
