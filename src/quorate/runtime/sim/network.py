"""The simulated network: regions, latency, bandwidth, loss and partitions.

Theory of operation. Every endpoint (a replica or a client) sits in a region.
A message from ``a`` to ``b`` leaving at ``t`` (the end of the CPU work that
produced it) goes through three stages:

1. **Serialization on the sender's link.** Each endpoint has one outgoing link
   of ``bandwidth_bps``; a message of ``size`` bytes occupies it for
   ``size * 8 / bandwidth_bps`` seconds. The link is a FIFO: a message waits for
   the ones queued before it (``link_free_at``), so a leader broadcasting large
   appends to 999 followers really does spend 999 serialization times.
2. **Propagation.** ``latency_s[region(a)][region(b)]`` (one way) plus a jitter
   draw (none, uniform or lognormal). Each directed link is FIFO by default,
   as the TCP connections of the real runtime are: a message never arrives
   before one sent earlier on the same link. With probability ``reorder`` a
   message ignores that order and keeps its own jittered arrival, so it may
   overtake earlier ones (a knob, and a chaos fault).
3. **Faults.** Checked when the message leaves: random loss (``loss``),
   duplication (``duplicate``, the copy gets its own jitter), partitions (each
   replica has a group number; messages between different groups are dropped;
   clients, group -1, reach everyone), and one-way cuts (``a -> b`` dropped while
   ``b -> a`` flows). ``heal`` removes partitions and cuts.

A message's size is the length of its msgpack encoding plus the frame envelope
(``FRAME_OVERHEAD_BYTES``), computed once per message object: a broadcast of
one object to every peer encodes it once.

Everything a node sends after one input goes through ``send_all`` in one call
(``send`` is the one-message case): the sender's link, its latency row and the
fault settings are read once per batch, which matters for all-to-all
protocols, where one input can produce a message to every peer.

All draws come from one ``random.Random`` derived from the master seed, used in
event order, so the network is deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from heapq import heappush
from typing import Any

import msgspec

from quorate.errors import ConfigError
from quorate.runtime.sim.engine import EventLoop

FRAME_OVERHEAD_BYTES = 8
"""Length prefix (4 bytes) plus the ``[version, sender, ...]`` envelope."""

JITTER_KINDS = ("none", "uniform", "lognormal")

NO_GROUP = -1
"""Partition group of endpoints that are never partitioned (clients)."""


def default_size_of() -> Callable[[Any], int]:
    """Encoded size of a message with msgspec's msgpack encoder."""
    encode = msgspec.msgpack.Encoder().encode

    def size_of(message: Any) -> int:
        return len(encode(message))

    return size_of


