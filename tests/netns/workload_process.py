"""Concurrent recorded clients against a TLS cluster, then a read-back.

    python workload_process.py --protocol raft --endpoints n1:7001,... --tls DIR \\
        --duration 20 --out result.json

Runs ``RecordedWorkload`` (register reads/writes/cas recorded as a history,
plus appends of fresh keys remembered when acknowledged) for ``--duration``
seconds, then reads back every acknowledged key (retrying while the cluster
recovers) and asks every endpoint for its status. Writes one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from quorate.client.aio import AsyncClient
from quorate.client.bft import BftClient
from quorate.client.contact import ClientError, new_client_id
from quorate.client.workload import RecordedWorkload

READBACK_WITHIN_S = 60.0
DEADLINE_S = 8.0


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
    result = asyncio.run(main(arguments))
    Path(arguments.out).write_text(json.dumps(result))
