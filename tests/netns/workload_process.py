"""Concurrent recorded clients against a TLS cluster, then a read-back.

    python workload_process.py --protocol raft --endpoints n1:7001,... --tls DIR \\
        --duration 20 --out result.json

Runs ``RecordedWorkload`` (register reads/writes/cas recorded as a history,
plus appends of fresh keys remembered when acknowledged) for ``--duration``
seconds, then reads back every acknowledged key (retrying while the cluster
recovers) and asks every endpoint for its status. Writes one JSON object.

With ``--protocol hrb`` the clients are HRB agents (``AsyncHrbClient``):
once every shard and the core have a leader it writes the layout
(``OUT.layout.json``: shards, core, leaders) for the test to pick its
victims, then each agent writes and reads registers — a write's home shard
drawn at random, so about half of them cross shards through the core —
and puts fresh keys, also from a random home shard; the register history
is checked for linearizability and every acknowledged fresh key is read
back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

from quorate.client.aio import AsyncClient
from quorate.client.bft import BftClient
from quorate.client.contact import ClientError, new_client_id
from quorate.client.workload import RecordedWorkload
from quorate.hrb.messages import TxnOp
from quorate.hrb.txn import shard_of_key

READBACK_WITHIN_S = 60.0
DEADLINE_S = 8.0
HRB_READY_S = 90.0
HRB_DEADLINE_S = 20.0
HRB_REGISTERS = 6


def make_client(protocol: str, endpoints: list[str], tls: str) -> Any:
    if protocol in ("pbft", "hotstuff"):
        return BftClient(endpoints, tls=tls, tls_name="client", client_id=new_client_id(), deadline_s=DEADLINE_S)
    return AsyncClient(endpoints, tls=tls, tls_name="client", deadline_s=DEADLINE_S)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    endpoints = args.endpoints.split(",")
    workload = RecordedWorkload(lambda: make_client(args.protocol, endpoints, args.tls), workers=args.workers, seed=args.seed)
    started = time.monotonic()
    workload.start()
    await asyncio.sleep(args.duration)
    await workload.stop()
    lost: list[str] | None = None
    reader = make_client(args.protocol, endpoints, args.tls)
    deadline = time.monotonic() + READBACK_WITHIN_S
    error = None
    while time.monotonic() < deadline:
        try:
            lost = await workload.lost_writes(reader)
            break
        except (TimeoutError, ClientError, OSError, EOFError) as exc:
            error = repr(exc)
            await asyncio.sleep(0.5)
    statuses = []
    status_client = AsyncClient(endpoints, tls=args.tls, tls_name="client", timeout_s=2.0)
    try:
        for status in await status_client.cluster_status():
            statuses.append(
                None if status is None else
                {"node": status.node, "role": status.role, "term": status.term, "leader": status.leader,
                 "applied_index": status.applied_index, "commit_index": status.commit_index,
                 "metrics": {k: v for k, v in status.metrics.items() if k.startswith(("transport.", "bft."))}}
            )
    finally:
        await status_client.close()
        await reader.close()
    return {
        "history": workload.history,
        "acked": sorted(workload.acked),
        "lost": lost,
        "readback_error": None if lost is not None else error,
        "ok": workload.stats.ok,
        "unknown": workload.stats.unknown,
        "ok_spans": workload.ok_spans,
        "started": started,
        "statuses": statuses,
    }


async def hrb_main(args: argparse.Namespace) -> dict[str, Any]:
    from quorate.client.hrb import AsyncHrbClient

    endpoints = args.endpoints.split(",")
    # The nodes name each other at the fault proxy's ports; this host reaches them directly.
    direct = {int(e.split(":")[0].removeprefix("n")): (e.split(":")[0], int(e.split(":")[1])) for e in endpoints}

    async def agent() -> AsyncHrbClient:
        client = AsyncHrbClient(endpoints, tls=args.tls, deadline_s=HRB_DEADLINE_S)
        deadline = time.monotonic() + HRB_READY_S
        while True:
            try:
                await client.discover()
                break
            except (ClientError, OSError, TimeoutError, EOFError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        client.addresses.update(direct)
        return client

    probe = await agent()
    leaders = await probe.wait_ready(HRB_READY_S)
    layout = await probe.discover()
    probe.addresses.update(direct)
    shards = len(layout.shards)
    Path(args.out + ".layout.json").write_text(
        json.dumps({"shards": {str(k): list(v) for k, v in layout.shards.items()}, "core": list(layout.core),
                    "leaders": {str(k): v for k, v in leaders.items()}})
    )
    history: list[dict[str, Any]] = []
    acked: dict[str, str] = {}
    ok_spans: list[tuple[float, float]] = []
    counts = {"ok": 0, "unknown": 0}
    stop = asyncio.Event()
    registers = [f"reg{i}" for i in range(HRB_REGISTERS)]

    def event(worker: int, kind: str, f: str, key: str, value: Any, at: float) -> None:
        entry: dict[str, Any] = {"process": worker, "type": kind, "f": f, "key": key, "time": round(at, 4)}
        if value is not None or (f == "read" and kind == "ok"):
            entry["value"] = value
        history.append(entry)

    async def worker(w: int) -> None:
        rng = random.Random(args.seed * 1000 + w)
        client = await agent()
        i = 0
        try:
            while not stop.is_set():
                i += 1
                choice = rng.random()
                started = time.monotonic()
                if choice < 0.4:
                    f, key, value = "write", rng.choice(registers), w * 1_000_000 + i
                    ops, home = [TxnOp(key, "put", str(value))], rng.randint(1, shards)
                elif choice < 0.7:
                    f, key, value = "read", rng.choice(registers), None
                    ops, home = [TxnOp(key, "get")], shard_of_key(key, shards)
                else:
                    f, key, value = "fresh", f"fresh/{w}/{i}", i
                    ops, home = [TxnOp(key, "put", str(i))], rng.randint(1, shards)
                if f != "fresh":
                    event(w, "invoke", f, key, value, started)
                try:
                    outcome = await client.transact(ops, home_shard=home)
                except (TimeoutError, ClientError, OSError, EOFError):
                    counts["unknown"] += 1
                    if f != "fresh":
                        event(w, "info", f, key, value, time.monotonic())
                    continue
                if f == "write":
                    event(w, "ok" if outcome.committed else "fail", f, key, value, time.monotonic())
                elif f == "read" and outcome.committed:
                    raw = dict(outcome.reads).get(key)
                    event(w, "ok", f, key, None if raw is None else int(raw), time.monotonic())
                elif f == "read":
                    event(w, "fail", f, key, None, time.monotonic())
                elif outcome.committed:
                    acked[key] = str(value)
                if outcome.committed:
                    counts["ok"] += 1
                    ok_spans.append((started, time.monotonic()))
        finally:
            await client.close()

    started = time.monotonic()
    tasks = [asyncio.create_task(worker(w)) for w in range(args.workers)]
    await asyncio.sleep(args.duration)
    stop.set()
    await asyncio.gather(*tasks)
    lost: list[str] | None = None
    error = None
    deadline = time.monotonic() + READBACK_WITHIN_S
    while time.monotonic() < deadline:
        try:
            values = await probe.read(sorted(acked))
            lost = [k for k, v in acked.items() if values.get(k) != v]
            break
        except (TimeoutError, ClientError, OSError, EOFError) as exc:
            error = repr(exc)
            await asyncio.sleep(0.5)
    await probe.close()
    return {
        "history": history,
        "acked": sorted(acked),
        "lost": lost,
        "readback_error": None if lost is not None else error,
        "ok": counts["ok"],
        "unknown": counts["unknown"],
        "ok_spans": ok_spans,
        "started": started,
        "statuses": [],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--tls", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    arguments = parser.parse_args()
    result = asyncio.run(hrb_main(arguments) if arguments.protocol == "hrb" else main(arguments))
    Path(arguments.out).write_text(json.dumps(result))
