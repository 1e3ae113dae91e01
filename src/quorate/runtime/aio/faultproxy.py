"""A fault-injecting TCP proxy between real node processes: per directed link,
pass, drop or delay frames, so tests can cut links, partition the cluster and
cut one direction only.

Theory of operation.

- *Routing.* For every ordered pair of nodes ``(a, b)`` the proxy listens on a
  loopback port of its own; node ``a`` is configured to reach peer ``b`` at
  that port (``write_proxied_configs``). A connection accepted there is
  bridged to ``b``'s real listener. The transport keeps one connection per
  pair, so one bridged connection carries ``a → b`` one way and ``b → a`` the
  other; each direction obeys the rule of its own directed link.
- *Frames, not bytes.* The proxy reads the transport's length-prefixed frames
  (``quorate.codec.frames``) and drops or delays whole frames, as a lossy
  network loses whole datagrams; dropping raw bytes would instead corrupt the
  stream, which the transport treats as a hostile peer. The first frame in
  each direction (the transport's ``Hello``) always passes, so a link cut in
  one direction still carries the other: a true one-way fault. It therefore
  works on plain TCP clusters (``insecure=True``); TLS frames are opaque.
- *Streams, for TLS.* With ``frames=False`` the proxy carries the bytes as
  they come (TLS records it cannot read) and applies only what a network
  does to a TCP stream: a delay, and loss as TCP shows it to the
  application — a chunk hit by loss (probability ``loss``) is held back a
  retransmission timeout (``RETRANSMIT_S``), and everything behind it waits
  too (order is kept). Dropping bytes would break the stream, so ``drop`` is
  refused in this mode; partitions are made below the proxy (a link taken
  down), as ``tests/netns`` does.
- *Rules apply on arrival.* A frame is judged when it reaches the proxy; a
  delayed frame already queued is delivered even if its link is cut later.
  Order within a direction is kept (a delay is a queue, not a reordering).
- *Clients* connect straight to the nodes; only peer traffic goes through
  here, so a test can keep observing every side of a partition.

Invariant: the proxy never invents, duplicates or reorders frames; it only
loses or postpones them, which Raft must tolerate (thesis §3.1: messages may
be lost, delayed, duplicated or reordered).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from quorate.codec import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encode_frame
from quorate.errors import ConfigError, RemoteProtocolError
from quorate.ids import NodeId, node_name

if TYPE_CHECKING:
    from quorate.runtime.aio.cluster import LocalCluster

Address = tuple[str, int]
LOOPBACK = "127.0.0.1"
READ_CHUNK_BYTES = 256 * 1024
RETRANSMIT_S = 0.2
"""What a lost segment costs a TCP stream: Linux's minimum retransmission timeout."""
Link = tuple[NodeId, NodeId]
"""A directed link ``(sender, receiver)``."""


@dataclass(frozen=True, slots=True)
class LinkFault:
    """What happens to frames on one directed link."""

    drop: bool = False
    delay_s: float = 0.0
    loss: float = 0.0
    """Frames: the share dropped. Streams: the share of chunks held back a
    retransmission timeout."""

    def __post_init__(self) -> None:
        if self.delay_s < 0:
            raise ConfigError(f"delay_s must be >= 0, got {self.delay_s}")
        if not 0 <= self.loss <= 1:
            raise ConfigError(f"loss must be a probability in [0, 1], got {self.loss}")


PASS = LinkFault()
DROP = LinkFault(drop=True)


