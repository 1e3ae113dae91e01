"""``quorate sim hrb``: the Hierarchical Raft-Byzantine protocol, simulated.

Runs one seeded HRB deployment (``quorate.bench.hrb_sim.run_hrb``): shards of
watched Raft, a BFT core, agents with a ``kv`` or ``bank`` workload across
regions, optional Byzantine nodes and faults; then checks safety, atomicity
across shards and the agents' history (linearizable per key). Prints a few
lines for people or, with ``--json``, one JSON object as the last line of
stdout.

Exit codes: 0 all good; 1 the run failed (a safety or atomicity violation,
a non-linearizable history, no recovery after the heal): one line on stderr
says which and the command that reproduces it; 2 a bad flag or an
impossible scenario (one line on stderr, never a traceback).
"""

from __future__ import annotations

import json
from typing import Any

import typer

from quorate.bench.hrb_sim import HrbRunConfig, run_hrb
from quorate.cli.main import fail, shown, sim_app
from quorate.cli.sim_swim import progress_bar
from quorate.errors import ConfigError

_D = HrbRunConfig()


def _print_human(r: dict[str, Any]) -> None:
    thr, lat = r["throughput_ops"], r["latency_ms"]
    typer.echo(
        f"hrb: {r['nodes']} nodes in {r['shards']['count']} shards of {r['shards']['size']}, core of "
        f"{r['messages_per_core_decision']['core_size']} ({r['core_bft']}), {r['regions']} region(s), "
        f"quorum {r['quorum_mode']}, {r['workload']}, seed {r['seed']}: {r['sim_seconds']:.0f} s simulated "
        f"in {r['wall_seconds']:.1f} s ({r['events']:,} events)"
    )
    typer.echo(
        f"committed {r['committed_ops']} (failed {r['failed_ops']}, unknown {r['unknown_ops']}): "
        f"{thr['intra_shard']} intra-shard + {thr['cross_shard']} cross-shard txn/s; latency p50 "
        f"intra {shown(lat['intra_shard']['p50'])} ms, cross {shown(lat['cross_shard']['p50'])} ms"
    )
    typer.echo(
        f"safety violations {len(r['safety_violations'])}, atomicity violations {r['atomicity_violations']}, "
        f"history {r['check_verdict']}; faults {r['faults_injected']}, recovered after "
        f"{shown(r['recovered_after_s'])} s"
    )
    for d in r["detections"]:
        typer.echo(
            f"  n{d['offender']} {d['behaviour']} (shard {d['shard']}): led at {shown(d['led_at_s'])} s; "
            f"detected +{shown(d['detected_after_s'])} s, deposed +{shown(d['deposed_after_s'])} s, "
            f"evicted +{shown(d['evicted_after_s'])} s"
        )
    d = r.get("dynamic_sharding")
    if d is not None:
        after = d["after"] or {}
        typer.echo(
            f"dynamic sharding: map version {d['map_version']} ({len(d['commits'])} committed, {d['aborts']} aborted, "
            f"{len(d['proposals'])} proposed), shards in use {d['shards_in_use']}; cross-shard share "
            f"{shown(d['before']['cross_shard_share'])} -> {shown(after.get('cross_shard_share'))}, throughput "
            f"{d['before']['throughput_ops']} -> {shown(after.get('throughput_ops'))} txn/s"
        )
        for c in d.get("changes", []):
            typer.echo(
                f"  change {c['seq']} ({c['change']}): {c['outcome']}, begun at {c['begun_at_s']} s, "
                f"settled at {shown(c['settled_at_s'])} s"
            )
    share = r["shard_byzantine_share"]
    scope = share["honest_scope"]
    typer.echo(
        f"byzantine share dealt: max {share['max']:.2f}; at random with f={scope['byzantine_nodes_f']}: "
        f"P(a shard over a third) {scope['p_shard_over_third']:.3g}, P(any shard) {scope['p_any_shard_over_third']:.3g}"
    )
    m = r["messages_per_core_decision"]
    typer.echo(
        f"core: {r['epochs']} epoch(s), {r['core_decisions']} decisions; messages per decision: "
        f"{shown(m['ordering_and_certification'])} ordering and certification, {shown(m['shard_inputs'])} from shards "
        f"(PBFT all-to-all per batch: {m['pbft_all_to_all_per_batch']}); evicted {r['evicted']}"
    )
    if r["evicted_honest"]:
        typer.echo(f"honest nodes evicted: {r['evicted_honest']} (see convictions in --json)")
    typer.echo(f"trace sha256 {r['trace_sha256']}")


