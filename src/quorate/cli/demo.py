"""``quorate demo``: a real three-node cluster survives its leader's crash.

Theory of operation: the demo is the project's promise made visible. It
creates a temporary directory with a cluster CA and certificates (unless
``--insecure``), starts three nodes as separate OS processes with SQLite
storage (``LocalCluster``), and runs concurrent clients
(``RecordedWorkload``) that record every operation. Then, in phases:

1. *steady* — writes and reads against an elected leader;
2. *crash* — the leader is killed with SIGKILL; the clients ride through the
   election (same ``(client, seq)`` on every retry) and ``recovery_seconds``
   measures kill → first acknowledged operation after it;
3. *catch-up* — the killed node restarts from its own disk and catches up
   with the new leader while the load goes on;
4. *verdict* — every acknowledged fresh key is read back through a
   linearizable list, and the recorded history goes through
   ``quorate.check.check_history``.

The exit code is 0 only if no acknowledged write was lost and the history is
linearizable. Whatever happens (an error, Ctrl-C), the node processes are
killed and the directory removed, unless ``--keep``: then the last line on
stderr (and ``kept_directory`` in the JSON) says where it is. ``--history
FILE`` writes the recorded history in the checker's format (``quorate check
FILE`` checks it again). ``--json`` prints one summary object last.
``--dashboard`` runs ``quorate dashboard`` on the demo's cluster meanwhile
(``--dashboard-port``) and opens it in a browser when there is one, with
``--dashboard-hold`` seconds at the end to look at it before everything stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from quorate.cli.dashboard import DEFAULT_PORT as DEFAULT_DASHBOARD_PORT
from quorate.cli.main import app, fail
from quorate.client.aio import AsyncClient
from quorate.client.workload import RecordedWorkload
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.cluster import LocalCluster

DEMO_NODES = 3
DEMO_WORKERS = 8
STEADY_S = 4.0
AFTER_CRASH_S = 4.0
CATCH_UP_LIMIT_S = 60.0
"""A give-up bound, not a target: on a loaded 2-core machine a restarted node
spends seconds starting Python and replaying its log before it catches up."""
ELECTION_LIMIT_S = 15.0
CHECK_TIMEOUT_S = 20.0
CLIENT_CERTIFICATE = "client"
"""The name of the certificate made for the user's clients (``tls_name``'s default)."""
RAFT_TIMING = {"election_timeout_s": 0.5, "heartbeat_interval_s": 0.05}
STATUS_POLL_S = 0.05


def make_certs(cluster: LocalCluster) -> None:
    """A CA with certificates for every node and for ``client`` (what is
    missing of them)."""
    from quorate.cli.certs import ensure_certificates

    directory = cluster.tls_dir
    assert directory is not None
    ensure_certificates(directory, [*(node_name(n) for n in cluster.ids), CLIENT_CERTIFICATE])


def client_for(cluster: LocalCluster, **kwargs: Any) -> AsyncClient:
    return AsyncClient(cluster.endpoints, tls=cluster.tls_dir, insecure=cluster.insecure, **kwargs)


async def statuses(probe: AsyncClient, cluster: LocalCluster) -> dict[NodeId, StatusReply]:
    out: dict[NodeId, StatusReply] = {}
    for node, endpoint in zip(cluster.ids, cluster.endpoints):
        try:
            out[node] = await probe.status(endpoint)
        except (OSError, EOFError, TimeoutError):
            continue
    return out


async def wait_leader(
    probe: AsyncClient, cluster: LocalCluster, exclude: NodeId | None = None
) -> tuple[NodeId, int]:
    """The leader and its term once a live node reports itself leader."""
    deadline = time.monotonic() + ELECTION_LIMIT_S
    while time.monotonic() < deadline:
        for node, status in (await statuses(probe, cluster)).items():
            if status.role == "leader" and node != exclude:
                return node, status.term
        await asyncio.sleep(STATUS_POLL_S)
    raise TimeoutError(f"no leader elected within {ELECTION_LIMIT_S} s")


class Story:
    """A few readable lines per phase (silent with --json)."""

    def __init__(self, quiet: bool) -> None:
        self.console = Console(stderr=quiet, quiet=quiet, highlight=False)
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.t0:5.1f}s[/dim]  {text}")


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """One JSON array of events, the format ``quorate check`` reads."""
    path.write_text(json.dumps(history) + "\n", encoding="utf-8")


class DemoDashboard:
    """``quorate dashboard`` on the demo's cluster, as a child process."""

    def __init__(self, port: int, hold_s: float) -> None:
        self.port = port
        self.hold_s = hold_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, cluster: LocalCluster) -> None:
        security = ["--insecure"] if cluster.insecure else ["--tls-dir", str(cluster.tls_dir)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "quorate", "dashboard", "--endpoints", ",".join(cluster.endpoints), *security,
             "--port", str(self.port), "--interval", "0.25"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        with contextlib.suppress(Exception):  # no browser here: the URL is printed anyway
            webbrowser.open(self.url)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def run_demo(
    cluster: LocalCluster, story: Story, history_path: Path | None = None, dashboard: DemoDashboard | None = None
) -> dict[str, Any]:
    insecure = cluster.insecure
    cluster.write_configs()
    if not insecure:
        make_certs(cluster)
    cluster.start_all()
    if dashboard is not None:
        dashboard.start(cluster)
        story.say(f"[bold]dashboard[/bold] on {dashboard.url}")
    security = "plain TCP" if insecure else "mutual TLS 1.3"
    story.say(
        f"[bold]started[/bold] {DEMO_NODES} node processes ({security}, SQLite, fsync) on "
        + ", ".join(cluster.endpoints)
    )
    probe = client_for(cluster, timeout_s=1.0)
    workload = RecordedWorkload(lambda: client_for(cluster), workers=DEMO_WORKERS)
    try:
        leader, term = await wait_leader(probe, cluster)
        story.say(f"[bold]elected[/bold] {node_name(leader)} leads term {term}")
        workload.start()
        story.say(f"{DEMO_WORKERS} clients writing, reading and compare-and-setting concurrently")
        await asyncio.sleep(STEADY_S)
        before = workload.stats.ok
        story.say(f"{before} operations acknowledged so far")

        # Phase 2: crash the leader.
        leader, term = await wait_leader(probe, cluster)
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill, leader)
        story.say(f"[bold red]SIGKILL[/bold red] {node_name(leader)}, the leader of term {term}")
        new_leader, new_term = await wait_leader(probe, cluster, exclude=leader)
        elected_s = time.monotonic() - killed_at
        story.say(
            f"[bold]elected[/bold] {node_name(new_leader)} leads term {new_term} "
            f"({elected_s:.2f} s after the crash)"
        )
        while workload.first_ok_invoked_after(killed_at) is None:
            if time.monotonic() - killed_at > ELECTION_LIMIT_S:
                raise TimeoutError("no operation succeeded after the crash")
            await asyncio.sleep(STATUS_POLL_S)
        first_ok = workload.first_ok_invoked_after(killed_at)
        assert first_ok is not None
        recovery_s = first_ok - killed_at
        story.say(f"clients are served again {recovery_s:.2f} s after the crash")
        await asyncio.sleep(AFTER_CRASH_S)

        # Phase 3: restart and catch up.
        await asyncio.to_thread(cluster.start, leader)
        story.say(f"[bold]restarted[/bold] {node_name(leader)} from its own disk")
        caught_up_s = await _catch_up(probe, cluster, leader)
        story.say(f"{node_name(leader)} caught up with the leader in {caught_up_s:.2f} s")
        await asyncio.sleep(1.0)
        await workload.stop()

        # Phase 4: verdict.
        reader = client_for(cluster)
        lost = await workload.lost_writes(reader)
        await reader.close()
        from quorate.check import check_history

        checked = await asyncio.to_thread(
            check_history, workload.history, CHECK_TIMEOUT_S, time.monotonic
        )
        if history_path is not None:
            write_history(history_path, workload.history)
            story.say(f"history written to {history_path}")
        final = await statuses(probe, cluster)
        observed_leaders = {s.leader for s in final.values() if s.leader is not None}
        summary = {
            "nodes": DEMO_NODES,
            "clients": DEMO_WORKERS,
            "tls": not insecure,
            "operations_ok": workload.stats.ok,
            "operations_unknown": workload.stats.unknown,
            "acked_writes": len(workload.acked),
            "acked_writes_lost": len(lost),
            "history_operations": checked.operations,
            "linearizable": checked.linearizable,
            "verdict": checked.verdict,
            "killed": node_name(leader),
            "new_leader": node_name(new_leader),
            "leader_changes": int(new_leader != leader),
            "terms_elapsed": new_term - term,
            "final_leaders_reported": sorted(node_name(NodeId(n)) for n in observed_leaders),
            "election_seconds": round(elected_s, 3),
            "recovery_seconds": round(recovery_s, 3),
            "catch_up_seconds": round(caught_up_s, 3),
            "history_file": None if history_path is None else str(history_path),
        }
        verdict_colour = "green" if checked.linearizable else "red"
        story.say(
            f"read back {len(workload.acked)} acknowledged writes: "
            f"[{'green' if not lost else 'red'}]{len(lost)} lost[/]"
        )
        story.say(
            f"history of {checked.operations} operations: [{verdict_colour}]{checked.verdict}[/]"
        )
        if dashboard is not None and dashboard.hold_s > 0:
            story.say(f"the dashboard stays up {dashboard.hold_s:g} s more ({dashboard.url})")
            await asyncio.sleep(dashboard.hold_s)
        return summary
    finally:
        await workload.stop()
        await probe.close()
        await asyncio.to_thread(cluster.kill_all)


