"""``quorate bench recovery``: erasure-coded checkpoints and delta sync
against full state replication (see ``quorate.bench.recovery``).

``--json`` prints one machine-readable object; otherwise tables for people,
with the paper's claims beside the measured figures.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from quorate.cli.main import bench_app, fail, missing_module, shown
from quorate.errors import ConfigError

TABLE_WIDTH = 150


def _stale_periods(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise fail(f"--stale takes seconds separated by commas, e.g. 1,10,60; got {text!r}") from None


@bench_app.command("recovery")
def bench_recovery_command(
    checkpoint_mb: float = typer.Option(100.0, "--checkpoint-mb", help="Size of the shard state (MB)."),
    k: int = typer.Option(4, "--data-fragments", "-k", help="Reed-Solomon data fragments."),
    m: int = typer.Option(2, "--parity-fragments", "-m", help="Reed-Solomon parity fragments."),
    value_bytes: int = typer.Option(1024, "--value-bytes", help="Bytes per value written."),
    write_rate: float = typer.Option(1000.0, "--write-rate", help="Writes per second."),
    zipf: float = typer.Option(0.99, "--zipf", help="Skew of the written keys (0: uniform)."),
    stale: str = typer.Option("1,10,60", "--stale", help="Stale periods for delta sync, in seconds."),
    log_since_checkpoint: float = typer.Option(
        5.0, "--log-since-checkpoint", help="Seconds of writes after the checkpoint to replay."
    ),
    bandwidth_gbps: float = typer.Option(1.0, "--bandwidth-gbps", help="Simulated link speed."),
    codec: str = typer.Option("", "--codec", help="pyeclib or zfec (default: the fastest installed)."),
    real: bool = typer.Option(True, "--real/--no-real", help="Also run member processes on loopback."),
    seed: int = typer.Option(1, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Recovery from erasure-coded checkpoints vs full state; delta sync bytes; storage."""
    try:
        from quorate.bench.recovery import RecoverySettings, report

        settings = RecoverySettings(
            checkpoint_mb=checkpoint_mb,
            k=k,
            m=m,
            value_bytes=value_bytes,
            write_rate=write_rate,
            zipf=zipf,
            stale_s=_stale_periods(stale),
            log_since_checkpoint_s=log_since_checkpoint,
            bandwidth_gbps=bandwidth_gbps,
            codec=codec or None,
            real=real,
            seed=seed,
        )
        console = Console(stderr=True)
        result = report(settings, None if as_json else lambda text: console.print(f"[dim]{text}[/dim]"))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except ImportError as exc:
        raise fail(missing_module(exc)) from None
    if as_json:
        typer.echo(json.dumps(result))
        return
    _print_tables(result)


def _print_tables(result: dict) -> None:  # type: ignore[type-arg]
    console = Console(width=TABLE_WIDTH)
    s = result["settings"]
    state = result["state"]
    console.print(
        f"shard state {state['state_bytes'] / 1e6:.1f} MB ({state['keys']:,} keys), codec {s['codec']}, "
        f"k={s['k']}, m={s['m']}, {s['bandwidth_gbps']:g} Gbps; {s['write_rate']:g} writes/s of "
        f"{s['value_bytes']} B, Zipf {s['zipf']:g}"
    )
    codecs = Table(title="Reed-Solomon codecs on this state (CPU, median; decode with m data fragments lost)")
    for column in ("codec", "encode MB/s", "decode MB/s", "encode s", "decode s"):
        codecs.add_column(column, justify="right" if column != "codec" else "left")
    for name, f in result["codecs"].items():
        codecs.add_row(name, f"{f['encode_mb_s']:,.0f}", f"{f['decode_mb_s']:,.0f}", f"{f['encode_s']:.3f}", f"{f['decode_s']:.3f}")
    console.print(codecs)
    sim = result["recovery_sim"]
    rec = Table(title="recovery time, simulator (s)")
    for column in ("path", "transfer", "CPU", "total", "bytes", "downlink bound"):
        rec.add_column(column, justify="right" if column != "path" else "left")
    ck, full, hist = sim["checkpoint"], sim["full_state"], sim["log_replay_from_genesis"]
    rec.add_row(
        "checkpoint fragments + log",
        f"{ck['fragments_fetch_s'] + ck['log_fetch_s']:.3f}",
        f"{ck['rebuild_cpu_s'] + ck['restore_cpu_s'] + ck['replay_cpu_s']:.3f}",
        f"{ck['total_s']:.3f}", f"{ck['bytes']:,}", f"{ck['downlink_bound_s']:.3f}",
    )
    rec.add_row(
        "full state", f"{full['fetch_s']:.3f}", f"{full['verify_cpu_s'] + full['restore_cpu_s']:.3f}",
        f"{full['total_s']:.3f}", f"{full['bytes']:,}", f"{full['downlink_bound_s']:.3f}",
    )
    rec.add_row("whole log replay", f"{hist['fetch_s']:.3f}", f"{hist['replay_cpu_s']:.3f}", f"{hist['total_s']:.3f}", f"{hist['bytes']:,}", "")
    console.print(rec)
    real = result["recovery_real"]
    if real is not None:
        console.print(
            f"loopback ({real['member_processes']} member processes, median of {real['repeats']}): "
            f"checkpoint + log {real['checkpoint_total_s']:.3f} s (transfer {real['checkpoint_transfer_s']:.3f} s), "
            f"full state {real['full_total_s']:.3f} s (transfer {real['full_transfer_s']:.3f} s)"
        )
    delta = Table(title="delta sync vs full transfer (bytes both ways; time in the simulator with CPU charged)")
    for column in ("stale s", "writes", "keys", "mode", "delta B", "merkle B", "log B", "full B", "saving", "sync s", "full s", "ok"):
        delta.add_column(column, justify="right")
    for row in result["delta"]:
        delta.add_row(
            f"{row['stale_s']:g}", f"{row['writes']:,}", f"{row['distinct_keys_written']:,}", row["mode"],
            f"{row['delta_bytes']:,}", f"{row['merkle_bytes']:,}", shown(row["log_bytes"] and f"{row['log_bytes']:,}"),
            f"{row['full_bytes']:,}", f"{row['saving']:.1%}", f"{row['delta_sync_s']:.3f}", f"{row['full_sync_s']:.3f}",
            "yes" if row["correct"] else "NO",
        )
    console.print(delta)
    st = result["storage"]
    console.print(
        f"storage: {st['per_node_bytes_erasure']:,} B per member with erasure coding vs {st['per_node_bytes_full']:,} B "
        f"replicated; {st['total_bytes_erasure']:,} vs {st['total_bytes_full']:,} B over {st['members']} members "
        f"({st['saving']:.1%} saved, {st['tolerates_lost_members']} members may be lost)"
    )
    claims = Table(title="the paper's claims beside ours")
    for column in ("what", "paper", "measured"):
        claims.add_column(column, justify="right" if column != "what" else "left")
    for row in result["comparison"]:
        fmt = "{:.1%}" if "saving" in row["what"] else "{:.2f}"
        claims.add_row(row["what"], fmt.format(row["paper"]), fmt.format(row["measured"]))
    console.print(claims)
    for note in result["notes"]:
        console.print(f"- {note}")
