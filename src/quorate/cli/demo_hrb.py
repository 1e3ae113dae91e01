"""``quorate demo hrb``: a real HRB deployment convicts and evicts a lying shard leader and loses nothing.

Theory of operation: twelve node processes (``LocalCluster``, protocol
``hrb``: three shards of four in ``byzantine`` quorum mode, a core of four
running HotStuff with a threshold-BLS certificate per decision) serve a bank
across shards. Concurrent agents (``quorate.client.hrb.AsyncHrbClient``)
run, while the demo goes through its phases:

1. *steady* — transfers between random accounts (a third of them within a
   shard, the rest across shards through the core), each with a minimum
   balance of 0 (an overdraft aborts in every shard) and a **receipt** key
   written in the same transaction; and register writes and reads (single
   keys, written from a random home shard, so through the core too) whose
   history is recorded for the linearizability checker;
2. *fault* (``--fault``) — ``equivocate`` (the default): a shard leader
   (one that is also a core member when there is one) is turned Byzantine
   through its fault-injection option (``TurnByzantine``): it sends half its
   followers another history. The demo watches the shard's other members:
   when one holds the proof (*detected*), when they follow another leader
   (*deposed*), when the offender left their Raft configuration by the
   core's certified eviction (*evicted*), and, for a core member, when the
   core moved to its next epoch without it. ``kill-shard-leader`` /
   ``kill-core-member``: a shard leader (outside the core when one is), or
   the core's current leader, is killed with SIGKILL mid-transfer and
   restarted from its disk a few seconds later;
3. *verdict* — the agents stop; every account and every receipt is read
   back through the shards' logs. An acknowledged transfer is **lost** if
   its receipt is missing (or, for an acknowledged abort, present); the
   balances must equal the opening balances plus the transfers whose
   receipts exist (an account that does not is an **atomicity violation**:
   a transfer applied in one shard only), and the total is conserved. The
   register history goes through ``quorate.check``.

Exit code 0 only if nothing acknowledged was lost, no atomicity violation
was found, the history is linearizable and (with ``equivocate``) the
offender was detected and evicted. ``--json`` prints one summary object
last: ``acked_txns``, ``acked_txns_lost``, ``atomicity_violations``,
``linearizable``, ``detections``, and the rest of the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorate.client.hrb import AsyncHrbClient, transfer_ops
from quorate.hrb.messages import TxnOp
from quorate.hrb.txn import shard_of_key
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.cluster import LocalCluster

__all__ = ["DEMO_OPTIONS", "FAULTS", "HrbDemo", "demo_cluster"]

FAULTS = ("equivocate", "kill-shard-leader", "kill-core-member", "none")
DEMO_SHARDS = 3
DEMO_SHARD_SIZE = 4
DEMO_CORE = 4
DEMO_OPTIONS: dict[str, Any] = {
    "shards": DEMO_SHARDS,
    "shard_size": DEMO_SHARD_SIZE,
    "core_size": DEMO_CORE,
    "quorum": "byzantine",
    "fault_injection": True,
    "election_timeout_s": 1.0,
    "heartbeat_interval_s": 0.1,
}
ACCOUNTS = 12
OPENING_BALANCE = 100
MAX_TRANSFER = 40
REGISTERS = 6
WORKERS = 4
REGISTER_SHARE = 0.3
"""Of the agents' operations: register writes and reads (the rest are transfers)."""
STEADY_S = 6.0
AFTER_FAULT_S = 6.0
"""Load after the fault is over (the offender evicted, the killed node restarted)."""
DOWN_S = 4.0
"""How long a killed node stays down."""
WATCH_LIMIT_S = 30.0
"""A give-up bound on detection and eviction, not a target."""
START_LIMIT_S = 60.0
WATCH_POLL_S = 0.25
TXN_DEADLINE_S = 30.0
"""An agent's transaction gives up after this (its outcome is then unknown)."""
CHECK_TIMEOUT_S = 20.0


def demo_cluster(directory: Path, base_port: int, insecure: bool) -> LocalCluster:
    """The demo's twelve nodes (not started)."""
    return LocalCluster(
        directory,
        nodes=DEMO_SHARDS * DEMO_SHARD_SIZE,
        base_port=base_port,
        insecure=insecure,
        protocol="hrb",
        options=dict(DEMO_OPTIONS),
        node_keys=True,
    )