async def _catch_up(probe: AsyncClient, cluster: LocalCluster, node: NodeId) -> float:
    """Seconds until ``node`` has applied what the leader had committed when it restarted."""
    started = time.monotonic()
    leader, _ = await wait_leader(probe, cluster)
    target = (await probe.status(cluster.endpoints[leader - 1])).commit_index
    while time.monotonic() - started < CATCH_UP_LIMIT_S:
        if not cluster.running(node):
            raise ChildProcessError(f"{node_name(node)} exited after its restart (its log: {cluster.log_path(node)})")
        try:
            status = await probe.status(cluster.endpoints[node - 1])
            if status.applied_index >= target:
                return time.monotonic() - started
        except (OSError, EOFError, TimeoutError):
            pass
        await asyncio.sleep(STATUS_POLL_S)
    raise TimeoutError(f"{node_name(node)} did not catch up within {CATCH_UP_LIMIT_S} s")


DEMO_PORTS = range(20000, 32000)
"""Where the demo looks for free ports: below Linux's default ephemeral range
(32768-60999), whose ports the kernel hands to outgoing connections, so a
port found free is not taken by some connection before the node binds it."""


def _free_base_port() -> int:
    """A base port with ``DEMO_NODES`` consecutive free loopback ports, below
    the ephemeral range so that the restarted node finds its port free
    (``quorate.runtime.aio.ports``)."""
    from quorate.runtime.aio.ports import free_port_block

    return free_port_block(DEMO_NODES)