class Network:
    """Carries messages between endpoints by scheduling delivery events."""

    __slots__ = (
        "_encode",
        "_heap",
        "_last_message",
        "_last_size",
        "_link_last_arrival",
        "_loop",
        "_next_seq",
        "_rng",
        "_size_of",
        "bandwidth_bps",
        "base_loss",
        "base_reorder",
        "cuts",
        "deliver_kind_of",
        "delivered_bytes",
        "dropped",
        "duplicate",
        "group_of",
        "jitter_kind",
        "jitter_s",
        "latency_s",
        "link_free_at",
        "loss",
        "partitioned",
        "region_of",
        "reorder",
        "sent",
    )

    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        *,
        region_of: Sequence[int],
        latency_s: Sequence[Sequence[float]],
        bandwidth_bps: Sequence[float],
        deliver_kind_of: Sequence[int],
        jitter_kind: str = "uniform",
        jitter_s: float = 0.0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        size_of: Callable[[Any], int] | None = None,
    ) -> None:
        n = len(region_of)
        if len(bandwidth_bps) != n or len(deliver_kind_of) != n:
            raise ConfigError("region_of, bandwidth_bps and deliver_kind_of need one entry per endpoint")
        regions = len(latency_s)
        if any(len(row) != regions for row in latency_s):
            raise ConfigError("the latency matrix must be square (one row and column per region)")
        if any(r < 0 or r >= regions for r in region_of):
            raise ConfigError("an endpoint is placed in a region outside the latency matrix")
        if any(x < 0 for row in latency_s for x in row):
            raise ConfigError("latencies must be >= 0")
        if any(b <= 0 for b in bandwidth_bps):
            raise ConfigError("bandwidth must be > 0")
        if jitter_kind not in JITTER_KINDS:
            raise ConfigError(f"jitter kind {jitter_kind!r} unknown; use one of {', '.join(JITTER_KINDS)}")
        if jitter_s < 0:
            raise ConfigError("jitter must be >= 0")
        _check_probability("loss", loss)
        _check_probability("duplicate", duplicate)
        _check_probability("reorder", reorder)
        self._loop = loop
        self._heap, self._next_seq = loop.fast_path()
        self._rng = rng
        self._size_of = size_of
        """A custom sizer, or None: msgpack encoding, inlined in ``send``."""
        self._encode = msgspec.msgpack.Encoder().encode
        self._last_message: Any = None
        self._last_size = 0
        self.region_of = list(region_of)
        self.latency_s = [list(row) for row in latency_s]
        self.bandwidth_bps = list(bandwidth_bps)
        self.deliver_kind_of = list(deliver_kind_of)
        self.link_free_at = [0.0] * n
        self.jitter_kind = jitter_kind
        self.jitter_s = jitter_s
        self.loss = loss
        self.base_loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.base_reorder = reorder
        # Latest arrival scheduled per directed link (src * n + dst), for FIFO order.
        self._link_last_arrival: dict[int, float] = {}
        self.group_of = [NO_GROUP] * n
        self.partitioned = False
        self.cuts: set[tuple[int, int]] = set()
        self.sent = 0
        self.dropped = 0
        self.delivered_bytes = 0

    # -- faults -------------------------------------------------------------
    def partition(self, groups: Sequence[Sequence[int]], replicas: Sequence[int]) -> None:
        """Split the ``replicas`` (endpoint ids) into ``groups``; replicas not
        named form one more group together. Clients stay reachable from every
        group."""
        group_of = self.group_of
        for r in replicas:
            group_of[r] = len(groups)
        known = set(replicas)
        for g, members in enumerate(groups):
            for node in members:
                if node not in known:
                    raise ConfigError(
                        f"partition names node {node}, but the replicas are {min(known)}..{max(known)}"
                    )
                group_of[node] = g
        self.partitioned = True

    def cut(self, src: int, dst: int) -> None:
        """Drop every message from ``src`` to ``dst`` (one way) until healed."""
        self.cuts.add((src, dst))

    def heal(self) -> None:
        """Remove partitions and cuts, and restore the configured loss and
        reordering rates."""
        self.group_of = [NO_GROUP] * len(self.group_of)
        self.partitioned = False
        self.cuts.clear()
        self.loss = self.base_loss
        self.reorder = self.base_reorder

    def connected(self, src: int, dst: int) -> bool:
        """True when a partition or cut does not stop ``src -> dst``."""
        if self.partitioned:
            g = self.group_of[src]
            h = self.group_of[dst]
            if g != h and g != NO_GROUP and h != NO_GROUP:
                return False
        return not (self.cuts and (src, dst) in self.cuts)

    # -- the hot path -------------------------------------------------------
    def size_of(self, message: Any) -> int:
        """Bytes ``message`` occupies on the wire (cached for the last object)."""
        if message is self._last_message:
            return self._last_size
        size = self._measure(message)
        self._last_message = message
        self._last_size = size
        return size

    def _measure(self, message: Any) -> int:
        size_of = self._size_of
        if size_of is None:
            return len(self._encode(message)) + FRAME_OVERHEAD_BYTES
        return size_of(message) + FRAME_OVERHEAD_BYTES

    def send(self, src: int, dst: int, message: Any, depart_s: float) -> None:
        """Put ``message`` on ``src``'s link at ``depart_s``; schedule its arrival."""
        self.send_all(src, ((dst, message),), depart_s)

    def send_all(self, src: int, messages: Iterable[tuple[int, Any]], depart_s: float) -> None:
        """Put each ``(dst, message)`` on ``src``'s link at ``depart_s``, in order,
        and schedule their arrivals: what ``send`` does for each, in one call.

        Everything a node sends after one input leaves this way (a broadcast to
        999 peers is one call), so the sender's state (its link, its latency
        row) and the network's settings are read once per batch, not once per
        message. Random draws per message, in this order and only when enabled:
        loss, jitter, reordering, duplication — the same stream, used in the
        same order, as one ``send`` per message."""
        rng = self._rng
        random_draw = rng.random
        heap = self._heap
        next_seq = self._next_seq
        deliver_kind_of = self.deliver_kind_of
        region_of = self.region_of
        latency_row = self.latency_s[region_of[src]]
        bandwidth_bps = self.bandwidth_bps[src]
        link_base = src * len(region_of)
        last_arrival = self._link_last_arrival
        size_of = self._size_of
        encode = self._encode
        filtered = self.partitioned or bool(self.cuts)
        loss = self.loss
        jitter_kind = self.jitter_kind
        uniform = jitter_kind == "uniform"
        jitter_s = self.jitter_s
        reorder = self.reorder
        duplicate = self.duplicate
        last_message = self._last_message
        last_size = self._last_size
        # The sender's link is a FIFO: each message waits for the one before.
        free = self.link_free_at[src]
        sent = 0
        dropped = 0
        for dst, message in messages:
            sent += 1
            if message is last_message:
                size = last_size
            else:
                if size_of is None:
                    size = len(encode(message)) + FRAME_OVERHEAD_BYTES
                else:
                    size = size_of(message) + FRAME_OVERHEAD_BYTES
                last_message = message
                last_size = size
            # The link is busy whether or not the message will arrive.
            start = depart_s if depart_s > free else free
            done = start + size * 8.0 / bandwidth_bps
            free = done
            if filtered and not self.connected(src, dst):
                dropped += 1
                continue
            if loss and random_draw() < loss:
                dropped += 1
                continue
            base = done + latency_row[region_of[dst]]
            # Arrival is after depart_s >= now, so the loop's ordering check is not needed.
            if uniform:
                arrive = base + random_draw() * jitter_s
            elif jitter_kind == "none":
                arrive = base
            else:
                arrive = base + self._jitter()
            if not (reorder and random_draw() < reorder):
                # FIFO link: equal times keep send order through the heap's sequence number.
                link = link_base + dst
                last = last_arrival.get(link, 0.0)
                if arrive < last:
                    arrive = last
                last_arrival[link] = arrive
            kind = deliver_kind_of[dst]
            heappush(heap, (arrive, next_seq(), kind, dst, src, message, size))
            if duplicate and random_draw() < duplicate:
                heappush(heap, (base + self._jitter(), next_seq(), kind, dst, src, message, size))
        self.link_free_at[src] = free
        self._last_message = last_message
        self._last_size = last_size
        self.sent += sent
        self.dropped += dropped

    def _jitter(self) -> float:
        kind = self.jitter_kind
        if kind == "uniform":
            return self._rng.random() * self.jitter_s
        if kind == "lognormal":
            # median jitter_s, a long right tail (sigma 1): rare slow packets.
            return self.jitter_s * self._rng.lognormvariate(0.0, 1.0)
        return 0.0


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {p}")
