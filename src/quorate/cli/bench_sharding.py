"""``quorate bench sharding``: METIS, one-pass stream clustering and hash
placement of agents on shards, in the same run, and the keys a split moves
(``quorate.bench.sharding``). ``--json`` prints one object; a table
otherwise. A bad option exits 2 with one line.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail
from quorate.errors import ConfigError


@bench_app.command("sharding")
def bench_sharding_command(
    seed: str = typer.Option("1", "--seed", help="Seed of the block model, the stream order and METIS."),
    repeat: str = typer.Option("5", "--repeat", help="Timed runs of each partition (median)."),
    keys: str = typer.Option("20000", "--keys", help="Keys hashed to measure a split's moves."),
    sim_seeds: str = typer.Option(
        "0", "--sim-seeds", help="Also simulate HRB with --dynamic-sharding on this many seeds (0: skip)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Cross-shard fraction, load imbalance and time of METIS vs stream vs hash; keys moved by a split."""
    from quorate.bench.sharding import ShardingSettings, run

    try:
        settings = ShardingSettings(
            seed=_integer("--seed", seed), repeat=_integer("--repeat", repeat), keys=_integer("--keys", keys),
            sim_seeds=_integer("--sim-seeds", sim_seeds),
        )
        report = run(settings)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report))
        return
    _print(report)
    split = report["keys"]["split"]
    if not split["moved_only_to_new_shard"]:
        raise typer.Exit(1)
    if report["sim"] is not None and not all(r["ok"] for r in report["sim"]["runs"]):
        raise typer.Exit(1)


def _integer(option: str, text: str) -> int:
    """Options are read as text so a malformed number ends in one line, not a usage box."""
    try:
        return int(text)
    except ValueError:
        raise fail(f"{option} wants an integer, got {text!r}") from None


def _print(report: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"agents on shards (seed {report['seed']}, medians of {report['repeat']} runs)")
    for col in ("graph", "agents", "k", "placement", "cut", "÷ metis", "imbalance", "cpu ms"):
        table.add_column(
            col, justify="left" if col in ("graph", "placement") else "right", no_wrap=col == "graph"
        )
    for name, g in report["graphs"].items():
        for kind in ("metis", "stream", "hash"):
            figures = g[kind]
            ratio = "1.0" if kind == "metis" else str(g["cut_vs_metis"][kind])
            table.add_row(
                name if kind == "metis" else "",
                str(g["agents"]) if kind == "metis" else "",
                str(g["shards"]) if kind == "metis" else "",
                kind,
                f"{figures['cut_fraction']:.3f}",
                ratio,
                f"{figures['load_imbalance']:.3f}",
                f"{figures['cpu_seconds_median'] * 1000:.2f}",
            )
    console.print(table)
    console.print("cut: share of interaction weight across shards; imbalance: heaviest shard / mean")
    d = report["drift"]
    table = Table(title=f"between repartitions: {d['drifted_agents']} SBM agents changed block")
    for col in ("placement on the new window", "cut", "imbalance", "agents moved", "cpu ms"):
        table.add_column(col, justify="left" if col.startswith("placement") else "right")
    for kind, label in (
        ("stale_metis", "old METIS placement, kept"),
        ("stream_corrected", "old placement + one stream pass"),
        ("fresh_metis", "fresh METIS"),
    ):
        figures = d[kind]
        cpu = figures.get("cpu_seconds_median")
        table.add_row(
            label,
            f"{figures['cut_fraction']:.3f}",
            f"{figures['load_imbalance']:.3f}",
            str(figures["agents_moved"]),
            "-" if cpu is None else f"{cpu * 1000:.2f}",
        )
    console.print(table)
    k = report["keys"]
    split, out = k["split"], k["scale_out"]
    table = Table(title=f"keys moved ({k['keys']} keys, {k['shards_before']} shards)")
    for col in ("change", "moved", "ideal", "only to its target"):
        table.add_column(col, justify="left" if col == "change" else "right")
    table.add_row(
        f"ring: split hot shard {split['hot_shard']} -> {split['new_shard']}",
        f"{split['moved_fraction']:.4f}",
        f"{split['ideal_fraction']:.4f}",
        str(split["moved_only_to_new_shard"]),
    )
    merge = k["merge"]
    table.add_row(
        f"ring: merge shard {merge['absorbed']} into {merge['into']}",
        f"{merge['moved_fraction']:.4f}",
        f"{merge['ideal_fraction']:.4f}",
        str(merge["moved_only_to_merged_shard"]),
    )
    table.add_row(
        "ring: add a shard",
        f"{out['ring_moved_fraction']:.4f}",
        f"{out['ideal_fraction']:.4f}",
        str(out["ring_moved_only_to_new_shard"]),
    )
    table.add_row(
        "rendezvous (HRB today): add a shard",
        f"{out['rendezvous_moved_fraction']:.4f}",
        f"{out['ideal_fraction']:.4f}",
        str(out["rendezvous_moved_only_to_new_shard"]),
    )
    console.print(table)
    sim = report["sim"]
    if sim is None:
        return
    table = Table(
        title=f"HRB simulated with --dynamic-sharding ({sim['nodes']} nodes, shards of {sim['shard_size']}, "
        f"{sim['duration_s']:.0f} s, cross {sim['cross_shard']})"
    )
    for col in ("seed", "changes committed", "window", "cross-shard share", "txn/s", "checks"):
        table.add_column(col, justify="left" if col in ("window", "checks") else "right")
    for r in sim["runs"]:
        windows = (
            ("before the first change", r["before"]),
            ("after the last change", r["after"]),
            ("same window, genesis map", r["static_same_window"]),
        )
        for i, (label, w) in enumerate(windows):
            share = "-" if w is None or w["cross_shard_share"] is None else f"{w['cross_shard_share']:.3f}"
            rate = "-" if w is None else f"{w['throughput_ops']:.1f}"
            span = "" if w is None else f" [{w['from_s']:.0f}, {w['to_s']:.0f}) s"
            table.add_row(
                str(r["seed"]) if i == 0 else "",
                f"{r['committed_changes']} ({r['aborted_changes']} aborted)" if i == 0 else "",
                label + span,
                share,
                rate,
                ("ok" if r["ok"] else "; ".join(r["failures"])) if i == 0 else "",
            )
    console.print(table)
