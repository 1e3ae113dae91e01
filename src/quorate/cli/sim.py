"""``quorate sim <protocol>``: run a protocol in the deterministic simulator.

Runs one seeded simulation (``quorate.runtime.sim.run``), checks the client
history for linearizability (``quorate.check``) and prints either a few lines
for people or, with ``--json``, one JSON object as the last line of stdout.
A progress bar (simulated time) goes to stderr when it is a terminal.

BFT protocols (``pbft``, ``hotstuff``) take ``--byzantine COUNT:BEHAVIOUR[,...]``
(``random`` draws a behaviour from the seed; more than f replicas only with
``--allow-unsafe``), ``--rate-limit MSGS_PER_S`` (per-peer token buckets in
front of each replica's CPU; 0 = off) and ``--flood-copies K`` (a ``flood``
replica sends everything K times). Their reports add ``byzantine``,
``detections``, ``excluded`` and ``rate_limited_drops``.

``quorate sim multiraft`` (``quorate.runtime.sim.multiraft``) takes every
flag above plus ``--groups G``, ``--replicas R`` and ``--split-at-ops K``;
its report adds ``groups``, ``splits``, ``moves`` and ``quiesced_groups``.

Exit codes: 0 all good; 1 a safety violation or a non-linearizable history
(the message says ``reproduce with --seed N``); 2 a bad flag or an impossible
scenario (one line on stderr, never a traceback).
"""

from __future__ import annotations

import inspect
import json
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import typer

from quorate.cli.main import fail, parse_options, sim_app
from quorate.errors import ConfigError
from quorate.runtime.sim import SimConfig, SimResult, run
from quorate.runtime.sim.multiraft import MultiRaftConfig, run_multiraft

CHECK_TIMEOUT_S = 60.0
"""Wall-clock budget of the linearizability check."""


def _linearizable(history: list[dict[str, Any]]) -> tuple[bool | None, str]:
    """The checker's verdict, or ``None`` (with the reason) when it could not decide."""
    try:
        from quorate.check import check_history
    except ImportError as exc:
        return None, f"checker unavailable: {exc}"
    if not history:
        return True, "linearizable"
    result = check_history(history, timeout_s=CHECK_TIMEOUT_S, clock=time.monotonic)
    verdict = str(result.verdict)
    if verdict == "linearizable":
        return True, verdict
    if verdict == "not_linearizable":
        return False, verdict
    return None, verdict


def _progress_bar() -> tuple[Callable[[float, float], None] | None, Callable[[], None]]:
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} s simulated"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task("sim", total=1.0)
    progress.start()

    def update(now_s: float, end_s: float) -> None:
        progress.update(task, completed=now_s, total=end_s)

    return update, progress.stop


Runner = Callable[..., SimResult]
"""``runner(config, progress=...)``: builds and runs one simulation."""


def run_command(config: SimConfig, history_path: str | None, as_json: bool, runner: Runner = run) -> None:
    """Run, check, print; raises ``typer.Exit`` with the exit code."""
    try:
        config.validate()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    update, stop = _progress_bar()
    try:
        result = runner(config, progress=update)
    except ConfigError as exc:
        stop()
        raise fail(str(exc)) from None
    finally:
        stop()
    if history_path:
        try:
            with open(history_path, "w", encoding="utf-8") as out:
                json.dump(result.history, out)
        except OSError as exc:
            raise fail(f"cannot write history to {history_path!r}: {exc.strerror}") from None
    linearizable, verdict = _linearizable(result.history)
    report = result.to_json()
    report["linearizable"] = linearizable
    report["check_verdict"] = verdict
    bad = bool(result.safety_violations) or linearizable is False
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_human(result, verdict)
    if bad:
        typer.echo(f"quorate: FAILED; reproduce with: {command_line(config)}", err=True)
        raise typer.Exit(1)


_FLAGS: tuple[tuple[str, str], ...] = (
    ("nodes", "--nodes"),
    ("regions", "--regions"),
    ("inter_region_ms", "--inter-region-ms"),
    ("intra_region_ms", "--intra-region-ms"),
    ("bandwidth_gbps", "--bandwidth-gbps"),
    ("duration_s", "--duration"),
    ("clients", "--clients"),
    ("rate_ops", "--rate"),
    ("faults", "--faults"),
    ("heal_at_s", "--heal-at"),
    ("loss", "--loss"),
    ("reorder", "--reorder"),
    ("byzantine", "--byzantine"),
    ("rate_limit_msgs_per_s", "--rate-limit"),
    ("flood_copies", "--flood-copies"),
    ("op_timeout_s", "--op-timeout"),
    ("resend_timeout_s", "--resend-timeout"),
    ("liveness_bound_s", "--liveness-bound"),
)
"""``SimConfig`` fields that ``quorate sim`` sets, and their flags."""