class FaultProxy:
    """Bridges every directed pair of ``nodes`` (id → real listen address)."""

    def __init__(
        self,
        nodes: Mapping[NodeId, Address],
        *,
        host: str = LOOPBACK,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        frames: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if len(nodes) < 2:
            raise ConfigError("a fault proxy needs at least 2 nodes")
        self.nodes = dict(nodes)
        self.host = host
        self.frames = frames
        self.rng = rng or random.Random(0)
        self.max_frame_bytes = max_frame_bytes
        self._faults: dict[Link, LinkFault] = {}
        self._servers: dict[Link, asyncio.Server] = {}
        self._addresses: dict[Link, Address] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.metrics: Counter[str] = Counter()
        """``passed.n1>n2``, ``dropped.n1>n2``, ``delayed.n1>n2`` frame counts."""

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Listen on one ephemeral port per directed pair."""
        for dialer, target in itertools.permutations(sorted(self.nodes), 2):
            server = await asyncio.start_server(
                self._bridge_handler(dialer, target), self.host, 0
            )
            self._servers[(dialer, target)] = server
            bound = server.sockets[0].getsockname()
            self._addresses[(dialer, target)] = (bound[0], int(bound[1]))

    async def close(self) -> None:
        for server in self._servers.values():
            server.close()
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def address_for(self, dialer: NodeId, target: NodeId) -> Address:
        """Where ``dialer`` must dial to reach ``target`` through the proxy."""
        try:
            return self._addresses[(dialer, target)]
        except KeyError:
            raise ConfigError(
                f"no proxied route {node_name(dialer)} -> {node_name(target)} (not started?)"
            ) from None

    def peers_of(self, node: NodeId) -> dict[NodeId, Address]:
        """``node``'s peer table with every peer reached through the proxy."""
        return {p: self.address_for(node, p) for p in self.nodes if p != node}

    # ------------------------------------------------------------ faults
    def set_link(self, sender: NodeId, receiver: NodeId, fault: LinkFault) -> None:
        """Apply ``fault`` to frames from ``sender`` to ``receiver``."""
        if sender not in self.nodes or receiver not in self.nodes or sender == receiver:
            raise ConfigError(f"no link {node_name(sender)} -> {node_name(receiver)}")
        if fault.drop and not self.frames:
            raise ConfigError("a stream proxy (frames=False) cannot drop bytes; take the link down instead")
        if fault == PASS:
            self._faults.pop((sender, receiver), None)
        else:
            self._faults[(sender, receiver)] = fault

    def fault(self, sender: NodeId, receiver: NodeId) -> LinkFault:
        return self._faults.get((sender, receiver), PASS)

    def cut(self, sender: NodeId, receiver: NodeId) -> None:
        """Drop ``sender → receiver`` only (a one-way fault)."""
        self.set_link(sender, receiver, DROP)

    def isolate(self, node: NodeId) -> None:
        """Cut ``node`` from every other node, both ways."""
        self.partition([node], [p for p in self.nodes if p != node])

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Drop every frame between different groups, both ways; links inside a
        group keep their current rule. Nodes in no group form one more group."""
        sides = [set(g) for g in groups]
        rest = set(self.nodes) - set().union(*sides)
        if rest:
            sides.append(rest)
        side_of = {n: i for i, side in enumerate(sides) for n in side}
        for a, b in itertools.permutations(self.nodes, 2):
            if side_of[a] != side_of[b]:
                self.cut(a, b)

    def heal(self) -> None:
        """Every link passes again."""
        self._faults.clear()

    # ------------------------------------------------------------ bridging
    def _bridge_handler(
        self, dialer: NodeId, target: NodeId
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._bridge(dialer, target, reader, writer)

        return handle

    async def _bridge(
        self,
        dialer: NodeId,
        target: NodeId,
        dialer_reader: asyncio.StreamReader,
        dialer_writer: asyncio.StreamWriter,
    ) -> None:
        self._writers.add(dialer_writer)
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.nodes[target])
        except OSError:
            # The target is down: the dialer sees a closed connection, as it
            # would dialing the node itself.
            self.metrics["target_unreachable"] += 1
            dialer_writer.close()
            self._writers.discard(dialer_writer)
            return
        self._writers.add(target_writer)
        self.metrics["connections"] += 1
        forward = self._pump(dialer, target, dialer_reader, target_writer)
        backward = self._pump(target, dialer, target_reader, dialer_writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            # When either side closes, the whole bridged connection goes.
            await _first_completed(forward, backward)
        finally:
            for writer in (dialer_writer, target_writer):
                writer.close()
                self._writers.discard(writer)

    async def _pump(
        self,
        sender: NodeId,
        receiver: NodeId,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Carry frames ``sender → receiver`` under that link's rule."""
        label = f"{node_name(sender)}>{node_name(receiver)}"
        loop = asyncio.get_running_loop()
        decoder = FrameDecoder(self.max_frame_bytes)
        outbox: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        first = True

        async def deliver() -> None:
            while (item := await outbox.get()) is not None:
                due, frame = item
                wait_s = due - loop.time()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                writer.write(frame)
                if outbox.empty():
                    await writer.drain()

        delivery = loop.create_task(deliver())
        last_due = 0.0
        try:
            while True:
                data = await reader.read(READ_CHUNK_BYTES)
                if not data:
                    return
                if not self.frames:
                    fault = self.fault(sender, receiver)
                    stall = RETRANSMIT_S if fault.loss and self.rng.random() < fault.loss else 0.0
                    last_due = max(last_due, loop.time() + fault.delay_s + stall)
                    self.metrics[f"{'stalled' if stall else 'passed'}.{label}"] += 1
                    outbox.put_nowait((last_due, data))
                    continue
                try:
                    bodies = decoder.feed(data)
                except RemoteProtocolError:
                    self.metrics["malformed"] += 1
                    return
                for body in bodies:
                    fault = PASS if first else self.fault(sender, receiver)
                    first = False
                    if fault.drop or (fault.loss and self.rng.random() < fault.loss):
                        self.metrics[f"dropped.{label}"] += 1
                        continue
                    if fault.delay_s > 0:
                        self.metrics[f"delayed.{label}"] += 1
                    else:
                        self.metrics[f"passed.{label}"] += 1
                    frame = encode_frame(body, self.max_frame_bytes)
                    outbox.put_nowait((loop.time() + fault.delay_s, frame))
                if delivery.done():
                    return  # the receiver's side failed
        except (OSError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            delivery.cancel()
            raise
        finally:
            # Frames already accepted are still delivered (a delay is not a loss).
            outbox.put_nowait(None)
            if not delivery.done():
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await delivery


async def _first_completed(*coroutines: Coroutine[Any, Any, None]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def write_proxied_configs(cluster: LocalCluster, proxy: FaultProxy) -> None:
    """Write ``cluster``'s configs with every peer reached through ``proxy``
    (clients still reach the nodes directly). Call after ``proxy.start()``."""
    cluster.write_configs()
    for node in cluster.ids:
        config = replace(cluster.node_config(node), peers=proxy.peers_of(node))
        cluster.config_path(node).write_text(config.to_toml())


def cluster_fault_proxy(cluster: LocalCluster) -> FaultProxy:
    """A proxy in front of ``cluster``'s real listen addresses."""
    return FaultProxy({n: cluster.address(n) for n in cluster.ids})
