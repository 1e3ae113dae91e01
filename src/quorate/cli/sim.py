"""``quorate sim <protocol>``: run a protocol in the deterministic simulator.

Runs one seeded simulation (``quorate.runtime.sim.run``), checks the client
history for linearizability (``quorate.check``) and prints either a few lines
for people or, with ``--json``, one JSON object as the last line of stdout.
A progress bar (simulated time) goes to stderr when it is a terminal.

BFT protocols (``pbft``, ``hotstuff``, ``casper``) take ``--byzantine COUNT:BEHAVIOUR[,...]``
(``random`` draws a behaviour from the seed; more than f replicas only with
``--allow-unsafe``), ``--rate-limit MSGS_PER_S`` (per-peer token buckets in
front of each replica's CPU; 0 = off) and ``--flood-copies K`` (a ``flood``
replica sends everything K times). Their reports add ``byzantine``,
``detections``, ``excluded`` and ``rate_limited_drops``.

Replicas are numbered 1..n and shown as n1..nN, as in a real cluster (the
JSON carries the numbers).

Raft takes ``--voters LIST`` and ``--quorum Q1:Q2`` (the cluster moves to
those voters, the others learners, and quorum sizes once a leader exists),
``--quorum-manager STRATEGY`` (``network``, ``performance``,
``fault_tolerance``, ``hybrid``: ``quorate.quorum`` manages the voters,
with ``--manager-voters`` and ``--manager-failures``), ``--reconfigure-every
S`` (a random joint change that often until the heal) and
``--client-region R`` (every client in region R). The report adds
``quorum``: each proposal and its outcome, the manager's events and the
configuration at the end.

``quorate sim multiraft`` (``quorate.runtime.sim.multiraft``) takes every
flag above but the configuration changes (it moves replicas itself) plus
``--groups G``, ``--replicas R`` and ``--split-at-ops K``;
its report adds ``groups``, ``splits``, ``moves`` and ``quiesced_groups``.

Exit codes: 0 all good; 1 the run failed — a safety violation, a
non-linearizable history, or a liveness phase after which the cluster did not
commit again within its bound (``NOT RECOVERED``); one line on stderr says
which and the command that reproduces the run, and the JSON's ``ok`` is false with
the reasons in ``failures``; 2 a bad flag or an impossible scenario (one line
on stderr, never a traceback).

Cost: a run that looks expensive (hundreds of replicas, or an extrapolation
of its first slices beyond a minute or a gigabyte) gets a warning on stderr
with an estimate of its time and memory while it can still be stopped
(``quorate.cli.sim_cost``).
"""

from __future__ import annotations

import inspect
import json
import shlex
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import typer

from quorate.cli.main import fail, parse_options, sim_app
from quorate.errors import ConfigError
from quorate.runtime.sim import SimConfig, SimResult, run
from quorate.runtime.sim.multiraft import MultiRaftConfig, run_multiraft
from quorate.runtime.sim.quorum import parse_quorum

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


def _progress_bar() -> tuple[
    Callable[[float, float], None] | None, Callable[[], None], Callable[[str], None]
]:
    """(update, stop, say): a progress bar on stderr when it is a terminal,
    and how to print a line to stderr without breaking it."""
    if not sys.stderr.isatty():
        return None, lambda: None, lambda text: typer.echo(text, err=True)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, highlight=False)
    progress = Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} s simulated"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task("sim", total=1.0)
    progress.start()

    def update(now_s: float, end_s: float) -> None:
        progress.update(task, completed=now_s, total=end_s)

    return update, progress.stop, lambda text: console.print(text, markup=False)


Runner = Callable[..., SimResult]
"""``runner(config, progress=...)``: builds and runs one simulation."""


def run_command(config: SimConfig, history_path: str | None, as_json: bool, runner: Runner = run) -> None:
    """Run, check, print; raises ``typer.Exit`` with the exit code."""
    from quorate.cli.sim_cost import CostWatch

    try:
        config.validate()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    update, stop, say = _progress_bar()
    watch = CostWatch(config, say=say)
    try:
        watch.warn_before()
    except BaseException:
        stop()
        raise
    try:
        result = runner(config, progress=watch.progress(update))
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
    failures = run_failures(result, linearizable)
    report = result.to_json()
    report["linearizable"] = linearizable
    report["check_verdict"] = verdict
    report["failed_ops_cas_mismatch"] = cas_mismatches(result.history)
    report["ok"] = not failures
    report["failures"] = failures
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_human(result, verdict)
    if failures:
        typer.echo(
            f"quorate: FAILED: {'; '.join(failures)}; reproduce with: {command_line(config)}", err=True
        )
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
    ("client_region", "--client-region"),
    ("voters", "--voters"),
    ("quorum", "--quorum"),
    ("quorum_manager", "--quorum-manager"),
    ("manager_voters", "--manager-voters"),
    ("manager_failures", "--manager-failures"),
    ("reconfigure_every_s", "--reconfigure-every"),
)
"""``SimConfig`` fields that ``quorate sim`` sets, and their flags."""


