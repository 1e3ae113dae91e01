"""``quorate bench attack``: the penetration run of ``quorate.bench.attack``
(real node processes and three malicious processes on loopback); a table
for people, ``--json`` for machines. Exit 0 when every attack was refused or
contained, the cluster kept committing, no write was lost and the vote
verified on every replica; else 1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from quorate.cli.main import bench_app, fail, shown


def _echo_table(report: dict[str, Any]) -> None:
    typer.echo(f"{'attack':<13} {'by':<14} {'tries':>6} {'before':>8} {'during':>8} {'ratio':>6}  contained")
    for s in report["scenarios"]:
        typer.echo(
            f"{s['attack']:<13} {s['attacker']:<14} {s['attempts']:>6} {s['throughput_before_ops']:>8} "
            f"{s['throughput_during_ops']:>8} {shown(s['throughput_ratio']):>6}  "
            f"{'yes' if s['contained'] else 'NO'}: {s['contained_because']}"
        )
    vote = report["vote"]
    typer.echo(
        f"writes acknowledged {report['acknowledged_writes']}, failed {report['failed_writes']}, "
        f"lost {report['lost_writes']}; vote {vote['yes']} yes of {vote['counted']} "
        f"({'verified by every replica' if vote['verified_by_every_replica'] else 'NOT verified everywhere'})"
    )


@bench_app.command("attack")
def bench_attack_command(
    window_s: Annotated[float, typer.Option("--window-s", help="Seconds measured before and during each attack.")] = 3.0,
    clients: Annotated[int, typer.Option("--clients", help="Concurrent writers of the steady load.")] = 8,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Keep the cluster's files here (default: a temporary directory).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Attack a real local cluster in turn (Sybil, eclipse, floods, forgery, votes, old TLS, revoked key)."""
    if not window_s > 0 or clients < 1:
        raise fail("--window-s must be > 0 and --clients >= 1")
    from quorate.bench.attack import AttackBenchConfig, run_attack_bench

    report = asyncio.run(run_attack_bench(AttackBenchConfig(window_s=window_s, clients=clients, directory=directory)))
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        _echo_table(report)
    if not report["ok"]:
        failed = [s["attack"] for s in report["scenarios"] if not s["contained"]]
        raise fail(f"FAILED: {', '.join(failed) or 'lost or failed writes, or the vote'}", 1)
