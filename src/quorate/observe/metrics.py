"""Prometheus metrics of a real node, at ``/metrics`` (``quorate node --metrics-port``).

Theory of operation: nothing is copied on the hot path. The node keeps its
counters as it always has (``AioNode.counters``, the transport's, the
protocol binding's status) plus two cheap additions made for this module:
messages in and out counted by type, and the duration of every storage
write (the fsync). A custom collector reads them when Prometheus scrapes,
on the node's own event loop (the HTTP endpoint is served there), so every
scrape sees one consistent moment of the node. Names follow Prometheus
conventions: ``quorate_`` prefix, base units (seconds), ``_total`` for
counters.

Exposed: term (or view), leader, whether this node leads, commit, applied
and last indexes, apply lag, leader changes, an fsync latency histogram,
messages by type in and out, rejected inputs by reason, detections and
exclusions (BFT), rate-limited drops, hosted groups, and every other
counter of the node and its transport under ``quorate_node_counter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("quorate.observe.metrics")

FSYNC_BUCKETS_S = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024)
MAX_REQUEST_BYTES = 8192
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeMetrics:
    """A node's Prometheus registry: the fsync histogram the node feeds and a
    collector that reads everything else at scrape time."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        self.fsync_seconds = Histogram(
            "quorate_fsync_seconds",
            "Duration of one durable storage write (the batch of a turn, with its fsync).",
            buckets=FSYNC_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_NodeCollector(node))

    def observe_persist(self, seconds: float) -> None:
        self.fsync_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _NodeCollector(Collector):
    def __init__(self, node: Any) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        labels = ["node"]
        name = f"n{int(node.id)}"
        status = node.status()
        counters = node.metrics

        def gauge(metric: str, documentation: str, value: float | None) -> Metric:
            family = GaugeMetricFamily(metric, documentation, labels=labels)
            if value is not None:
                family.add_metric([name], value)
            return family

        yield gauge("quorate_term", "Current term (view, for BFT protocols).", status.term)
        yield gauge("quorate_is_leader", "1 if this node leads group 0 (BFT: is its primary).", 1.0 if status.leader == node.id else 0.0)
        yield gauge("quorate_leader", "The node id this node believes leads (0: none known).", status.leader or 0)
        yield gauge("quorate_commit_index", "Highest log index known committed.", status.commit_index)
        yield gauge("quorate_applied_index", "Highest log index applied to the state machine.", status.applied_index)
        yield gauge("quorate_last_index", "Last log index.", status.last_index)
        yield gauge(
            "quorate_apply_lag_entries",
            "Committed entries not yet applied.",
            max(0, status.commit_index - status.applied_index),
        )
        yield gauge("quorate_groups", "Protocol groups this node hosts.", len(node.host) if node.host is not None else 0)
        leader_changes = CounterMetricFamily("quorate_leader_changes", "Leader changes this node saw.", labels=labels)
        leader_changes.add_metric([name], counters.get("leader_changes", 0))
        yield leader_changes

        messages = CounterMetricFamily(
            "quorate_messages", "Peer messages by direction and type.", labels=["node", "direction", "type"]
        )
        for direction, table in (("in", node.messages_in), ("out", node.messages_out)):
            for kind, count in sorted(table.items(), key=lambda item: item[0].__name__):
                messages.add_metric([name, direction, kind.__name__], count)
        yield messages

        rejected = CounterMetricFamily("quorate_rejected_inputs", "Inputs dropped, by reason.", labels=["node", "reason"])
        for key, count in sorted(counters.items()):
            if key.startswith("rejected."):
                rejected.add_metric([name, key.removeprefix("rejected.")], count)
        yield rejected

        drops = CounterMetricFamily("quorate_rate_limited_drops", "Peer messages dropped by the rate limit.", labels=labels)
        drops.add_metric([name], counters.get("transport.rate_limited_drops", 0))
        yield drops
        detections = CounterMetricFamily(
            "quorate_detections", "Equivocations this replica convicted (BFT).", labels=labels
        )
        detections.add_metric([name], counters.get("bft.detections", 0))
        yield detections
        excluded = GaugeMetricFamily("quorate_excluded_replicas", "Replicas this replica excluded (BFT).", labels=labels)
        excluded.add_metric([name], counters.get("bft.excluded", 0))
        yield excluded

        other = CounterMetricFamily("quorate_node_counter", "Every other counter of the node.", labels=["node", "counter"])
        for key, count in sorted(counters.items()):
            if not key.startswith(("rejected.", "bft.")):
                other.add_metric([name, key], count)
        yield other


async def serve_metrics(metrics: NodeMetrics, host: str, port: int) -> asyncio.Server:
    """An HTTP endpoint on this loop: ``GET /metrics`` answers the exposition
    text, anything else 404 (a scraper needs nothing more)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/metrics":
                body = metrics.exposition()
                status = "200 OK"
                content_type = CONTENT_TYPE
            else:
                body, status, content_type = b"not found: try /metrics\n", "404 Not Found", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_BYTES)


__all__ = ["NodeMetrics", "serve_metrics"]