def command_line(config: SimConfig) -> str:
    """The ``quorate sim`` command that runs ``config`` again, seed included
    (flags left at their defaults are omitted)."""
    defaults = type(config)(protocol=config.protocol)
    cli_defaults = {"nodes": 4 if config.protocol in ("pbft", "hotstuff", "casper") else 5}
    parts = ["quorate", "sim", config.protocol]
    for field, flag in (*_FLAGS, *_EXTRA_FLAGS.get(type(config), ())):
        value = getattr(config, field)
        if value != cli_defaults.get(field, getattr(defaults, field)) and value is not None:
            if field == "voters":
                text = ",".join(map(str, value))
            elif field == "quorum":
                text = f"{value[0]}:{value[1]}"
            else:
                text = repr(value) if isinstance(value, float) else str(value)
            parts += [flag, shlex.quote(text)]
    if config.allow_unsafe:
        parts.append("--allow-unsafe")
    for key, value in config.protocol_options.items():
        text = json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
        parts += ["--option", shlex.quote(f"{key}={text}")]
    parts += ["--seed", str(config.seed)]
    return " ".join(parts)


def run_failures(result: SimResult, linearizable: bool | None) -> list[str]:
    """Why the run did not do what was asked, one short reason each (empty: it did)."""
    failures = []
    if result.safety_violations:
        first = result.safety_violations[0]
        failures.append(f"safety violation at {first['time_s']:.6f} s: {first['message']}")
    if linearizable is False:
        failures.append("the history is not linearizable")
    if result.liveness_ok is False:
        if result.recovered_after_s is None:
            failures.append(
                f"NOT RECOVERED: nothing committed after the heal at {result.heal_at_s:g} s"
            )
        else:
            failures.append(
                f"NOT RECOVERED in time: committing again took {result.recovered_after_s:g} s "
                "after the heal"
            )
    return failures


def cas_mismatches(history: list[dict[str, Any]]) -> int:
    """Operations that completed ``fail`` because a cas found another value."""
    return sum(1 for e in history if e.get("type") == "fail" and e.get("f") == "cas")


def ops_text(result: SimResult) -> str:
    """The client operations, saying what ``failed`` means."""
    cas = cas_mismatches(result.history)
    refused = result.failed_ops - cas
    if not result.failed_ops:
        failed = ""
    elif not refused:
        failed = f", {cas:,} failed (cas mismatches: the key held another value)"
    elif not cas:
        failed = f", {refused:,} failed (refused by the cluster)"
    else:
        failed = f", {result.failed_ops:,} failed ({cas:,} cas mismatches, {refused:,} refused)"
    return (
        f"ops: {result.committed_ops:,} ok{failed}, {result.unknown_ops:,} unknown (timed out); "
        f"{result.throughput_ops:,.1f} ops/s"
    )


def latency_text(latency_ms: dict[str, float | None]) -> str:
    if latency_ms.get("p50") is None:
        return "latency: no operation completed"
    return "latency ms " + " ".join(f"{q} {latency_ms[q]}" for q in ("p50", "p90", "p99", "max") if q in latency_ms)


def leadership_text(result: SimResult) -> str:
    terms = "views" if result.byzantine or result.protocol in ("pbft", "hotstuff", "casper") else "terms"
    return (
        f"elections won: {result.elections} ({terms} with a leader), leader changes: "
        f"{result.leader_changes} ({terms} led by another node than the one before)"
    )


