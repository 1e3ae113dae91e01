"""The dashboard's web app: a sampler of the cluster and three routes.

Theory of operation. One sampler task per app asks every node for its
status each ``interval_s`` and times one linearizable read, feeding
``ClusterView`` (and, when the nodes say they run multi-Raft, every node's
hosted ranges, so the view shows each range's leader); ``/`` serves the page (``page.html``: plain HTML, CSS and
JavaScript, no build step), ``/state`` the current view as JSON, and
``/events`` a server-sent event stream with the view after every round, so
the page redraws as the cluster changes. The dashboard only reads: it never
writes to the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from quorate.client.aio import AsyncClient
from quorate.dashboard.state import ClusterView, GroupReport, NodeReport
from quorate.multiraft.messages import MULTIRAFT, leading_views
from quorate.state.kv import Get

HRB = "hrb"
"""The protocol name HRB nodes report (their groups are shards and the core, not group 0)."""

DEFAULT_INTERVAL_S = 0.5
STATUS_TIMEOUT_S = 0.5
READ_DEADLINE_S = 1.0
PROBE_KEY = "quorate-dashboard-probe"
"""The key the latency probe reads (it need not exist: the read still takes a quorum round)."""


class Sampler:
    """Rounds of statuses and a timed read, into a ``ClusterView``."""

    def __init__(self, client_options: dict[str, Any], interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.client_options = client_options
        self.interval_s = interval_s
        self.view = ClusterView([str(e) for e in client_options.get("endpoints") or []])
        self.changed = asyncio.Condition()
        self._status: AsyncClient | None = None
        self._reader: AsyncClient | None = None
        self._hrb: Any = None
        """An ``AsyncHrbClient`` once the nodes say they run HRB."""

    async def round(self) -> None:
        if self._status is None:
            self._status = AsyncClient(**{**self.client_options, "timeout_s": STATUS_TIMEOUT_S})
            self.view.endpoints = [f"{h}:{p}" for h, p in self._status.endpoints]
        if self._reader is None:
            self._reader = AsyncClient(
                **{**self.client_options, "timeout_s": STATUS_TIMEOUT_S, "deadline_s": READ_DEADLINE_S}
            )
        statuses = await self._status.cluster_status()
        reports = [NodeReport.from_status(i + 1, s) for i, s in enumerate(statuses)]
        groups: list[GroupReport] | None = None
        hosted: set[int] | None = None
        if any(s is not None and s.protocol == HRB for s in statuses):
            reports, groups, hosted = await self._hrb_round()
        latency_s: float | None = None
        if any(r.up for r in reports):
            started = time.perf_counter()
            try:
                await self._reader.execute(Get(PROBE_KEY))
                latency_s = time.perf_counter() - started
            except Exception:  # no quorum this round: the chart shows a gap
                latency_s = None
        if any(s is not None and s.protocol == MULTIRAFT for s in statuses):
            listed = await self._status.cluster_ranges()
            groups = [GroupReport.from_view(v) for v in leading_views(listed).values()]
            hosted = {v.range_id for reply in listed if reply is not None for v in reply.ranges}
        self.view.observe(time.monotonic(), reports, latency_s, groups, hosted)
        async with self.changed:
            self.changed.notify_all()

    async def _hrb_round(self) -> tuple[list[NodeReport], list[GroupReport], set[int]]:
        """An HRB deployment: each node as its shard's member sees itself,
        each shard's and the core's leader as their answering members agree."""
        from quorate.client.contact import ClientError
        from quorate.client.hrb import AsyncHrbClient
        from quorate.hrb.messages import CORE_GROUP_BASE

        if self._hrb is None:
            options = {k: v for k, v in self.client_options.items() if k in ("endpoints", "cluster", "tls", "insecure")}
            self._hrb = AsyncHrbClient(**options, timeout_s=STATUS_TIMEOUT_S)
        client = self._hrb
        layout = await client.discover()
        nodes: dict[int, NodeReport] = {}
        groups: list[GroupReport] = []
        members_of = {**layout.shards, CORE_GROUP_BASE + layout.epoch: layout.epoch_members or layout.core}
        for group, members in sorted(members_of.items()):
            views: dict[int, Any] = {}
            for node in members:
                with contextlib.suppress(OSError, TimeoutError, EOFError, ClientError):
                    views[node] = await client.status(node, group)
            if group < CORE_GROUP_BASE:
                for node in members:
                    nodes[node] = NodeReport.from_status(node, views.get(node))
            named = {v.leader for v in views.values()}
            leader = named.pop() if len(named) == 1 else None
            if not views or leader is None:
                continue
            groups.append(GroupReport(
                group=group if group < CORE_GROUP_BASE else group - CORE_GROUP_BASE,
                leader=leader,
                term=max(v.term for v in views.values()),
                commit_index=max(v.commit_index for v in views.values()),
                replicas=min((tuple(v.voters) for v in views.values()), key=len, default=tuple(members)),
                kind="shard" if group < CORE_GROUP_BASE else "core",
            ))
        return [nodes[n] for n in sorted(nodes)], groups, set(layout.shards)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await self.round()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def close(self) -> None:
        for client in (self._status, self._reader, self._hrb):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()


def page() -> str:
    return resources.files("quorate.dashboard").joinpath("page.html").read_text(encoding="utf-8")


def build_app(sampler: Sampler) -> Starlette:
    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page())

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(sampler.view.snapshot())

    async def events(request: Request) -> EventSourceResponse:
        async def stream() -> AsyncIterator[dict[str, str]]:
            yield {"event": "state", "data": json.dumps(sampler.view.snapshot())}
            while True:
                async with sampler.changed:
                    await sampler.changed.wait()
                yield {"event": "state", "data": json.dumps(sampler.view.snapshot())}

        return EventSourceResponse(stream())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(sampler.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sampler.close()

    return Starlette(
        routes=[Route("/", index), Route("/state", state), Route("/events", events)], lifespan=lifespan
    )


__all__ = ["Sampler", "build_app"]
