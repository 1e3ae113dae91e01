"""An in-memory, deterministic network of HotStuff replicas for the tests.

Messages travel through one heap ordered by (delivery time, sequence number),
with a seeded latency per message; ``drop_rate`` loses messages at random,
``partition`` cuts the cluster into groups, ``crash`` stops a node. Timers are
the cores' ``wake_at`` deadlines. The same seed gives the same run.

Signatures are keyed hashes (HMAC-SHA256 with a per-node key): enough to make
forgery fail, and fast.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from quorate.core.protocol import ProtocolCore
from quorate.core.ready import Entry
from quorate.hotstuff import ByzantineReplica, HotStuffConfig, HotStuffReplica
from quorate.ids import NodeId
from quorate.storage.base import Recovered

FAST_CONFIG = HotStuffConfig(view_timeout_s=0.1, max_view_timeout_s=1.6, batch_max=16)
"""Timeouts well above the 1-10 ms latency of the test network."""


class HmacSigner:
    def __init__(self, node: NodeId) -> None:
        self._node = node
        self._key = hmac_key(node)

    @property
    def node(self) -> NodeId:
        return self._node

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()


class HmacVerifier:
    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        expected = hmac.new(hmac_key(node), data, hashlib.sha256).digest()
        return hmac.compare_digest(expected, signature)


def hmac_key(node: NodeId) -> bytes:
    return hashlib.sha256(b"test-key-%d" % node).digest()


class SafetyViolation(AssertionError):
    """Two honest replicas committed different entries at one index."""


class Network:
    """``n`` replicas (some Byzantine) joined by a lossy, partitionable network."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        byzantine: dict[int, str] | None = None,
        config: HotStuffConfig = FAST_CONFIG,
        latency_s: tuple[float, float] = (0.001, 0.01),
        drop_rate: float = 0.0,
    ) -> None:
        self.ids = [NodeId(i) for i in range(n)]
        self.config = config
        self.rng = random.Random(seed)
        self.seed = seed
        self.byzantine = dict(byzantine or {})
        self.latency_s = latency_s
        self.drop_rate = drop_rate
        self.now = 0.0
        self._heap: list[tuple[float, int, NodeId, NodeId, Any]] = []
        self._seq = 0
        self.nodes: dict[NodeId, ProtocolCore] = {}
        self.wake: dict[NodeId, float] = {}
        self.committed: dict[NodeId, list[Entry]] = {i: [] for i in self.ids}
        self.committed_data: dict[NodeId, set[bytes]] = {i: set() for i in self.ids}
        self.hard_state: dict[NodeId, Any] = {}
        self.disk_entries: dict[NodeId, list[Entry]] = {i: [] for i in self.ids}
        """Committed entries each replica persisted (``Ready.entries``)."""
        self.crashed: set[NodeId] = set()
        self.groups: list[frozenset[NodeId]] | None = None
        self.rejections: dict[NodeId, list[Any]] = {i: [] for i in self.ids}
        self.delivered = 0
        self.sent: Counter[str] = Counter()
        """Messages sent, by type name."""
        self.core_s = 0.0
        """CPU seconds spent inside the cores (step, tick, ready, advance)."""
        for i in self.ids:
            self.nodes[i] = self._build(i, None)
        for i in self.ids:
            self._drive(i)  # boot work: what a replica asks for at start goes out now

    # -- construction -------------------------------------------------------------

    def replica(self, node: NodeId, recovered: Recovered | None = None) -> HotStuffReplica:
        return HotStuffReplica(
            node,
            self.ids,
            config=self.config,
            signer=HmacSigner(node),
            verifier=HmacVerifier(),
            rng=random.Random(f"{self.seed}:{node}"),
            now=self.now,
            recovered=recovered,
        )

    def _build(self, node: NodeId, recovered: Recovered | None) -> ProtocolCore:
        core: ProtocolCore = self.replica(node, recovered)
        behaviour = self.byzantine.get(node)
        if behaviour is not None:
            core = ByzantineReplica(
                core,
                behaviour,
                rng=random.Random(f"{self.seed}:byz:{node}"),
                signer=self.signer(node),
                peers=self.ids,
                view_timeout_s=self.config.view_timeout_s,
            )
        return core

    def signer(self, node: NodeId) -> Any:
        """What a Byzantine wrapper signs its forgeries with (a network with
        another signature scheme overrides it)."""
        return HmacSigner(node)

    @property
    def honest(self) -> list[NodeId]:
        return [i for i in self.ids if i not in self.byzantine]

    def core(self, node: NodeId) -> HotStuffReplica:
        c = self.nodes[node]
        while isinstance(c, ByzantineReplica):
            c = c.inner
        assert isinstance(c, HotStuffReplica)
        return c

    # -- faults -------------------------------------------------------------------

    def partition(self, *groups: Iterable[int]) -> None:
        self.groups = [frozenset(NodeId(i) for i in g) for g in groups]

    def heal(self) -> None:
        self.groups = None

    def crash(self, node: NodeId) -> None:
        self.crashed.add(node)
        self.wake.pop(node, None)

    def restart(self, node: NodeId) -> None:
        """Rebuild ``node`` from its last persisted hard state and entries
        (messages in flight are lost). Its state machine starts empty: the
        replica must hand it every committed entry again."""
        self.crashed.discard(node)
        self.committed[node] = []
        self.committed_data[node] = set()
        recovered = Recovered(hard_state=self.hard_state.get(node), entries=list(self.disk_entries[node]))
        self.nodes[node] = self._build(node, recovered)
        self._drive(node)

    def _blocked(self, src: NodeId, dst: NodeId) -> bool:
        if dst in self.crashed or src in self.crashed:
            return True
        if self.groups is not None:
            return not any(src in g and dst in g for g in self.groups)
        return False

    # -- running ------------------------------------------------------------------

    def submit(self, command: bytes, to: NodeId) -> Any:
        outcome = self.nodes[to].propose(command, self.now)
        self._drive(to)
        return outcome

    def _drive(self, node: NodeId) -> None:
        core = self.nodes[node]
        while True:
            started = time.perf_counter()
            ready = core.ready()
            self.core_s += time.perf_counter() - started
            if ready.hard_state is not None:
                self.hard_state[node] = ready.hard_state
            self.disk_entries[node].extend(ready.entries)
            for to, message in ready.messages:
                self.sent[type(message).__name__] += 1
                if self._blocked(node, to) or (self.drop_rate and self.rng.random() < self.drop_rate):
                    continue
                lo, hi = self.latency_s
                self._seq += 1
                heapq.heappush(self._heap, (self.now + self.rng.uniform(lo, hi), self._seq, to, node, message))
            log = self.committed[node]
            for entry in ready.committed:
                assert entry.index == len(log) + 1, f"node {node}: non-contiguous commit {entry.index}"
                log.append(entry)
                self.committed_data[node].add(entry.data)
            self.rejections[node].extend(ready.rejected)
            started = time.perf_counter()
            core.advance(ready)
            self.core_s += time.perf_counter() - started
            if ready.wake_at is None:
                self.wake.pop(node, None)
            else:
                self.wake[node] = ready.wake_at
            if not core.has_ready():
                return

    def run_until(self, t_end: float, *, until: Any = None) -> None:
        """Deliver messages and fire timers up to ``t_end`` (or until ``until()``)."""
        while True:
            if until is not None and until():
                return
            t_msg = self._heap[0][0] if self._heap else float("inf")
            t_timer, timer_node = min(((t, n) for n, t in self.wake.items()), default=(float("inf"), None))
            t = min(t_msg, t_timer)
            if t > t_end:
                self.now = max(self.now, t_end)
                return
            self.now = max(self.now, t)
            if t_msg <= t_timer:
                _, _, dst, src, message = heapq.heappop(self._heap)
                if self._blocked(src, dst):
                    continue
                self.delivered += 1
                started = time.perf_counter()
                self.nodes[dst].step(src, message, self.now)
                self.core_s += time.perf_counter() - started
                self._drive(dst)
            else:
                assert timer_node is not None
                del self.wake[timer_node]
                if timer_node in self.crashed:
                    continue
                self.nodes[timer_node].tick(self.now)
                self._drive(timer_node)

    # -- checks -------------------------------------------------------------------

    def check_safety(self) -> None:
        """No two honest replicas committed different entries at one index."""
        reference: dict[int, tuple[NodeId, bytes]] = {}
        for node in self.honest:
            for entry in self.committed[node]:
                first = reference.setdefault(entry.index, (node, entry.data))
                if first[1] != entry.data:
                    raise SafetyViolation(
                        f"seed={self.seed}: index {entry.index} is {first[1]!r} on node "
                        f"{first[0]} but {entry.data!r} on node {node}"
                    )

    def all_committed(self, commands: Iterable[bytes], nodes: Iterable[NodeId] | None = None) -> bool:
        wanted = set(commands)
        return all(
            wanted <= self.committed_data[n]
            for n in (self.honest if nodes is None else nodes)
            if n not in self.crashed
        )