def _print_human(result: SimResult, verdict: str) -> None:
    typer.echo(
        f"{result.protocol}: {result.nodes} nodes, {result.regions} region(s), {result.clients} clients, "
        f"seed {result.seed}: {result.sim_seconds:.2f} s simulated in {result.wall_seconds:.2f} s "
        f"({result.events:,} events, {result.events_per_second:,.0f}/s)"
    )
    typer.echo(ops_text(result))
    typer.echo(latency_text(result.latency_ms))
    typer.echo(
        f"faults injected: {result.faults_injected}; messages: {result.messages_sent:,} sent, "
        f"{result.messages_dropped:,} dropped"
    )
    typer.echo(leadership_text(result))
    if result.heal_at_s is not None:
        if result.recovered_after_s is None:
            typer.echo(f"liveness: healed at {result.heal_at_s:g} s; nothing committed after it (NOT RECOVERED)")
        else:
            typer.echo(
                f"liveness: healed at {result.heal_at_s:g} s, committing again after "
                f"{result.recovered_after_s} s ({'ok' if result.liveness_ok else 'NOT RECOVERED in time'})"
            )
    for v in result.safety_violations:
        typer.echo(f"SAFETY VIOLATION at {v['time_s']:.6f} s: {v['message']}")
    if result.byzantine:
        typer.echo("byzantine: " + ", ".join(f"n{node}={b}" for node, b in result.byzantine.items()))
    for d in result.detections:
        typer.echo(
            f"detected: n{d['offender']} equivocated ({d['kind']} at {d['height']}/{d['round']}) "
            f"first at {d['first_detected_s']:.3f} s, by {d['detected_by']} honest replica(s)"
        )
    for note in undetected_equivocators(result):
        typer.echo(note)
    if result.rate_limited_drops:
        typer.echo(f"rate limit: {result.rate_limited_drops:,} peer messages dropped")
    if result.quorum:
        q = result.quorum
        final = q.get("final") or {}
        typer.echo(
            f"configuration changes: {q['proposals']} proposed, {q['accepted']} accepted; at the end voters "
            f"{final.get('voters')} (Q1={final.get('election_quorum')}, Q2={final.get('commit_quorum')}), "
            f"leader {final.get('leader')}"
        )
        for event in q.get("manager_events", []):
            typer.echo(f"  {event['time_s']:8.3f} s  {event['event']}: {event['detail']}")
    typer.echo(f"history: {verdict}; trace sha256 {result.trace_sha256}")


UNDETECTED_EQUIVOCATION = {
    "pbft": (
        "a PBFT backup's equivocation leaves no proof. It sends a prepare or commit to half "
        "of the replicas and a conflicting one to the other half; replicas do not relay the "
        "votes they receive, so no honest replica holds two of its signed votes for one "
        "slot. Such votes never make a quorum, so they cost nothing. A primary's "
        "equivocation is caught because backups echo its signed pre-prepare in their prepares."
    ),
}
UNDETECTED_OTHERWISE = (
    "a conviction needs two of its conflicting signed messages for one slot at one honest "
    "replica, and none received both"
)


def undetected_equivocators(result: SimResult) -> list[str]:
    """One explanation per equivocating replica that no honest replica convicted."""
    convicted = {str(d["offender"]) for d in result.detections}
    out = []
    for node, behaviour in result.byzantine.items():
        if behaviour == "equivocate" and node not in convicted:
            why = UNDETECTED_EQUIVOCATION.get(result.protocol, UNDETECTED_OTHERWISE)
            out.append(f"not detected: n{node} equivocated but was never convicted:")
            out += textwrap.wrap(why, 76, initial_indent="  ", subsequent_indent="  ")
    return out


def parse_voters(text: str) -> tuple[int, ...]:
    if not text.strip():
        return ()
    try:
        return tuple(int(part.strip().lstrip("nN")) for part in text.split(","))
    except ValueError:
        raise fail(f"--voters takes node ids separated by commas (e.g. 1,4,7), got {text!r}") from None


def parse_quorum_flag(text: str) -> tuple[int, int] | None:
    if not text.strip():
        return None
    try:
        return parse_quorum(text)
    except ConfigError as exc:
        raise fail(str(exc)) from None


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
        liveness_bound: float = typer.Option(
            10.0, "--liveness-bound", help="Seconds after the heal within which the cluster must commit again."
        ),
        client_region: int = typer.Option(-1, "--client-region", help="Every client in this region (-1: spread)."),
        voters: str = typer.Option("", "--voters", help="Raft: move to these voters (e.g. 1,4,7), the rest learners."),
        quorum: str = typer.Option("", "--quorum", help="Raft: election:commit quorum sizes Q1:Q2 (Q1 + Q2 > voters)."),
        quorum_manager: str = typer.Option(
            "", "--quorum-manager", help="Raft: manage the voters with network | performance | fault_tolerance | hybrid."
        ),
        manager_voters: int = typer.Option(5, "--manager-voters", help="Voters the quorum manager aims for."),
        manager_failures: int = typer.Option(1, "--manager-failures", help="Voters whose loss must leave a quorum."),
        reconfigure_every: float = typer.Option(
            0.0, "--reconfigure-every", help="Raft: a random joint membership change this often until the heal (0: off)."
        ),
        option: list[str] | None = typer.Option(  # noqa: B008 - typer's declaration style
            None, "--option", help="Protocol option KEY=VALUE (repeatable), e.g. batch_max=256."
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
            client_region=client_region,
            voters=parse_voters(voters),
            quorum=parse_quorum_flag(quorum),
            quorum_manager=quorum_manager,
            manager_voters=manager_voters,
            manager_failures=manager_failures,
            reconfigure_every_s=reconfigure_every,
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
sim_app.command("casper")(_command("casper", default_nodes=4))
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
