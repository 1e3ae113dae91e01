"""Concurrent clients that record what they saw, for checking afterwards.

Theory of operation: ``RecordedWorkload`` runs ``workers`` asyncio tasks, each
with its own ``AsyncClient`` (its own session: one request outstanding per
session, see ``quorate.client.aio``). Each worker loops over a mix of

- register operations on a few shared keys — ``write`` (put of a value no one
  else writes), ``read`` (get) and ``cas`` — recorded as Jepsen events in
  ``quorate.check``'s history format (process = worker), so the run can be
  checked for linearizability key by key; and
- appends of fresh keys ``<prefix><worker>/<n>``, remembered when
  acknowledged, so the run can check afterwards that *every acknowledged
  write is still there* (none lost to a crash or an election).

Outcomes follow the format's rules: ``ok`` when the cluster answered,
``fail`` only when the operation certainly did not happen (a cas whose
expected value did not match), ``info`` when it may or may not have happened
(a timeout, a lost connection, a refusal after retries). An ``info`` write is
never counted as acknowledged.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quorate.client.aio import AsyncClient
from quorate.client.contact import ClientError

REGISTER_KEYS = 4
WRITE_SHARE = 0.35
READ_SHARE = 0.35
CAS_SHARE = 0.1
"""The rest of the mix (0.2) appends fresh keys."""
ACKED_PREFIX = "acked/"


@dataclass(slots=True)
class WorkloadStats:
    ok: int = 0
    failed: int = 0
    unknown: int = 0
    latencies_s: list[float] = field(default_factory=list)


class RecordedWorkload:
    """``workers`` concurrent clients on ``make_client()`` clients."""

    def __init__(
        self,
        make_client: Callable[[], AsyncClient],
        *,
        workers: int = 8,
        seed: int = 0,
        register_keys: int = REGISTER_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.make_client = make_client
        self.workers = workers
        self.rng = random.Random(seed)
        self.keys = [f"r{i}" for i in range(register_keys)]
        self.clock = clock
        self.history: list[dict[str, Any]] = []
        self.acked: set[str] = set()
        """Fresh keys whose put was acknowledged."""
        self.stats = WorkloadStats()
        self.ok_spans: list[tuple[float, float]] = []
        """(invoked, acknowledged) clock times of every successful operation."""
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: list[AsyncClient] = []

    def start(self) -> None:
        for worker in range(self.workers):
            client = self.make_client()
            self._clients.append(client)
            rng = random.Random(self.rng.random())
            self._tasks.append(asyncio.create_task(self._run(worker, client, rng)))

    async def stop(self) -> None:
        """Let every worker finish its current operation, then close the clients."""
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients:
            await client.close()

    def _event(self, worker: int, kind: str, f: str, key: str, value: Any) -> None:
        self.history.append(
            {
                "process": worker,
                "type": kind,
                "f": f,
                "key": key,
                "value": value,
                "time": self.clock(),
            }
        )

    async def _run(self, worker: int, client: AsyncClient, rng: random.Random) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            roll = rng.random()
            started = self.clock()
            if roll < WRITE_SHARE + READ_SHARE + CAS_SHARE:
                await self._register_op(worker, client, rng, roll, n)
            else:
                await self._append(worker, client, n)
            self.stats.latencies_s.append(self.clock() - started)

    def first_ok_invoked_after(self, t: float) -> float | None:
        """When the first operation invoked after ``t`` was acknowledged."""
        done = [end for start, end in self.ok_spans if start > t]
        return min(done) if done else None

    async def _register_op(
        self, worker: int, client: AsyncClient, rng: random.Random, roll: float, n: int
    ) -> None:
        started = self.clock()
        key = rng.choice(self.keys)
        value: Any
        if roll < WRITE_SHARE:
            f, value = "write", f"{worker}-{n}"
        elif roll < WRITE_SHARE + READ_SHARE:
            f, value = "read", None
        else:
            expected = await self._peek(client, key)
            f, value = "cas", [expected, f"{worker}-{n}"]
        self._event(worker, "invoke", f, key, value)
        try:
            if f == "write":
                await client.put(key, value)
                outcome, result = "ok", value
            elif f == "read":
                outcome, result = "ok", await client.get(key)
            else:
                swapped, _ = await client.cas(key, value[0], value[1])
                outcome, result = ("ok" if swapped else "fail"), value
        except (TimeoutError, ClientError, OSError, EOFError):
            self.stats.unknown += 1
            self._event(worker, "info", f, key, value)
            return
        self._event(worker, outcome, f, key, result)
        if outcome == "ok":
            self.stats.ok += 1
            self.ok_spans.append((started, self.clock()))
        else:
            self.stats.failed += 1

    async def _peek(self, client: AsyncClient, key: str) -> str | None:
        """The value a cas will expect: a recent read (itself not recorded,
        so a failed peek just makes the cas likely to fail)."""
        try:
            return await client.get(key)
        except (TimeoutError, ClientError, OSError, EOFError):
            return None

    async def _append(self, worker: int, client: AsyncClient, n: int) -> None:
        started = self.clock()
        key = f"{ACKED_PREFIX}{worker}/{n}"
        try:
            await client.put(key, "1")
        except (TimeoutError, ClientError, OSError, EOFError):
            self.stats.unknown += 1
            return
        self.stats.ok += 1
        self.ok_spans.append((started, self.clock()))
        self.acked.add(key)

    async def lost_writes(self, client: AsyncClient) -> list[str]:
        """Acknowledged fresh keys that a linearizable list no longer shows."""
        present = {k for k, _ in await client.list(ACKED_PREFIX, limit=len(self.acked) + 1_000_000)}
        return sorted(self.acked - present)
