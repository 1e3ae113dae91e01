"""``quorate sweep``: one simulated scenario under many seeds, in parallel.

    quorate sweep --protocol raft --seeds 1..200 --faults chaos --workers 2
    quorate sweep --sweep pbft-n4-byzantine --seeds 1..500 --workers 2
    quorate sweep --protocol pbft --seeds 1..1000 --faults chaos --ray HOST:6379

Theory of operation: every flag that is not the sweep's own is a flag of
``quorate sim PROTOCOL`` and is parsed by that very command's parser, so the
two can never disagree about a flag or a default; ``--sweep NAME`` takes a
scenario from the shared chaos sweeps instead (``quorate.bench.chaos_sweeps``,
the ones the test suite runs). Seeds run on ``--workers`` local processes or,
with ``--ray ADDRESS``, as Ray tasks (``quorate.bench.sweep``). Each seed's
result is the same as ``quorate sim`` gives for that seed (same trace hash).

A failed seed prints ``seed N: PROBLEM; reproduce with: quorate sim ... --seed
N``. Exit codes: 0 every seed passed; 1 a seed failed; 2 bad input (an empty
range such as ``5..1``, an unknown flag, a Ray address that does not answer),
one line on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

from quorate.bench.chaos_sweeps import HRB_SWEEPS, MULTIRAFT_SWEEPS, SWEEPS, sweep_named
from quorate.bench.hrb_sim import HrbRunConfig
from quorate.bench.hrb_sim import command_line as hrb_command_line
from quorate.bench.sweep import (
    RAY_CONNECT_TIMEOUT_S,
    ProcessExecutor,
    RayExecutor,
    SweepExecutor,
    Verdict,
    parse_seeds,
    run_sweep,
    summarize,
    sweep_configs,
)
from quorate.cli.main import app, fail, parse_options, sim_app
from quorate.cli.sim import _EXTRA_FLAGS, _FLAGS, command_line, parse_quorum_flag, parse_voters
from quorate.errors import ConfigError
from quorate.runtime.sim import SimConfig
from quorate.runtime.sim.multiraft import MultiRaftConfig

_CONFIG_TYPES: dict[str, type[SimConfig]] = {"multiraft": MultiRaftConfig}
"""Simulations whose config has more settings than ``SimConfig``."""

_NOT_PER_SWEEP = {"seed": "--seeds", "history": "a history per seed", "as_json": "--json"}
"""``quorate sim`` flags a sweep sets itself."""


def sim_config_from_flags(protocol: str, args: list[str]) -> SimConfig:
    """Parse ``args`` with ``quorate sim PROTOCOL``'s own parser into a config
    (seed 0); ``ConfigError`` for a flag that command does not take."""
    commands: dict[str, Any] = getattr(typer.main.get_command(sim_app), "commands", {})
    command = commands.get(protocol) if protocol != "swim" else None
    if command is None:
        choices = sorted(name for name in commands if name != "swim")
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(choices)}")
    try:
        context = command.make_context(f"quorate sim {protocol}", list(args))
    except TyperException as exc:
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        raise ConfigError(f"{message} (a sweep takes the flags of 'quorate sim {protocol}')") from None
    config_type = _CONFIG_TYPES.get(protocol, SimConfig)
    field_of_flag = {flag: field for field, flag in (*_FLAGS, *_EXTRA_FLAGS.get(config_type, ()))}
    values: dict[str, Any] = {}
    for param in command.params:
        value = context.params.get(param.name or "")
        flag = next((o for o in param.opts if o.startswith("--")), "")
        if param.name in _NOT_PER_SWEEP:
            if value != param.default and value not in (None, False):
                raise ConfigError(f"{flag} is not for a sweep (it uses {_NOT_PER_SWEEP[param.name]})")
        elif param.name == "option":
            values["protocol_options"] = parse_options(list(value or []))
        elif param.name == "allow_unsafe":
            values["allow_unsafe"] = bool(value)
        elif flag in field_of_flag:
            field = field_of_flag[flag]
            # The flags whose text 'quorate sim' parses itself.
            if field == "voters":
                value = parse_voters(value or "")
            elif field == "quorum":
                value = parse_quorum_flag(value or "")
            values[field] = value
    return config_type(protocol=protocol, **values)


def _progress(total: int) -> tuple[Callable[[Verdict], None] | None, Callable[[], None]]:
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("", total=total)
    failed = 0
    bar.start()

    def step(verdict: Verdict) -> None:
        nonlocal failed
        failed += verdict["problem"] is not None
        bar.update(task, advance=1, description=f"{failed} failed")

    return step, bar.stop


@app.command(
    "sweep",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def sweep_command(
    context: typer.Context,
    protocol: Annotated[
        str | None, typer.Option("--protocol", help="raft, pbft, hotstuff, casper, primary or multiraft (then any 'quorate sim' flag).")
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            "--sweep", help=f"A shared chaos sweep instead: {', '.join(map(str, (*SWEEPS, *MULTIRAFT_SWEEPS, *HRB_SWEEPS)))}."
        ),
    ] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds A..B (inclusive).")] = "1..10",
    workers: Annotated[int, typer.Option("--workers", help="Parallel processes (or Ray tasks in flight).")] = 2,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray", help="Run on a Ray cluster: HOST:PORT, ray://HOST:PORT, auto, or local."),
    ] = None,
    ray_timeout: Annotated[
        float, typer.Option("--ray-timeout", help="Seconds to wait for the Ray cluster to answer.")
    ] = RAY_CONNECT_TIMEOUT_S,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a simulated scenario under many seeds in parallel; list the failures
    with the command that reproduces each."""
    try:
        seed_range = parse_seeds(seeds)
        if (protocol is None) == (sweep is None):
            raise ConfigError("name either --protocol P (with any 'quorate sim' flags) or --sweep NAME")
        if sweep is not None:
            if context.args:
                raise ConfigError(f"--sweep {sweep} fixes the scenario; drop {context.args[0]}")
            base = sweep_named(sweep).config(0)
        else:
            assert protocol is not None
            base = sim_config_from_flags(protocol, context.args)
        configs = sweep_configs(base, seed_range)
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        if not ray_timeout > 0:
            raise ConfigError(f"--ray-timeout must be > 0 seconds, got {ray_timeout}")
        executor: SweepExecutor = (
            RayExecutor(ray_address, workers, ray_timeout) if ray_address else ProcessExecutor(workers)
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    step, stop = _progress(len(configs))
    started = time.monotonic()
    try:
        verdicts = run_sweep(configs, executor, step)
    finally:
        stop()
        executor.close()
    summary = summarize(verdicts, time.monotonic() - started)
    failures = [
        {"seed": v["seed"], "problem": v["problem"], "reproduce": _reproduce(config)}
        for v, config in zip(verdicts, configs)
        if v["problem"] is not None
    ]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "protocol": base.protocol,
                    "sweep": sweep,
                    "seeds": [seed_range[0], seed_range[-1]],
                    "workers": workers,
                    "executor": executor.name,
                    "summary": summary,
                    "failures": failures,
                    "runs": verdicts,
                }
            )
        )
    else:
        _print_table(base, seed_range, executor.name, workers, summary)
    for failure in failures:
        typer.echo(
            f"seed {failure['seed']}: {failure['problem']}; reproduce with: {failure['reproduce']}",
            err=True,
        )
    if failures:
        raise typer.Exit(1)


def _reproduce(config: SimConfig | HrbRunConfig) -> str:
    return hrb_command_line(config) if isinstance(config, HrbRunConfig) else command_line(config)


def _print_table(
    base: SimConfig | HrbRunConfig, seeds: range, executor: str, workers: int, summary: dict[str, Any]
) -> None:
    table = Table(
        title=f"{base.protocol} x{base.nodes}, seeds {seeds[0]}..{seeds[-1]}, "
        f"{workers} {'Ray tasks' if executor == 'ray' else 'worker(s)'}"
    )
    for column in ("seeds", "passed", "failed", "undecided", "ops/s median", "ops/s min..max", "wall s"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_row(
        str(summary["seeds"]),
        str(summary["passed"]),
        str(summary["failed"]),
        str(summary["undecided"]),
        f"{summary['throughput_ops_median']:,.0f}",
        f"{summary['throughput_ops_min']:,.0f}..{summary['throughput_ops_max']:,.0f}",
        f"{summary['wall_s']:.1f}",
    )
    Console().print(table)