@sim_app.command("hrb")
def hrb(
    nodes: int = typer.Option(_D.nodes, "--nodes", help="Nodes (dealt into shards by the genesis beacon)."),
    shard_size: int = typer.Option(_D.shard_size, "--shard-size", help="Members of each shard."),
    core: int = typer.Option(_D.core, "--core", help="Members of the BFT core."),
    regions: int = typer.Option(_D.regions, "--regions", help="Regions (nodes and agents spread round robin)."),
    inter_region_ms: float = typer.Option(_D.inter_region_ms, "--inter-region-ms", help="One-way latency between regions."),
    intra_region_ms: float = typer.Option(_D.intra_region_ms, "--intra-region-ms", help="One-way latency within a region."),
    bandwidth_gbps: float = typer.Option(_D.bandwidth_gbps, "--bandwidth-gbps", help="Each node's link."),
    cross_shard: float = typer.Option(_D.cross_shard, "--cross-shard", help="Share of writes touching another shard."),
    read_ratio: float = typer.Option(_D.read_ratio, "--read-ratio", help="Share of transactions that only read."),
    txn_bytes: int = typer.Option(_D.txn_bytes, "--txn-bytes", help="Payload of a kv write, bytes."),
    workload: str = typer.Option(_D.workload, "--workload", help="kv or bank."),
    quorum: str = typer.Option(_D.quorum, "--quorum", help="Shard commit rule: majority or byzantine."),
    core_bft: str = typer.Option(_D.core_bft, "--core-bft", help="The core's ordering: hotstuff or pbft."),
    byzantine: str = typer.Option(
        _D.byzantine, "--byzantine", help="COUNT:BEHAVIOUR[,...]: shard (equivocating-leader ...) or core (equivocate ...)."
    ),
    allow_unsafe: bool = typer.Option(False, "--allow-unsafe", help="Run more Byzantine nodes than a mode tolerates."),
    faults: str = typer.Option(_D.faults, "--faults", help="none, chaos or a SPEC."),
    heal_at: float | None = typer.Option(None, "--heal-at", help="Chaos until here (default 60% of the run)."),
    max_crashed: int | None = typer.Option(None, "--max-crashed", help="Chaos: nodes down at once."),
    duration: float = typer.Option(_D.duration_s, "--duration", help="Simulated seconds of load."),
    agents: int = typer.Option(_D.agents, "--agents", help="Agents (0: two per shard)."),
    op_timeout: float = typer.Option(_D.op_timeout_s, "--op-timeout", help="An agent's wait for an answer."),
    epoch_length: int = typer.Option(_D.epoch_length, "--epoch-length", help="Core decisions per epoch."),
    liveness_bound: float = typer.Option(
        _D.liveness_bound_s, "--liveness-bound", help="After the heal, a transaction must complete within this."
    ),
    drain: float = typer.Option(_D.drain_s, "--drain", help="Simulated seconds after the agents stop."),
    seed: int = typer.Option(_D.seed, "--seed", help="Fixes every random choice of the run."),
    dynamic_sharding: bool = typer.Option(
        False, "--dynamic-sharding", help="Split, merge and move agents through the core while agents write."
    ),
    partitioner: bool = typer.Option(
        True, "--partitioner/--no-partitioner", help="With --dynamic-sharding: propose changes from observed load."
    ),
    reshard: str = typer.Option(
        "", "--reshard", help="With --dynamic-sharding: split:SHARD:NEW@T,merge:ABSORBED:INTO@T,move:AGENT:SHARD@T instead of the partitioner."
    ),
    wait_for_leaders: bool = typer.Option(
        False, "--wait-for-leaders", help="Agents start once every shard has a leader (not at time 0)."
    ),
    history: str | None = typer.Option(None, "--history", help="Write the agents' history (JSON) here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Simulate an HRB deployment under load, Byzantine nodes and faults; check it."""
    config = HrbRunConfig(
        nodes=nodes, shard_size=shard_size, core=core, regions=regions, inter_region_ms=inter_region_ms,
        intra_region_ms=intra_region_ms, bandwidth_gbps=bandwidth_gbps, cross_shard=cross_shard, read_ratio=read_ratio, txn_bytes=txn_bytes,
        workload=workload, quorum=quorum, core_bft=core_bft, byzantine=byzantine, allow_unsafe=allow_unsafe,
        faults=faults, heal_at_s=heal_at, max_crashed=max_crashed, duration_s=duration, agents=agents,
        op_timeout_s=op_timeout, epoch_length=epoch_length, liveness_bound_s=liveness_bound, drain_s=drain, seed=seed,
        dynamic_sharding=dynamic_sharding, reshard=reshard, partitioner=partitioner,
        wait_for_leaders=wait_for_leaders,
    )
    try:
        config.validate()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    update, stop = progress_bar("simulating HRB")
    try:
        report, events = run_hrb(config, update)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    finally:
        stop()
    if history:
        try:
            with open(history, "w", encoding="utf-8") as out:
                json.dump(events, out)
        except OSError as exc:
            raise fail(f"cannot write history to {history!r}: {exc.strerror}") from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_human(report)
    refused = report.get("dynamic_sharding", {}).get("scripted_refused", [])
    for reason in refused:
        typer.echo(f"quorate: reshard request refused by the core: {reason}", err=True)
    if report["failures"]:
        typer.echo(f"quorate: FAILED: {'; '.join(report['failures'])}; reproduce with: {report['command']}", err=True)
        raise typer.Exit(1)
    if refused:
        raise typer.Exit(2)
