"""A deterministic in-memory network of SWIM members for tests.

Time only moves through ``run_until``/``run_for``: events (message deliveries
and the members' own deadlines, ``Ready.wake_at``) are processed in time order
from one heap, and every random choice — latency jitter, loss, each member's
own randomness — comes from one seed, so a run replays exactly. The test
decides what gets through: ``loss`` drops a fraction of all messages,
``partition`` cuts the groups off from each other, ``kill`` silences a member
(nothing in, nothing out, no timers), ``slow`` delays everything a member
sends and receives (an overloaded host). With ``wire=True`` every message goes
through the real codec, so the wire types are exercised too.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from typing import Any

from quorate.codec import WireCodec
from quorate.ids import NodeId
from quorate.swim import SWIM_MESSAGE_TYPES, MemberState, SwimConfig, SwimNode

BASE_LATENCY_S = 0.002
JITTER_S = 0.003


class SwimNet:
    """Members and the messages between them."""

    def __init__(self, *, seed: int = 0, loss: float = 0.0, wire: bool = False) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.loss = loss
        self.nodes: dict[NodeId, SwimNode] = {}
        self.killed: set[NodeId] = set()
        self.slow: dict[NodeId, float] = {}
        self.groups: list[frozenset[NodeId]] = []
        self.delivered = 0
        self.dropped = 0
        self._heap: list[tuple[float, int, int, Any]] = []
        self._counter = 0
        self._wake: dict[NodeId, float | None] = {}
        self._codec = WireCodec(SWIM_MESSAGE_TYPES) if wire else None

    # ------------------------------------------------------------ building
    def add(
        self,
        node: int,
        seeds: Iterable[int] = (),
        config: SwimConfig | None = None,
        locality: Callable[[NodeId], str] | None = None,
    ) -> SwimNode:
        nid = NodeId(node)
        member = SwimNode(
            nid,
            [NodeId(s) for s in seeds],
            config=config or SwimConfig(),
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.now,
            locality=locality,
        )
        self.nodes[nid] = member
        self._flush(member)
        return member

    def bootstrap(self, n: int, config: SwimConfig | None = None, *, seed_node: int = 0) -> None:
        """Members 0..n-1, all joining through ``seed_node``, run until every
        member knows every other."""
        self.add(seed_node, (), config)
        for i in range(n):
            if i != seed_node:
                self.add(i, (seed_node,), config)
        everyone = frozenset(NodeId(i) for i in range(n))
        self.run_until_true(
            lambda: all(self.nodes[NodeId(i)].reachable() == everyone for i in range(n)), 120.0
        )

    # ------------------------------------------------------------ faults
    def kill(self, node: int) -> None:
        self.killed.add(NodeId(node))

    def partition(self, *groups: Iterable[int]) -> None:
        self.groups = [frozenset(NodeId(n) for n in g) for g in groups]

    def heal(self) -> None:
        self.groups = []

    def _connected(self, a: NodeId, b: NodeId) -> bool:
        if not self.groups:
            return True
        return any(a in g and b in g for g in self.groups)

    # ------------------------------------------------------------ running
    def _push(self, at: float, kind: int, item: Any) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (at, self._counter, kind, item))

    def _flush(self, member: SwimNode) -> None:
        while True:
            ready = member.ready()
            for to, message in ready.messages:
                self._transmit(member.id, to, message)
            member.advance(ready)
            if not member.has_ready():
                break
        wake = ready.wake_at
        if wake is not None:
            wake = max(wake, self.now)
            if wake != self._wake.get(member.id):
                self._wake[member.id] = wake
                self._push(wake, 0, member.id)

    def _transmit(self, src: NodeId, dst: NodeId, message: Any) -> None:
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        if self._codec is not None:
            message = self._codec.decode(self._codec.encode(src, message))[1]
        delay = (
            BASE_LATENCY_S
            + self.rng.random() * JITTER_S
            + self.slow.get(src, 0.0)
            + self.slow.get(dst, 0.0)
        )
        self._push(self.now + delay, 1, (src, dst, message))

    def run_until(self, end: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= end:
            at, _, kind, item = heapq.heappop(heap)
            self.now = max(self.now, at)
            if kind == 0:
                node = item
                if self._wake.get(node) != at or node in self.killed:
                    continue
                self._wake[node] = None
                member = self.nodes[node]
                member.tick(self.now)
                self._flush(member)
            else:
                src, dst, message = item
                if dst in self.killed or src in self.killed or not self._connected(src, dst):
                    self.dropped += 1
                    continue
                self.delivered += 1
                member = self.nodes[dst]
                member.step(src, message, self.now)
                self._flush(member)
        self.now = max(self.now, end)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until_true(self, condition: Any, limit_s: float, step_s: float = 0.1) -> float:
        """Run until ``condition()`` holds; return the time it took. Fails the
        test if it does not hold within ``limit_s`` simulated seconds."""
        start = self.now
        while not condition():
            if self.now - start > limit_s:
                raise AssertionError(f"condition not reached within {limit_s} simulated seconds")
            self.run_for(step_s)
        return self.now - start

    # ------------------------------------------------------------ views
    def live(self) -> list[SwimNode]:
        return [m for n, m in sorted(self.nodes.items()) if n not in self.killed and not m.has_left]

    def state_of(self, observer: int, member: int) -> MemberState | None:
        known = self.nodes[NodeId(observer)].member(NodeId(member))
        return None if known is None else known[0]
