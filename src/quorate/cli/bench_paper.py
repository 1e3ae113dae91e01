"""``quorate bench paper``: the HRB paper's experiments, measured (``quorate.bench.paper``).

Writes ``report.md`` (the claims-vs-measured table first), PNG plots and
``paper.json`` into ``--out``; ``--json`` also prints the report as one JSON
object (without the latency CDFs) on the last line of stdout. A progress bar
goes to stderr on a terminal, progress lines otherwise. Needs the ``bench``
extra (matplotlib, hdrhistogram); bad flags exit 2 with one line.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from quorate.cli.main import bench_app, fail
from quorate.errors import ConfigError


def _slim(report: dict[str, Any]) -> dict[str, Any]:
    slim: dict[str, Any] = json.loads(json.dumps(report))
    for p in (slim.get("figure_1_2") or {}).get("protocols", {}).values():
        for cell in p.get("cells", {}).values():
            cell.pop("latency_cdf_ms", None)
    slim.pop("figure_2_cdf", None)
    return slim


@bench_app.command("paper")
def bench_paper_command(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller n and shorter steps, same code paths (about 3 minutes).")] = False,
    figure: Annotated[str, typer.Option("--figure", help="1, 2, 3, partition, recovery, storage, all, or a comma-separated list.")] = "all",
    out: Annotated[Path, typer.Option("--out", help="Directory for report.md, the PNGs and paper.json.")] = Path("paper-report"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed of every cell.")] = 1,
    sizes: Annotated[str | None, typer.Option("--sizes", help="Override n for Fig. 1/2, e.g. 16,64,256.")] = None,
    protocols: Annotated[str, typer.Option("--protocols", help="Protocols of Fig. 1/2.")] = "hrb,raft,pbft,hotstuff,casper",
    p99_bound_ms: Annotated[float, typer.Option("--p99-bound-ms", help="A ramp step is good only with p99 within this.")] = 1000.0,
    budget_s: Annotated[float, typer.Option("--budget-s", help="Wall seconds for Fig. 1/2 (0: 840, quick 60).")] = 0.0,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Most ramp steps per cell (0: by n).")] = 0,
    step_s: Annotated[float, typer.Option("--step-s", help="Simulated seconds measured per step (0: by n).")] = 0.0,
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Measure the CPU constants here first.")] = True,
    validate: Annotated[bool, typer.Option("--validate/--no-validate", help="Sim vs real processes on loopback.")] = True,
) -> None:
    """Fig. 1-3, partitions, recovery and storage of the HRB paper: measured, with the claims beside them."""
    from quorate.bench.paper import (
        PaperConfig,
        parse_figures,
        parse_protocols,
        parse_sizes,
        run_paper,
    )
    from quorate.bench.paper_report import write_outputs

    try:
        config = PaperConfig(
            quick=quick,
            figures=parse_figures(figure),
            seed=seed,
            sizes=parse_sizes(sizes) if sizes else (),
            protocols=parse_protocols(protocols),
            p99_bound_ms=p99_bound_ms,
            budget_s=budget_s,
            calibrate=calibrate,
            validate_real=validate,
            max_steps=max_steps,
            step_s=step_s,
        ).validate()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    command = "quorate " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=Console(stderr=True), transient=True
        ) as bar:
            task = bar.add_task("paper", total=1.0)

            def progress(what: str, share: float) -> None:
                bar.update(task, completed=share, description=what[:70])

            report = run_paper(config, progress)
    else:

        def progress(what: str, share: float) -> None:
            typer.echo(f"[{share:4.0%}] {what}", err=True)

        report = run_paper(config, progress)
    for path in write_outputs(report, out, command):
        typer.echo(f"wrote {path}", err=True)
    if as_json:
        typer.echo(json.dumps(_slim(report)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="paper claims vs measured")
    for column in ("claim", "ours", "verdict"):
        table.add_column(column)
    for row in report["claims"]:
        ours = row["our_value"]
        table.add_row(row["claim"], "-" if ours is None else str(ours), row["verdict"])
    Console().print(table)