def command_line(config: SimConfig) -> str:
    """The ``quorate sim`` command that runs ``config`` again, seed included
    (flags left at their defaults are omitted)."""
    defaults = type(config)(protocol=config.protocol)
    cli_defaults = {"nodes": 4 if config.protocol in ("pbft", "hotstuff") else 5}
    parts = ["quorate", "sim", config.protocol]
    for field, flag in (*_FLAGS, *_EXTRA_FLAGS.get(type(config), ())):
        value = getattr(config, field)
        if value != cli_defaults.get(field, getattr(defaults, field)) and value is not None:
            parts += [flag, shlex.quote(repr(value) if isinstance(value, float) else str(value))]
    if config.allow_unsafe:
        parts.append("--allow-unsafe")
    for key, value in config.protocol_options.items():
        text = json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
        parts += ["--option", shlex.quote(f"{key}={text}")]
    parts += ["--seed", str(config.seed)]
    return " ".join(parts)


def _print_human(result: SimResult, verdict: str) -> None:
    lat = result.latency_ms
    typer.echo(
        f"{result.protocol}: {result.nodes} nodes, {result.regions} region(s), {result.clients} clients, "
        f"seed {result.seed}: {result.sim_seconds:.2f} s simulated in {result.wall_seconds:.2f} s "
        f"({result.events:,} events, {result.events_per_second:,.0f}/s)"
    )
    typer.echo(
        f"ops: {result.committed_ops:,} ok, {result.failed_ops:,} failed, {result.unknown_ops:,} unknown; "
        f"{result.throughput_ops:,.1f} ops/s; latency ms p50 {lat['p50']} p90 {lat['p90']} "
        f"p99 {lat['p99']} max {lat['max']}"
    )
    typer.echo(
        f"faults injected: {result.faults_injected}; elections: {result.elections}; "
        f"leader changes: {result.leader_changes}; messages: {result.messages_sent:,} sent, "
        f"{result.messages_dropped:,} dropped"
    )
    if result.heal_at_s is not None:
        typer.echo(
            f"liveness: healed at {result.heal_at_s:g} s, committing again after "
            f"{result.recovered_after_s} s ({'ok' if result.liveness_ok else 'NOT RECOVERED'})"
        )
    for v in result.safety_violations:
        typer.echo(f"SAFETY VIOLATION at {v['time_s']:.6f} s: {v['message']}")
    if result.byzantine:
        typer.echo("byzantine: " + ", ".join(f"{node}={b}" for node, b in result.byzantine.items()))
    for d in result.detections:
        typer.echo(
            f"detected: replica {d['offender']} equivocated ({d['kind']} at {d['height']}/{d['round']}) "
            f"first at {d['first_detected_s']:.3f} s, by {d['detected_by']} honest replica(s)"
        )
    if result.rate_limited_drops:
        typer.echo(f"rate limit: {result.rate_limited_drops:,} peer messages dropped")
    typer.echo(f"history: {verdict}; trace sha256 {result.trace_sha256}")


_EXTRA_FLAGS: dict[type, tuple[tuple[str, str], ...]] = {
    MultiRaftConfig: (
        ("groups", "--groups"),
        ("replicas", "--replicas"),
        ("split_at_ops", "--split-at-ops"),
    ),
}
"""Flags of the simulations that have more settings than ``SimConfig``."""


