"""An in-memory, deterministic network of Casper validators for the tests.

Messages travel through one heap ordered by (delivery time, sequence number),
with a seeded latency per message; ``drop_rate`` loses messages at random,
``partition`` cuts the cluster into groups, ``crash`` stops a node and
``restart`` rebuilds it from what it persisted. Timers are the cores'
``wake_at`` deadlines. The same seed gives the same run.

Signatures are keyed hashes (HMAC-SHA256 with a per-node key): enough to make
forgery fail, and fast. ``Ed25519`` tests use real keys instead.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
from collections.abc import Iterable
from typing import Any

from quorate.casper import ByzantineValidator, CasperConfig, CasperValidator
from quorate.core.protocol import ProtocolCore
from quorate.core.ready import Entry
from quorate.ids import NodeId
from quorate.storage.base import Recovered

FAST_CONFIG = CasperConfig(slot_timeout_s=0.1, max_slot_timeout_s=1.6, justify_wait_s=0.05, batch_max=16)
"""Timeouts well above the 1-10 ms latency of the test network."""


def hmac_key(node: NodeId) -> bytes:
    return hashlib.sha256(b"casper-test-key-%d" % node).digest()


class HmacSigner:
    def __init__(self, node: NodeId) -> None:
        self._node = node

    @property
    def node(self) -> NodeId:
        return self._node

    def sign(self, data: bytes) -> bytes:
        return hmac.new(hmac_key(self._node), data, hashlib.sha256).digest()


class HmacVerifier:
    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(hmac.new(hmac_key(node), data, hashlib.sha256).digest(), signature)


class Network:
    """``n`` validators (ids 1..n, some Byzantine) on a lossy, partitionable network."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        byzantine: dict[int, str] | None = None,
        config: CasperConfig = FAST_CONFIG,
        latency_s: tuple[float, float] = (0.001, 0.01),
        drop_rate: float = 0.0,
    ) -> None:
        self.ids = [NodeId(i) for i in range(1, n + 1)]
        self.config = config
        self.rng = random.Random(seed)
        self.seed = seed
        self.byzantine = {NodeId(k): v for k, v in (byzantine or {}).items()}
        self.latency_s = latency_s
        self.drop_rate = drop_rate
        self.now = 0.0
        self._heap: list[tuple[float, int, NodeId, NodeId, Any]] = []
        self._seq = 0
        self.wake: dict[NodeId, float] = {}
        self.committed: dict[NodeId, list[Entry]] = {i: [] for i in self.ids}
        self.hard_state: dict[NodeId, Any] = {}
        self.disk_entries: dict[NodeId, list[Entry]] = {i: [] for i in self.ids}
        self.crashed: set[NodeId] = set()
        self.groups: list[frozenset[NodeId]] | None = None
        self.rejections: dict[NodeId, list[Any]] = {i: [] for i in self.ids}
        self.sent: list[tuple[NodeId, NodeId, Any]] = []
        self.nodes: dict[NodeId, ProtocolCore] = {i: self._build(i, None) for i in self.ids}

    def _build(self, node: NodeId, recovered: Recovered | None) -> ProtocolCore:
        core: ProtocolCore = CasperValidator(
            node,
            self.ids,
            config=self.config,
            signer=HmacSigner(node),
            verifier=HmacVerifier(),
            rng=random.Random(f"{self.seed}:{node}"),
            now=self.now,
            recovered=recovered,
        )
        behaviour = self.byzantine.get(node)
        if behaviour is not None:
            core = ByzantineValidator(
                core, behaviour, rng=random.Random(f"{self.seed}:byz:{node}"), signer=HmacSigner(node), peers=self.ids
            )
        return core

    @property
    def honest(self) -> list[NodeId]:
        return [i for i in self.ids if i not in self.byzantine]

    def core(self, node: int) -> CasperValidator:
        c = self.nodes[NodeId(node)]
        while isinstance(c, ByzantineValidator):
            c = c.inner  # type: ignore[assignment]
        assert isinstance(c, CasperValidator)
        return c

    # -- faults -------------------------------------------------------------------

    def partition(self, *groups: Iterable[int]) -> None:
        self.groups = [frozenset(NodeId(i) for i in g) for g in groups]

    def heal(self) -> None:
        self.groups = None

    def crash(self, node: int) -> None:
        self.crashed.add(NodeId(node))
        self.wake.pop(NodeId(node), None)

    def restart(self, node: int) -> None:
        """Rebuild ``node`` from its last persisted hard state and entries; its
        state machine starts empty (the validator replays what it committed)."""
        n = NodeId(node)
        self.crashed.discard(n)
        self.committed[n] = []
        recovered = Recovered(hard_state=self.hard_state.get(n), entries=list(self.disk_entries[n]))
        self.nodes[n] = self._build(n, recovered)
        self._drive(n)

    def _blocked(self, src: NodeId, dst: NodeId) -> bool:
        if dst in self.crashed or src in self.crashed:
            return True
        if self.groups is not None:
            return not any(src in g and dst in g for g in self.groups)
        return False

    # -- running ------------------------------------------------------------------

    def submit(self, command: bytes, to: int) -> Any:
        outcome = self.nodes[NodeId(to)].propose(command, self.now)
        self._drive(NodeId(to))
        return outcome

    def _drive(self, node: NodeId) -> None:
        core = self.nodes[node]
        while True:
            ready = core.ready()
            if ready.hard_state is not None:
                self.hard_state[node] = ready.hard_state
            self.disk_entries[node].extend(ready.entries)
            for to, message in ready.messages:
                self.sent.append((node, to, message))
                if self._blocked(node, to) or (self.drop_rate and self.rng.random() < self.drop_rate):
                    continue
                lo, hi = self.latency_s
                self._seq += 1
                heapq.heappush(self._heap, (self.now + self.rng.uniform(lo, hi), self._seq, to, node, message))
            log = self.committed[node]
            for entry in ready.committed:
                assert entry.index == len(log) + 1, f"node {node}: non-contiguous commit {entry.index}"
                log.append(entry)
            self.rejections[node].extend(ready.rejected)
            core.advance(ready)
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
                self.nodes[dst].step(src, message, self.now)
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
        """No two honest validators executed different commands at one index."""
        reference: dict[int, tuple[NodeId, bytes]] = {}
        for node in self.honest:
            for entry in self.committed[node]:
                first = reference.setdefault(entry.index, (node, entry.data))
                assert first[1] == entry.data, (
                    f"seed={self.seed}: index {entry.index} is {first[1]!r} on {first[0]} but {entry.data!r} on {node}"
                )

    def committed_data(self, node: int) -> set[bytes]:
        return {e.data for e in self.committed[NodeId(node)]}

    def all_committed(self, commands: Iterable[bytes], nodes: Iterable[int] | None = None) -> bool:
        wanted = set(commands)
        return all(
            wanted <= self.committed_data(n)
            for n in (self.honest if nodes is None else nodes)
            if NodeId(n) not in self.crashed
        )