@app.command("demo")
def demo_command(
    scenario: Annotated[
        str | None,
        typer.Argument(help="hrb: a real HRB deployment evicts a lying shard leader (see 'quorate demo hrb --help')."),
    ] = None,
    fault: Annotated[
        str, typer.Option("--fault", help="hrb: equivocate, kill-shard-leader, kill-core-member or none.")
    ] = "equivocate",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary object.")] = False,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain TCP instead of TLS.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the directory (logs, data).")] = False,
    sim: Annotated[
        bool, typer.Option("--sim", help="Run the simulated cluster instead of real processes.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the simulated run (with --sim).")] = 1,
    history: Annotated[
        Path | None,
        typer.Option("--history", help="Write the client history (JSON, for 'quorate check') here."),
    ] = None,
    dashboard: Annotated[bool, typer.Option("--dashboard", help="Serve the live dashboard during the demo.")] = False,
    dashboard_port: Annotated[int, typer.Option("--dashboard-port", help="Its port.")] = DEFAULT_DASHBOARD_PORT,
    dashboard_hold_s: Annotated[
        float, typer.Option("--dashboard-hold", help="Seconds to keep it up after the verdict.")
    ] = 0.0,
) -> None:
    """A real 3-node cluster loses its leader and loses nothing (exit 1 if it does).

    Concurrent clients write while the leader is killed and restarted; every
    acknowledged write is then read back and the history checked for
    linearizability."""
    if not 0 < dashboard_port < 65536:
        raise fail(f"--dashboard-port must be 1..65535, got {dashboard_port}")
    if not 0 <= dashboard_hold_s <= 3600:
        raise fail(f"--dashboard-hold must be in 0..3600 seconds, got {dashboard_hold_s}")
    if history is not None and not history.parent.is_dir():
        raise fail(f"cannot write the history to {history}: no directory {history.parent}")
    if scenario is not None:
        from quorate.cli.demo_hrb import FAULTS, run_hrb_demo

        if scenario != "hrb":
            raise fail(f"unknown demo {scenario!r}; the demos are: (none: Raft), hrb")
        if fault not in FAULTS:
            raise fail(f"--fault must be one of {', '.join(FAULTS)}, got {fault!r}")
        if sim or dashboard:
            raise fail("--sim and --dashboard are for the Raft demo; 'quorate demo hrb' runs real processes")
        raise typer.Exit(run_hrb_demo(as_json, insecure, keep, history, fault, Story(quiet=as_json)))
    if sim:
        from quorate.cli.demo_sim import DEMO_DURATION_S, run_sim_demo

        raise typer.Exit(run_sim_demo(seed, DEMO_DURATION_S, as_json, history))
    story = Story(quiet=as_json)
    directory = Path(tempfile.mkdtemp(prefix="quorate-demo-"))
    summary: dict[str, Any] = {}
    cluster: LocalCluster | None = None
    live = DemoDashboard(dashboard_port, dashboard_hold_s) if dashboard else None
    try:
        cluster = LocalCluster(
            directory,
            nodes=DEMO_NODES,
            base_port=_free_base_port(),
            insecure=insecure,
            options=RAFT_TIMING,
        )
        summary = asyncio.run(run_demo(cluster, story, history, live))
    except (TimeoutError, OSError) as exc:
        story.say(f"[red]demo failed:[/red] {exc}")
        summary = {"error": str(exc), "acked_writes_lost": None, "linearizable": None}
    finally:
        # Also reached on Ctrl-C: no node process may outlive the demo.
        if live is not None:
            live.stop()
        if cluster is not None:
            cluster.kill_all()
        if keep:
            summary["kept_directory"] = str(directory)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    if keep:
        # Also with --json (the story is silent then): say where everything is.
        typer.echo(
            f"kept {directory}: node logs n*.log, data n*/, configs n*.toml"
            + ("" if insecure else ", certificates certs/"),
            err=True,
        )
    if as_json:
        typer.echo(json.dumps(summary))
    ok = summary.get("acked_writes_lost") == 0 and summary.get("linearizable") is True
    raise typer.Exit(0 if ok else 1)