def _command(
    protocol: str,
    default_nodes: int = 5,
    *,
    config_type: type[SimConfig] = SimConfig,
    extra: tuple[inspect.Parameter, ...] = (),
    runner: Runner = run,
) -> Callable[..., None]:
    """The ``quorate sim PROTOCOL`` command: every simulation's flags, plus
    ``extra`` ones (keyword parameters of ``config_type`` with typer options
    as defaults), run by ``runner``."""

    def command(
        nodes: int = typer.Option(default_nodes, "--nodes", help="Replicas."),
        regions: int = typer.Option(
            1, "--regions", help="Regions (nodes and clients spread round robin)."
        ),
        inter_region_ms: float = typer.Option(
            50.0, "--inter-region-ms", help="One-way latency between regions."
        ),
        intra_region_ms: float = typer.Option(
            0.5, "--intra-region-ms", help="One-way latency within a region."
        ),
        bandwidth_gbps: float = typer.Option(
            1.0, "--bandwidth-gbps", help="Each endpoint's outgoing link."
        ),
        duration: float = typer.Option(
            10.0, "--duration", help="Simulated seconds of client load."
        ),
        clients: int = typer.Option(10, "--clients", help="Client endpoints."),
        rate: float = typer.Option(
            0.0, "--rate", help="Open-loop ops/s in aggregate (0: closed loop)."
        ),
        faults: str = typer.Option(
            "none", "--faults", help="none | chaos | SPEC | @file (see runtime.sim.faults)."
        ),
        heal_at: float | None = typer.Option(
            None, "--heal-at", help="Start of the liveness phase (s)."
        ),
        loss: float = typer.Option(0.0, "--loss", help="Baseline message loss probability."),
        reorder: float = typer.Option(
            0.0, "--reorder", help="Share of messages that may overtake earlier ones (else FIFO links)."
        ),
        seed: int = typer.Option(0, "--seed", help="Fixes every random choice of the run."),
        history: str | None = typer.Option(
            None, "--history", help="Write the client history (JSON) here."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON object as the last line."
        ),
        byzantine: str = typer.Option(
            "", "--byzantine", help="COUNT:BEHAVIOUR[,...] Byzantine replicas (BFT protocols; 'random' draws one)."
        ),
        allow_unsafe: bool = typer.Option(
            False, "--allow-unsafe", help="Allow more than f Byzantine replicas (safety is then void)."
        ),
        rate_limit: float = typer.Option(
            0.0, "--rate-limit", help="Per-peer messages/s each replica admits (0: off)."
        ),
        flood_copies: int = typer.Option(
            1, "--flood-copies", help="A 'flood' replica sends every message this many times."
        ),
        op_timeout: float = typer.Option(
            1.0, "--op-timeout", help="Seconds before a client gives an operation up (outcome unknown)."
        ),
        resend_timeout: float = typer.Option(
            0.0,
            "--resend-timeout",
            help="BFT: seconds without a result before a request goes to every replica (0: half of --op-timeout).",
        ),
        option: list[str] | None = typer.Option(  # noqa: B008 - typer's declaration style
            None, "--option", help="Protocol option KEY=VALUE (repeatable), e.g. batch_max=256."
        ),
        liveness_bound: float = typer.Option(
            10.0, "--liveness-bound", help="Seconds after the heal within which the cluster must commit again."
        ),
        **more: Any,
    ) -> None:
        config = config_type(
            protocol=protocol,
            nodes=nodes,
            regions=regions,
            inter_region_ms=inter_region_ms,
            intra_region_ms=intra_region_ms,
            bandwidth_gbps=bandwidth_gbps,
            duration_s=duration,
            clients=clients,
            rate_ops=rate,
            faults=faults,
            heal_at_s=heal_at,
            loss=loss,
            reorder=reorder,
            seed=seed,
            byzantine=byzantine,
            allow_unsafe=allow_unsafe,
            rate_limit_msgs_per_s=rate_limit,
            flood_copies=flood_copies,
            op_timeout_s=op_timeout,
            resend_timeout_s=resend_timeout,
            protocol_options=parse_options(option or []),
            liveness_bound_s=liveness_bound,
            **more,
        )
        run_command(config, history, as_json, runner)

    command.__doc__ = f"Simulate a {protocol} cluster under load and faults; check the history."
    signature = inspect.signature(command)
    kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = signature.replace(parameters=[*kept, *extra])  # type: ignore[attr-defined]
    command.__annotations__ = {
        **{k: v for k, v in command.__annotations__.items() if k != "more"},
        **{p.name: p.annotation for p in extra},
    }
    return command


def _option(name: str, annotation: type, default: Any, flag: str, help: str) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(default, flag, help=help), annotation=annotation
    )


sim_app.command("raft")(_command("raft"))
sim_app.command("primary")(_command("primary"))
sim_app.command("pbft")(_command("pbft", default_nodes=4))
sim_app.command("hotstuff")(_command("hotstuff", default_nodes=4))
sim_app.command("multiraft")(
    _command(
        "multiraft",
        config_type=MultiRaftConfig,
        runner=run_multiraft,
        extra=(
            _option("groups", int, 16, "--groups", "Range groups at the start (the meta group comes on top)."),
            _option("replicas", int, 3, "--replicas", "Replicas of each range (and of the meta group)."),
            _option(
                "split_at_ops", int, 0, "--split-at-ops", "A range splits after applying this many client commands (0: never)."
            ),
        ),
    )
)
