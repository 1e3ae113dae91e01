"""``quorate bench partition``: HRB's availability under partitions, beside the
paper's 95 % claim (see ``quorate.bench.partition``).

``--json`` prints one machine-readable object as the last line; otherwise a
table per scenario and the totals for people (and, for ``reshard-cut``, what
became of its split and merge). Exit codes: 0 measured with no lost or
half-applied transaction, no safety violation, every history linearizable
and no shard left behind by a map change; 1 one of those failed (one line on
stderr says which); 2 a bad option (one line, never a traceback).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail, missing_module, shown
from quorate.errors import ConfigError

TABLE_WIDTH = 180


def _scenarios(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@bench_app.command("partition")
def bench_partition_command(
    seeds: int = typer.Option(3, "--seeds", help="Seeds per scenario (1..50)."),
    first_seed: int = typer.Option(1, "--first-seed", help="The first seed; the others follow it."),
    scenario: str = typer.Option(
        "region-cut,core-split,shard-halves,one-way,flapping,reshard-cut", "--scenario", help="Scenarios, comma separated."
    ),
    nodes: int = typer.Option(20, "--nodes", help="Nodes (8..200)."),
    shard_size: int = typer.Option(4, "--shard-size", help="Members of each shard (4..nodes/2)."),
    core: int = typer.Option(4, "--core", help="Members of the BFT core."),
    quorum: str = typer.Option("byzantine", "--quorum", help="Shard commit rule: majority or byzantine."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Partition scenarios x seeds on simulated HRB: availability, reconciliation, lost transactions."""
    try:
        from quorate.bench.partition import PartitionBenchSettings, run_bench

        settings = PartitionBenchSettings(
            seeds=seeds,
            first_seed=first_seed,
            scenarios=_scenarios(scenario),
            nodes=nodes,
            shard_size=shard_size,
            core=core,
            quorum=quorum,
        ).validate()
        console = Console(stderr=True)
        result = run_bench(settings, None if as_json else lambda text: console.print(f"[dim]{text}[/dim]"))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except ImportError as exc:
        raise fail(missing_module(exc)) from None
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _print_tables(result)
    problems = []
    if result["reshard_unsettled"]:
        problems.append(f"{result['reshard_unsettled']} shard member(s) left behind or frozen by a map change")
    if result["lost"] or result["half_applied"] or result["stuck_undecided"]:
        problems.append(
            f"{result['lost']} lost, {result['half_applied']} half-applied, "
            f"{result['stuck_undecided']} left undecided transaction(s)"
        )
    if result["safety_violations"]:
        problems.append(f"{result['safety_violations']} safety violation(s)")
    if result["not_linearizable_runs"]:
        problems.append(f"{result['not_linearizable_runs']} run(s) with a non-linearizable history")
    if problems:
        typer.echo(f"quorate: FAILED: {'; '.join(problems)} (see the runs in --json)", err=True)
        raise typer.Exit(1)


def _share(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _changes(reshard: dict[str, Any] | None) -> str:
    """``split 3c/0a 6.5 s, merge 2c/1a 0.6 s``: committed / aborted (or else),
    and the median time from begin to commit or abort."""
    if reshard is None:
        return "-"
    parts = []
    for kind in ("split", "merge", "move"):
        k = reshard.get(kind)
        if k is None:
            continue
        outcomes = dict(k["outcomes"])
        committed, aborted = outcomes.pop("committed", 0), outcomes.pop("aborted", 0)
        other = "".join(f" {n} {outcome}" for outcome, n in outcomes.items())
        parts.append(f"{kind} {committed}c/{aborted}a{other} {shown(k['took_s_median'])} s")
    return ", ".join(parts)


def _print_tables(result: dict[str, Any]) -> None:
    console = Console(width=TABLE_WIDTH)
    s = result["settings"]
    console.print(
        f"HRB under partitions: {s['nodes']} nodes, shards of {s['shard_size']} ({s['quorum']} quorum), core of "
        f"{s['core']}, {s['regions']} regions; cut at {s['cut_at_s']:g} s, heal at {s['heal_at_s']:g} s; "
        f"seeds {s['first_seed']}..{s['first_seed'] + s['seeds'] - 1}"
    )
    table = Table(title="per scenario (availability over (seed, shard) pairs with a side holding the shard's quorum)")
    for column in (
        "scenario", "pairs", "no quorum side", "avail.", "all pairs", "cross avail.", "cross ok",
        "detect s", "reconcile s med/max", "lost", "half/stuck", "refusals", "map changes",
    ):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name, r in result["per_scenario"].items():
        table.add_row(
            name,
            str(r["pairs"]),
            str(r["pairs_without_majority_side"]),
            _share(r["availability"]),
            _share(r["availability_all_pairs"]),
            _share(r["cross_shard_availability"]),
            _share(r["cross_shard_committed_share"]),
            shown(r["detected_after_s_median"]),
            f"{shown(r['reconcile_s_median'])} / {shown(r['reconcile_s_max'])}",
            str(r["lost"]),
            f"{r['half_applied']}/{r['stuck_undecided']}",
            str(r["statuses"]["ShardUnavailable"]),
            _changes(r.get("reshard")),
        )
    console.print(table)
    claim = result["paper_claim_availability"]
    verdict = "holds" if result["claim_holds"] else "does not hold"
    console.print(
        f"availability {_share(result['availability'])} (paper §4.3 claims {_share(claim)}: {verdict}); counting pairs "
        f"with no side holding a quorum as unavailable: {_share(result['availability_all_pairs'])}"
    )
    console.print(
        f"cross-shard availability {_share(result['cross_shard_availability'])}, cross-shard transactions invoked in a cut "
        f"that committed {_share(result['cross_shard_committed_share'])}; time to reconcile median "
        f"{shown(result['reconcile_s_median'])} s, max {shown(result['reconcile_s_max'])} s "
        f"({result['unreconciled_runs']} run(s) not reconciled)"
    )
    console.print(
        f"lost {result['lost']}, half-applied {result['half_applied']}, left undecided {result['stuck_undecided']}, "
        f"left behind by a map change {result['reshard_unsettled']}, safety violations {result['safety_violations']}, "
        f"non-linearizable runs {result['not_linearizable_runs']}"
    )
    for name, r in result["per_scenario"].items():
        reshard = r.get("reshard")
        if reshard is None:
            continue
        parts = []
        for kind in ("split", "merge", "move"):
            k = reshard.get(kind)
            if k is None:
                continue
            outcomes = ", ".join(f"{n} {outcome}" for outcome, n in k["outcomes"].items())
            when = ", ".join(f"{n} {moment}" for moment, n in k["settled"].items())
            parts.append(
                f"{kind}: {outcomes} ({when}); begin to commit or abort median {shown(k['took_s_median'])} s, max "
                f"{shown(k['took_s_max'])} s; of those settled after the heal, median "
                f"{shown(k['settled_after_heal_s_median'])} s after it, max {shown(k['settled_after_heal_s_max'])} s"
            )
        console.print(f"{name}: {'; '.join(parts)}; left unsettled {reshard['unsettled']}")
    for name, why in result["not_run"].items():
        console.print(f"not run: {name}: {why}")
