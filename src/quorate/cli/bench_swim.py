"""``quorate bench swim``: the SWIM experiment at scale, Lifeguard on and off.

Runs ``quorate.runtime.sim.membership.run_swim`` twice with the same seed and
network (by default 1,000 members over 3 regions 50 ms apart, 5 % loss, 10
crashed) and reports, per run, detection times, false positives, suspicions,
rumour and join spread and load, next to the targets:

- every live member learns every crash (``undetected == 0``);
- median detection within 3 protocol periods plus the suspicion timeout
  (Lifeguard's minimum ``alpha * log10(n) * period``, the timeout a suspicion
  shrinks to once ``suspicion_k`` members confirm it);
- no false positives with Lifeguard on;
- a join reaches everyone in O(log n) protocol periods (compared here with
  ``ceil(log2 n)``).

Membership snapshots are exchanged every ``SCALE_ANTI_ENTROPY_S`` by default
(``--anti-entropy-s``), see below.

``--json`` prints one JSON object; otherwise a table for people.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail
from quorate.cli.sim_swim import run_config
from quorate.runtime.sim.membership import SwimSimConfig
from quorate.swim import SwimConfig, suspicion_bounds

SCALE_ANTI_ENTROPY_S = 30.0
"""Every member sends its whole member list (1,000 entries) to one peer per
interval; 30 s is memberlist's push-pull default. SWIM's 10 s default makes
the snapshots the largest cost of a 1,000-member run (each entry is merged one
by one) without changing detection, which travels by piggybacking."""
DETECTION_SLACK_PERIODS = 3
"""The detection target allows this many protocol periods beyond the timeout."""


def _targets(report: dict[str, Any], config: SwimSimConfig) -> dict[str, Any]:
    swim = config.swim_config()
    n = config.nodes
    min_s, _ = suspicion_bounds(
        n, swim.suspicion_alpha, swim.suspicion_beta, swim.protocol_period_s
    )
    detection_target_s = DETECTION_SLACK_PERIODS * swim.protocol_period_s + min_s
    join_target_rounds = math.ceil(math.log2(n))
    p50 = report["detection_s"]["p50"]
    return {
        "all_failures_learned": report["undetected"] == 0 and bool(report["killed"]),
        "median_detection_target_s": round(detection_target_s, 3),
        "median_detection_met": p50 is not None and p50 <= detection_target_s,
        "zero_false_positives": report["false_positives"] == 0,
        "join_rounds_target": join_target_rounds,
        "join_rounds_met": report["join_rounds"] is not None
        and report["join_rounds"] <= join_target_rounds,
    }


@bench_app.command("swim")
def bench_swim_command(
    nodes: int = typer.Option(1000, "--nodes", help="Members."),
    regions: int = typer.Option(3, "--regions", help="Regions."),
    inter_region_ms: float = typer.Option(50.0, "--inter-region-ms", help="One-way latency."),
    loss: float = typer.Option(0.05, "--loss", help="Message loss probability."),
    kill: int = typer.Option(10, "--kill", help="Members crashed."),
    duration: float = typer.Option(75.0, "--duration", help="Simulated seconds after the warm-up."),
    anti_entropy_s: float = typer.Option(
        SCALE_ANTI_ENTROPY_S,
        "--anti-entropy-s",
        help="Membership snapshot (push-pull) interval (s).",
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of both runs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """SWIM at scale with Lifeguard on and off: detection, false positives, spread."""
    if not anti_entropy_s > 0:
        raise fail(f"--anti-entropy-s must be > 0 seconds, got {anti_entropy_s}")
    runs: dict[str, Any] = {}
    for lifeguard in (True, False):
        config = SwimSimConfig(
            nodes=nodes,
            regions=regions,
            inter_region_ms=inter_region_ms,
            loss=loss,
            kill=kill,
            lifeguard=lifeguard,
            duration_s=duration,
            swim=SwimConfig(anti_entropy_interval_s=anti_entropy_s),
            seed=seed,
        )
        report = run_config(config).to_json()
        report["targets"] = _targets(report, config)
        runs["lifeguard" if lifeguard else "no_lifeguard"] = report
    if as_json:
        typer.echo(json.dumps({"benchmark": "swim", "runs": runs}))
        return
    table = Table(title=f"SWIM: {nodes} members, {regions} regions, loss {loss:g}, {kill} crashed")
    table.add_column("measure")
    for name in runs:
        table.add_column(name, justify="right")
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        (
            "detection p50 / p99 / max (s)",
            lambda r: "{p50} / {p99} / {max}".format(**r["detection_s"]),
        ),
        ("first detection p50 (s)", lambda r: str(r["first_detection_s"]["p50"])),
        ("undetected", lambda r: str(r["undetected"])),
        ("false positives", lambda r: str(r["false_positives"])),
        ("suspicions (of live)", lambda r: f"{r['suspicions']} ({r['suspicions_of_live']})"),
        (
            "rumour p50 / p99 / full (s)",
            lambda r: "{p50} / {p99} / {full}".format(**r["dissemination_s"]),
        ),
        ("join rounds", lambda r: str(r["join_rounds"])),
        ("messages / node / s", lambda r: str(r["messages_per_node_per_s"])),
        ("bytes / node / s", lambda r: str(r["bytes_per_node_per_s"])),
        ("wall seconds", lambda r: str(r["wall_seconds"])),
        ("targets met", lambda r: ", ".join(k for k, v in r["targets"].items() if v is True)),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in runs.values()))
    Console().print(table)
