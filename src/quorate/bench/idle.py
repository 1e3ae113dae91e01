"""What idle groups cost in the simulator: many quiesced groups per node against one group per node.

Theory of operation. Two simulated clusters sit idle (no clients, no
faults) for the same simulated time, and the report counts the events
each cost (an event is a message delivered, a timer fired or queued work
run on a CPU; superseded timers are not counted):

- **hosted**: ``nodes`` nodes hosting ``groups`` multi-Raft range groups of
  ``replicas`` replicas each, plus the meta group, with quiescence
  (``quiesce_after_s`` = 1 s) and the node-level failure detector
  (``quorate.multiraft.liveness``): after the elections, idle groups send
  nothing; what remains is the detector, one message per node pair that
  shares a quiesced group every ``liveness_interval_s``;
- **single**: ``nodes`` nodes hosting one Raft group, every node in it,
  without quiescence: the leader heartbeats every follower every 100 ms.

The issue's target: the first costs fewer events. The report gives both
counts, their ratio, the messages sent and the wall-clock time of each run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from quorate.runtime.sim import SimConfig, run
from quorate.runtime.sim.multiraft import MultiRaftConfig, run_multiraft

__all__ = ["idle_report"]


def idle_report(
    *,
    nodes: int = 1000,
    groups: int = 10_000,
    replicas: int = 3,
    duration_s: float = 60.0,
    seed: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Run both idle clusters (module docstring); one JSON-ready dict."""
    hosted_config = MultiRaftConfig(
        nodes=nodes,
        groups=groups,
        replicas=replicas,
        clients=0,
        duration_s=duration_s,
        seed=seed,
        check_invariants=False,
        record_history=False,
    )
    single_config = SimConfig(
        protocol="raft", nodes=nodes, clients=0, duration_s=duration_s, seed=seed, check_invariants=False, record_history=False
    )
    hosted_config.validate()
    single_config.validate()
    start = clock()
    hosted = run_multiraft(hosted_config).to_json()
    hosted_wall = clock() - start
    start = clock()
    single = run(single_config).to_json()
    single_wall = clock() - start
    return {
        "benchmark": "idle-sim",
        "nodes": nodes,
        "duration_s": duration_s,
        "seed": seed,
        "hosted": {
            "groups": groups + 1,
            "replicas": replicas,
            "quiescence": True,
            "events": hosted["events"],
            "messages_sent": hosted["messages_sent"],
            "quiesced_groups": hosted["quiesced_groups"],
            "liveness_suspicions": hosted["liveness_suspicions"],
            "wall_seconds": round(hosted_wall, 3),
        },
        "single": {
            "groups": 1,
            "replicas": nodes,
            "quiescence": False,
            "events": single["events"],
            "messages_sent": single["messages_sent"],
            "wall_seconds": round(single_wall, 3),
        },
        "hosted_over_single_events": round(hosted["events"] / single["events"], 4) if single["events"] else None,
        "hosted_costs_fewer_events": hosted["events"] < single["events"],
    }
