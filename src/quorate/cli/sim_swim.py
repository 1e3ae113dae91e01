"""``quorate sim swim``: SWIM failure detection and dissemination, simulated.

Runs one seeded experiment (``quorate.runtime.sim.membership.run_swim``): a
group forms, rumours spread, a late member joins, ``--kill`` members crash.
Prints a few lines for people or, with ``--json``, one JSON object as the last
line of stdout. A progress bar (simulated time) goes to stderr on a terminal.

Exit codes: 0 the run did what it was asked; 1 it did not — a rumour did not
reach every live member, or (with ``--crdt-ops``) the CRDT replicas did not
converge to one state holding every operation: one line on stderr says
which, and the JSON's ``ok`` is false with the reasons in ``failures``; 2 a
bad flag (one line on stderr). Detection times and false positives are
measurements, not verdicts: they are in the figures and do not change the
exit code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import typer

from quorate.cli.main import fail, shown, sim_app
from quorate.errors import ConfigError
from quorate.runtime.sim.membership import SwimSimConfig, SwimSimResult, run_swim
from quorate.swim import SwimConfig


def progress_bar(label: str = "simulating SWIM") -> tuple[Callable[[float, float], None] | None, Callable[[], None]]:
    """A rich progress bar on stderr when it is a terminal; else nothing."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s simulated"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task("swim", total=1.0)
    progress.start()

    def update(now_s: float, end_s: float) -> None:
        progress.update(task, completed=now_s, total=end_s)

    return update, progress.stop


def run_config(config: SwimSimConfig) -> SwimSimResult:
    """Validate and run with a progress bar; bad settings exit 2."""
    try:
        config.validate()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    from quorate.cli.sim_cost import CostWatch

    update, stop = progress_bar()
    watch = CostWatch(None)
    try:
        return run_swim(config, progress=watch.progress(update))
    finally:
        stop()


def _print_human(result: SwimSimResult) -> None:
    r = result.to_json()
    det, first = r["detection_s"], r["first_detection_s"]
    dis = r["dissemination_s"]
    typer.echo(
        f"swim: {r['nodes']} nodes, {r['regions']} region(s), loss {r['loss']:g}, "
        f"lifeguard {'on' if r['lifeguard'] else 'off'}, seed {r['seed']}: "
        f"{r['sim_seconds']:.0f} s simulated in {r['wall_seconds']:.1f} s ({r['events']:,} events)"
    )
    typer.echo(
        f"warm-up: {r['warmup_s']:.0f} s ({'converged' if r['warmup_converged'] else 'NOT converged'})"
    )
    if r["killed"]:
        typer.echo(
            f"detection of {len(r['killed'])} crashed: by all p50 {shown(det['p50'])} s, "
            f"p99 {shown(det['p99'])} s, max {shown(det['max'])} s; first p50 "
            f"{shown(first['p50'])} s; undetected {r['undetected']}"
        )
    else:
        typer.echo("detection: no member was killed (--kill 0)")
    typer.echo(
        f"false positives: {r['false_positives']} (warm-up {r['warmup_false_positives']}); "
        f"suspicions: {r['suspicions']} ({r['suspicions_of_live']} of live members)"
    )
    full = "every rumour everywhere after " + f"{dis['full']} s" if dis["full"] is not None else (
        "not every rumour reached every member"
    )
    join = (
        f"join: {r['join_s']} s = {r['join_rounds']} periods"
        if r["join_s"] is not None
        else "join: not seen by every member"
    )
    typer.echo(
        f"rumours: {r['rumours_reaching_all']}/{r['rumours']} reached all; p50 {shown(dis['p50'])} s, "
        f"p99 {shown(dis['p99'])} s; {full}; {join}"
    )
    typer.echo(
        f"load: {r['messages_per_node_per_s']} messages/node/s, {r['bytes_per_node_per_s']} bytes/node/s"
    )
    if r["crdt"] is not None:
        typer.echo(f"crdt: {json.dumps(r['crdt'])}")
    typer.echo(f"trace sha256 {r['trace_sha256']}")


@sim_app.command("swim")
def swim(
    nodes: int = typer.Option(100, "--nodes", help="Members (the last one joins late)."),
    regions: int = typer.Option(1, "--regions", help="Regions (members spread round robin)."),
    inter_region_ms: float = typer.Option(
        50.0, "--inter-region-ms", help="One-way latency between regions."
    ),
    kill: int = typer.Option(1, "--kill", help="Members crashed after the warm-up."),
    loss: float = typer.Option(0.0, "--loss", help="Message loss probability."),
    lifeguard: bool = typer.Option(
        True, "--lifeguard/--no-lifeguard", help="Lifeguard's health multiplier and suspicion."
    ),
    duration: float = typer.Option(90.0, "--duration", help="Simulated seconds after the warm-up."),
    crdt_ops: float = typer.Option(
        0.0, "--crdt-ops", help="CRDT operations per simulated second over the group."
    ),
    crdt_op_based: bool = typer.Option(
        False,
        "--crdt-op-based",
        help="Run the --crdt-ops workload (plus register writes and list edits) on "
        "operation-based CRDTs over causal broadcast.",
    ),
    anti_entropy_s: float = typer.Option(
        10.0,
        "--anti-entropy-s",
        help="SWIM anti-entropy interval (s); CRDT states travel at this pace.",
    ),
    seed: int = typer.Option(0, "--seed", help="Fixes every random choice of the run."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Simulate SWIM: failure detection, false positives, rumour and join spread."""
    if crdt_op_based and not crdt_ops > 0:
        raise fail("--crdt-op-based needs a --crdt-ops rate > 0")
    if not anti_entropy_s > 0:
        raise fail(f"--anti-entropy-s must be > 0 seconds, got {anti_entropy_s}")
    result = run_config(
        SwimSimConfig(
            nodes=nodes,
            regions=regions,
            inter_region_ms=inter_region_ms,
            kill=kill,
            loss=loss,
            lifeguard=lifeguard,
            duration_s=duration,
            crdt_ops_per_s=crdt_ops,
            crdt_op_based=crdt_op_based,
            swim=SwimConfig(anti_entropy_interval_s=anti_entropy_s),
            seed=seed,
        )
    )
    report = result.to_json()
    failures = swim_failures(report)
    report["ok"] = not failures
    report["failures"] = failures
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_human(result)
    if failures:
        typer.echo(f"quorate: FAILED: {'; '.join(failures)}; reproduce with --seed {seed}", err=True)
        raise typer.Exit(1)


def swim_failures(report: dict[str, Any]) -> list[str]:
    """Why a SWIM run did not do what it was asked (empty: it did)."""
    failures = []
    lost = report["rumours"] - report["rumours_reaching_all"]
    if lost > 0:
        failures.append(f"{lost} of {report['rumours']} rumours did not reach every live member")
    crdt = report["crdt"]
    if crdt is not None and not crdt["converged"]:
        failures.append(
            f"the CRDT replicas did not converge ({crdt['distinct_states']} distinct states, "
            f"counters {crdt['counter_values']}, expected {crdt['expected_counter']})"
        )
    return failures