def keyed_for(shard: int, shards: int, prefix: str) -> str:
    """The first key ``prefix/i`` that lives in ``shard``."""
    i = 0
    while shard_of_key(f"{prefix}/{i}", shards) != shard:
        i += 1
    return f"{prefix}/{i}"


@dataclass
class Transfer:
    """One transfer as its agent saw it."""

    source: str
    target: str
    amount: int
    receipt: str
    outcome: str = "unknown"
    """``committed``, ``aborted`` or ``unknown`` (no answer in time)."""
    latency_s: float = 0.0
    cross_shard: bool = False


@dataclass
class Detection:
    offender: int
    shard: int
    behaviour: str
    turned_at_s: float
    detected_after_s: float | None = None
    deposed_after_s: float | None = None
    evicted_after_s: float | None = None
    detected_by: list[int] = field(default_factory=list)
    core_member: bool = False
    """The offender was a core member (its eviction changes the core's epoch)."""
    core_epoch: int = 0
    """The core epoch reached after the eviction (> 0 when the offender was a core member)."""
    core_epoch_after_s: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "offender": node_name(NodeId(self.offender)),
            "shard": self.shard,
            "behaviour": self.behaviour,
            "detected_after_s": _round(self.detected_after_s),
            "deposed_after_s": _round(self.deposed_after_s),
            "evicted_after_s": _round(self.evicted_after_s),
            "detected_by": [node_name(NodeId(n)) for n in self.detected_by],
            "core_member": self.core_member,
            "core_epoch": self.core_epoch,
            "core_epoch_after_s": _round(self.core_epoch_after_s),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class HrbDemo:
    """One run of the demo against ``cluster`` (see the module docstring);
    ``say`` narrates."""

    def __init__(self, cluster: LocalCluster, fault: str, say: Any, seed: int = 1) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
        self.cluster = cluster
        self.fault = fault
        self.say = say
        self.rng = random.Random(seed)
        self.transfers: list[Transfer] = []
        self.history: list[dict[str, Any]] = []
        self.detections: list[Detection] = []
        self.killed: list[dict[str, Any]] = []
        self.register_ops = 0
        self.stop = asyncio.Event()
        self.t0 = time.monotonic()
        self.accounts: list[str] = []
        self.registers: list[str] = []
        self.shards = DEMO_SHARDS
        self.write_counter = 0

    def client(self, **kwargs: Any) -> AsyncHrbClient:
        c = self.cluster
        return AsyncHrbClient(c.endpoints, tls=c.tls_dir, insecure=c.insecure, **kwargs)

    def now(self) -> float:
        return time.monotonic() - self.t0

    # ------------------------------------------------------------ the run
    async def run(self) -> dict[str, Any]:
        probe = self.client(deadline_s=TXN_DEADLINE_S)
        try:
            leaders = await self._started(probe)
            layout = await probe.discover()
            self.shards = len(layout.shards)
            self.say(
                f"{len(self.cluster.ids)} nodes up: shards "
                + "; ".join(
                    f"{k}: {' '.join(node_name(NodeId(m)) for m in ms)} (leader {node_name(NodeId(leaders[k]))})"
                    for k, ms in sorted(layout.shards.items())
                )
                + f"; core {' '.join(node_name(NodeId(m)) for m in layout.core)} ({layout.quorum} shard quorum)"
            )
            self.accounts = [keyed_for(1 + i % self.shards, self.shards, f"acct{i}") for i in range(ACCOUNTS)]
            self.registers = [f"reg{i}" for i in range(REGISTERS)]
            for shard in sorted(layout.shards):
                mine = [a for a in self.accounts if shard_of_key(a, self.shards) == shard]
                outcome = await probe.transact([TxnOp(a, "put", str(OPENING_BALANCE)) for a in mine], home_shard=shard)
                if not outcome.committed:
                    raise RuntimeError(f"opening the accounts of shard {shard} failed: {outcome.reason}")
            self.say(f"{ACCOUNTS} accounts opened with {OPENING_BALANCE} each (total {ACCOUNTS * OPENING_BALANCE})")
            workers = [asyncio.ensure_future(self._worker(w)) for w in range(WORKERS)]
            self.say(f"{WORKERS} agents transfer money (minimum balance 0) and write/read registers")
            await asyncio.sleep(STEADY_S)
            self.say(f"steady: {self._done()} transfers answered so far")
            if self.fault == "equivocate":
                await self._equivocate(probe, layout)
            elif self.fault == "kill-shard-leader":
                await self._kill(probe, layout, core=False)
            elif self.fault == "kill-core-member":
                await self._kill(probe, layout, core=True)
            await asyncio.sleep(AFTER_FAULT_S)
            self.stop.set()
            await asyncio.gather(*workers)
            self.say(f"agents stopped: {self._done()} transfers answered")
            return await self._verdict(probe)
        finally:
            self.stop.set()
            await probe.close()

    async def _started(self, probe: AsyncHrbClient) -> dict[int, int]:
        """Every shard's leader once all have one; a node process that ended
        at start fails the demo at once, with its reason."""
        deadline = time.monotonic() + START_LIMIT_S
        while True:
            for node in self.cluster.ids:
                reason = self.cluster.exit_reason(node)
                if reason is not None:
                    raise RuntimeError(f"{node_name(node)} could not start: {reason}")
            try:
                return await probe.wait_ready(min(2.0, max(0.1, deadline - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise

    def _done(self) -> int:
        return sum(1 for t in self.transfers if t.outcome != "unknown")

    async def _worker(self, worker: int) -> None:
        rng = random.Random(self.rng.random())
        client = self.client(deadline_s=TXN_DEADLINE_S)
        try:
            seq = 0
            while not self.stop.is_set():
                seq += 1
                if rng.random() < REGISTER_SHARE:
                    await self._register_op(client, worker, rng)
                else:
                    await self._transfer(client, worker, seq, rng)
        finally:
            await client.close()

    async def _transfer(self, client: AsyncHrbClient, worker: int, seq: int, rng: random.Random) -> None:
        source, target = rng.sample(self.accounts, 2)
        home = shard_of_key(source, self.shards)
        receipt = keyed_for(home, self.shards, f"receipt/{worker}/{seq}")
        transfer = Transfer(source, target, rng.randint(1, MAX_TRANSFER), receipt)
        transfer.cross_shard = home != shard_of_key(target, self.shards)
        self.transfers.append(transfer)
        ops = (*transfer_ops(source, target, transfer.amount, 0), TxnOp(receipt, "put", "1"))
        started = time.monotonic()
        try:
            outcome = await client.transact(ops, home_shard=home)
        except (TimeoutError, OSError, EOFError):
            return  # unknown: it may or may not apply (the receipt says)
        transfer.latency_s = time.monotonic() - started
        transfer.outcome = "committed" if outcome.committed else "aborted"

    async def _register_op(self, client: AsyncHrbClient, worker: int, rng: random.Random) -> None:
        key = rng.choice(self.registers)
        shard = shard_of_key(key, self.shards)
        if rng.random() < 0.5:
            self.write_counter += 1
            value = self.write_counter
            home = rng.randint(1, self.shards)
            self.history.append(self._event(worker, "invoke", "write", key, value))
            try:
                outcome = await client.transact([TxnOp(key, "put", str(value))], home_shard=home)
            except (TimeoutError, OSError, EOFError):
                self.history.append(self._event(worker, "info", "write", key, value))
                return
            kind = "ok" if outcome.committed else "fail"
            self.history.append(self._event(worker, kind, "write", key, value))
        else:
            self.history.append(self._event(worker, "invoke", "read", key, None))
            try:
                outcome = await client.transact([TxnOp(key, "get")], home_shard=shard)
            except (TimeoutError, OSError, EOFError):
                self.history.append(self._event(worker, "info", "read", key, None))
                return
            if not outcome.committed:
                self.history.append(self._event(worker, "fail", "read", key, None))
                return
            raw = dict(outcome.reads).get(key)
            self.history.append(self._event(worker, "ok", "read", key, None if raw is None else int(raw)))
        self.register_ops += 1

    def _event(self, worker: int, kind: str, f: str, key: str, value: Any) -> dict[str, Any]:
        event: dict[str, Any] = {"process": worker, "type": kind, "f": f, "key": key, "time": round(self.now(), 4)}
        if value is not None or (f == "read" and kind == "ok"):
            event["value"] = value
        return event

    # ------------------------------------------------------------ faults
    async def _shard_leader(self, probe: AsyncHrbClient, core: Iterable[int], *, in_core: bool) -> tuple[int, int] | None:
        """(shard, leader): a leader that is (``in_core``) or is not a core
        member when there is one, else any leader; None if no shard has one."""
        core_members = set(core)
        deadline = time.monotonic() + WATCH_LIMIT_S
        while time.monotonic() < deadline:
            leaders = [(k, v) for k, v in sorted((await probe.leaders()).items()) if v is not None]
            preferred = [(k, v) for k, v in leaders if (v in core_members) == in_core]
            if preferred or leaders:
                return (preferred or leaders)[0]
            await asyncio.sleep(WATCH_POLL_S)
        return None

    async def _equivocate(self, probe: AsyncHrbClient, layout: Any) -> None:
        # A leader that is also a core member, when one is: its eviction
        # changes the core's epoch too.
        found = await self._shard_leader(probe, layout.core, in_core=True)
        if found is None:
            self.say("[red]no shard has a leader to turn: no fault injected[/red]")
            return
        shard, offender = found
        await probe.turn_byzantine(offender, "equivocating-leader")
        detection = Detection(offender, shard, "equivocating-leader", self.now(), core_member=offender in layout.core)
        self.detections.append(detection)
        in_core = offender in layout.core
        self.say(
            f"[bold red]{node_name(NodeId(offender))}, leader of shard {shard}"
            + (" and a core member" if in_core else "")
            + ", turns Byzantine:[/bold red] it sends half its followers another history"
        )
        others = [m for m in layout.shards[shard] if m != offender]
        deadline = time.monotonic() + WATCH_LIMIT_S
        while time.monotonic() < deadline and detection.evicted_after_s is None:
            await asyncio.sleep(WATCH_POLL_S)
            views = []
            for member in others:
                with contextlib.suppress(OSError, TimeoutError, EOFError):
                    views.append((member, await probe.status(member, shard)))
            elapsed = self.now() - detection.turned_at_s
            holders = [m for m, v in views if v.metrics.get(f"hrb.convicted.n{offender}")]
            if holders and detection.detected_after_s is None:
                detection.detected_after_s = elapsed
                detection.detected_by = holders
                self.say(
                    f"detected after {elapsed:.2f} s: {', '.join(node_name(NodeId(m)) for m in holders)} "
                    f"hold two signed digests of {node_name(NodeId(offender))} for one log position (equivocation evidence)"
                )
            if (
                views
                and detection.deposed_after_s is None
                and all(v.leader is not None and v.leader != offender for _, v in views)
            ):
                detection.deposed_after_s = elapsed
                self.say(
                    f"deposed after {elapsed:.2f} s: shard {shard} follows "
                    f"{node_name(NodeId(views[0][1].leader or 0))}; honest members refuse votes to the offender"
                )
            if views and all(offender not in v.voters for _, v in views):
                detection.evicted_after_s = elapsed
                self.say(
                    f"evicted after {elapsed:.2f} s: the core verified the evidence, ordered Evict with a threshold "
                    f"signature, and shard {shard} removed {node_name(NodeId(offender))} from its Raft configuration"
                )
        if detection.evicted_after_s is None:
            self.say(f"[red]{node_name(NodeId(offender))} was not evicted within {WATCH_LIMIT_S:g} s[/red]")
            return
        if in_core:
            await self._await_epoch(probe, detection, others[0])

    async def _await_epoch(self, probe: AsyncHrbClient, detection: Detection, witness: int) -> None:
        """The evicted offender was a core member: the core must change epoch
        (a key generation among the next members, then the handover)."""
        deadline = time.monotonic() + WATCH_LIMIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, TimeoutError, EOFError):
                seen = await probe.layout_of(witness)
                if seen.epoch > 0:
                    elapsed = self.now() - detection.turned_at_s
                    detection.core_epoch = seen.epoch
                    detection.core_epoch_after_s = elapsed
                    self.say(
                        f"core epoch {seen.epoch} after {elapsed:.2f} s: members "
                        f"{' '.join(node_name(NodeId(m)) for m in seen.epoch_members)}, with a threshold key from a "
                        "key generation among them (no dealer); the shards route to it"
                    )
                    return
            await asyncio.sleep(WATCH_POLL_S)
        self.say(f"[red]the core did not change epoch within {WATCH_LIMIT_S:g} s[/red]")

    async def _kill(self, probe: AsyncHrbClient, layout: Any, *, core: bool) -> None:
        if core:
            leader = await probe.core_leader()
            victim = leader if leader is not None else layout.core[0]
            what = "the core's current leader" if leader is not None else "a core member"
        else:
            found = await self._shard_leader(probe, layout.core, in_core=False)
            if found is None:
                self.say("[red]no shard has a leader to kill[/red]")
                return
            victim = found[1]
            what = f"the leader of shard {found[0]}"
        self.cluster.kill(NodeId(victim), signal.SIGKILL)
        at = self.now()
        self.say(f"[bold red]kill -9 {node_name(NodeId(victim))}[/bold red], {what}, mid-transfer")
        await asyncio.sleep(DOWN_S)
        self.cluster.start(NodeId(victim))
        restarted = self.now()
        self.say(f"{node_name(NodeId(victim))} restarts from its disk")
        record: dict[str, Any] = {"node": node_name(NodeId(victim)), "role": what, "killed_at_s": round(at, 2)}
        self.killed.append(record)
        shard = next(k for k, ms in layout.shards.items() if victim in ms)
        deadline = time.monotonic() + WATCH_LIMIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, TimeoutError, EOFError):
                view = await probe.status(victim, shard)
                if view.leader is not None and view.applied_index > 0:
                    record["back_after_s"] = round(self.now() - restarted, 2)
                    self.say(
                        f"{node_name(NodeId(victim))} is back after {self.now() - restarted:.1f} s: follows "
                        f"{node_name(NodeId(view.leader))} in shard {shard}, applied index {view.applied_index}"
                    )
                    return
            await asyncio.sleep(WATCH_POLL_S)
        self.say(f"[red]{node_name(NodeId(victim))} did not come back within {WATCH_LIMIT_S:g} s[/red]")

    # ------------------------------------------------------------ the verdict
    async def _verdict(self, probe: AsyncHrbClient) -> dict[str, Any]:
        receipts = [t.receipt for t in self.transfers]
        values = await probe.read([*self.accounts, *receipts])
        balances = {a: int(values[a] or 0) for a in self.accounts}
        applied = [t for t in self.transfers if values.get(t.receipt) is not None]
        lost = [t for t in self.transfers if t.outcome == "committed" and values.get(t.receipt) is None]
        phantom = [t for t in self.transfers if t.outcome == "aborted" and values.get(t.receipt) is not None]
        expected = dict.fromkeys(self.accounts, OPENING_BALANCE)
        for t in applied:
            expected[t.source] -= t.amount
            expected[t.target] += t.amount
        wrong = [a for a in self.accounts if balances[a] != expected[a]]
        total = sum(balances.values())
        conserved = total == ACCOUNTS * OPENING_BALANCE
        atomicity_violations = len(wrong) + (0 if conserved else 1)
        from quorate.check import check_history

        checked = await asyncio.get_running_loop().run_in_executor(
            None, lambda: check_history(self.history, CHECK_TIMEOUT_S, time.monotonic)
        )
        committed = [t for t in self.transfers if t.outcome == "committed"]
        latencies = sorted(t.latency_s for t in committed)
        cross = [t for t in committed if t.cross_shard]
        self.say(
            f"read back {len(self.accounts)} accounts and {len(receipts)} receipts: "
            f"{len(committed)} acknowledged transfers, {len(lost) + len(phantom)} lost; total {total} "
            f"({'conserved' if conserved else 'NOT conserved'}); {atomicity_violations} atomicity violation(s)"
        )
        self.say(
            f"register history ({len(self.history) // 2} operations on {REGISTERS} keys): {checked.verdict}"
        )
        return {
            "fault": self.fault,
            "nodes": len(self.cluster.ids),
            "shards": self.shards,
            "acked_txns": len(committed),
            "acked_cross_shard_txns": len(cross),
            "acked_aborts": sum(1 for t in self.transfers if t.outcome == "aborted"),
            "unknown_txns": sum(1 for t in self.transfers if t.outcome == "unknown"),
            "unknown_applied": sum(1 for t in applied if t.outcome == "unknown"),
            "acked_txns_lost": len(lost) + len(phantom),
            "atomicity_violations": atomicity_violations,
            "total_balance": total,
            "expected_total_balance": ACCOUNTS * OPENING_BALANCE,
            "linearizable": checked.linearizable,
            "register_ops": len(self.history) // 2,
            "detections": [d.summary() for d in self.detections],
            "killed": self.killed,
            "latency_ms_p50": _percentile_ms(latencies, 0.5),
            "latency_ms_p99": _percentile_ms(latencies, 0.99),
        }


def _percentile_ms(sorted_s: list[float], q: float) -> float | None:
    if not sorted_s:
        return None
    return round(1000 * sorted_s[min(len(sorted_s) - 1, int(q * len(sorted_s)))], 1)


def demo_ok(summary: dict[str, Any]) -> bool:
    """The demo's exit rule (see the module docstring)."""
    ok = (
        summary.get("acked_txns_lost") == 0
        and summary.get("atomicity_violations") == 0
        and summary.get("linearizable") is True
        and (summary.get("acked_txns") or 0) > 0
    )
    if summary.get("fault") == "equivocate":
        detections = summary.get("detections") or []
        ok = ok and bool(detections) and all(d.get("evicted_after_s") is not None for d in detections)
    return ok



def run_hrb_demo(as_json: bool, insecure: bool, keep: bool, history: Path | None, fault: str, story: Any) -> int:
    """``quorate demo hrb``: run it, narrate on ``story`` (``say``), print the
    JSON with ``as_json``, return the exit code."""
    import json
    import shutil
    import tempfile

    import typer

    from quorate.cli.certs import ensure_certificates
    from quorate.runtime.aio.ports import free_port_block

    directory = Path(tempfile.mkdtemp(prefix="quorate-demo-hrb-"))
    summary: dict[str, Any] = {}
    cluster = demo_cluster(directory, free_port_block(DEMO_SHARDS * DEMO_SHARD_SIZE), insecure)
    demo: HrbDemo | None = None
    started = time.monotonic()
    try:
        cluster.write_configs()
        if cluster.tls_dir is not None:
            ensure_certificates(cluster.tls_dir, [*(node_name(n) for n in cluster.ids), "client"])
        story.say(
            f"starting {len(cluster.ids)} node processes in {directory}: HRB, {DEMO_SHARDS} shards of "
            f"{DEMO_SHARD_SIZE} (watched Raft), a core of {DEMO_CORE} (HotStuff + threshold BLS)"
            + (", plain TCP" if insecure else ", TLS 1.3")
        )
        cluster.start_all()
        demo = HrbDemo(cluster, fault, story.say)
        summary = asyncio.run(demo.run())
    except (TimeoutError, OSError, RuntimeError) as exc:
        story.say(f"[red]demo failed:[/red] {exc}")
        summary = {"error": str(exc), "fault": fault, "acked_txns_lost": None, "linearizable": None}
    finally:
        cluster.kill_all()
        if history is not None and demo is not None:
            history.write_text(json.dumps(demo.history) + "\n", encoding="utf-8")
        if keep:
            summary["kept_directory"] = str(directory)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    ok = demo_ok(summary)
    story.say("[green]verdict: nothing lost, atomic, linearizable[/green]" if ok else "[red]verdict: FAILED[/red]")
    if keep:
        typer.echo(f"kept {directory}: node logs n*.log, data n*/, configs n*.toml", err=True)
    if as_json:
        typer.echo(json.dumps(summary))
    return 0 if ok else 1
