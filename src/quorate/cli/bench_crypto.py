"""``quorate bench crypto``: what each cryptographic primitive costs here.

Prints the median CPU time per call of Ed25519, BLS (single, aggregate,
threshold), Schnorr proof of possession, HMAC authenticators, the
simulator's cost model and zero-knowledge ballots and tallies, the
``CryptoCosts`` those medians imply, what a distributed key generation
and a resharing cost a whole group, and what Ristretto255 costs under each
backend that loads here.
``--json`` prints one machine-readable object; otherwise tables for people.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail, missing_module

DEFAULT_ITERATIONS = 50


@bench_app.command("crypto")
def bench_crypto_command(
    iterations: int = typer.Option(
        DEFAULT_ITERATIONS, "--iterations", help="Timed samples per primitive (median reported)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Measure signature, aggregation, threshold, MAC, ZK-vote and DKG costs on this machine."""
    if iterations < 1:
        raise fail("need --iterations >= 1")
    try:
        from quorate.bench.crypto import RISTRETTO_MEASURES, report
    except ImportError as exc:
        raise fail(missing_module(exc)) from None
    result = report(iterations)
    if as_json:
        typer.echo(json.dumps(result))
        return
    console = Console()
    medians = Table(title=f"crypto primitives (median of {iterations}, µs of CPU per call)")
    medians.add_column("primitive")
    medians.add_column("µs", justify="right")
    for name, value in result["medians_us"].items():
        medians.add_row(name.removesuffix("_us"), f"{value:,.2f}")
    console.print(medians)
    costs = Table(title="cost model these imply (CryptoCosts, seconds)")
    costs.add_column("field")
    costs.add_column("s", justify="right")
    for name, value in result["crypto_costs_s"].items():
        costs.add_row(name, f"{value:.3g}")
    console.print(costs)
    dkg = Table(title="distributed key generation (CPU of the whole group, median)")
    for column in ("t", "n", "runs", "fresh ms", "per node ms", "resharing ms"):
        dkg.add_column(column, justify="right")
    for row in result["dkg"]:
        dkg.add_row(
            str(row["t"]),
            str(row["n"]),
            str(row["runs"]),
            f"{row['group_cpu_ms']:,.1f}",
            f"{row['per_participant_cpu_ms']:,.1f}",
            f"{row['reshare_group_cpu_ms']:,.1f}",
        )
    console.print(dkg)
    ristretto = result["ristretto255"]
    backends = Table(title=f"Ristretto255 backends (µs, median; in use: {ristretto['backend']})")
    backends.add_column("backend")
    for measure in RISTRETTO_MEASURES:
        backends.add_column(measure.removesuffix("_us").replace("_", " "), justify="right")
    ratios = ristretto.get("ratio_to_libsodium", {})
    for name, figures in ristretto["medians_us"].items():
        cells = []
        for key in RISTRETTO_MEASURES:
            ratio = ratios.get(name, {}).get(key)
            cells.append(f"{figures[key]:,.1f}" + (f" (×{ratio:.1f})" if ratio else ""))
        backends.add_row(name, *cells)
    console.print(backends)
