"""An in-memory, deterministic network of PBFT replicas for the tests.

One seed fixes every choice: message latencies, losses, and the replicas' own
randomness. Messages travel through a time-ordered queue; a replica is woken at
the deadline it asked for (``Ready.wake_at``). The network can drop messages at
random, cut links, isolate a replica, and crash and restart one from its
``MemoryStorage``. Committed entries of every replica are recorded so the
safety check can compare them index by index.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from quorate.core.ready import Entry
from quorate.crypto.mac import Authenticator, SessionKeys, pairwise_session_keys
from quorate.ids import NodeId
from quorate.pbft import ByzantineReplica, Coalition, PbftConfig, PbftReplica
from quorate.storage import MemoryStorage

LATENCY_MIN_S = 0.001
LATENCY_MAX_S = 0.010


class KeyedSigner:
    """A keyed-hash test signer: each node's key is derived from its id."""

    def __init__(self, node: NodeId) -> None:
        self._node = node
        self._key = test_key(node)
        self.signed = 0

    @property
    def node(self) -> NodeId:
        return self._node

    def sign(self, data: bytes) -> bytes:
        self.signed += 1
        return hmac.new(self._key, data, hashlib.sha256).digest()


CLUSTER_SECRET = b"pbft-test-cluster-secret"


class SessionKeyAuthenticator:
    """``quorate.crypto.mac.SessionKeys`` as a PBFT ``MacAuthenticator``."""

    def __init__(self, node: NodeId, replicas: Sequence[NodeId]) -> None:
        peers = [r for r in replicas if r != node]
        self.keys = SessionKeys(node, pairwise_session_keys(CLUSTER_SECRET, node, peers))
        self.made = 0
        self.checked = 0

    def macs(self, data: bytes, receivers: Sequence[NodeId]) -> Mapping[int, bytes]:
        self.made += 1
        return self.keys.authenticator(data, receivers).macs

    def check(self, sender: NodeId, data: bytes, macs: Mapping[int, bytes]) -> bool:
        self.checked += 1
        return self.keys.verify_entry(sender, data, Authenticator(dict(macs)))


class KeyedVerifier:
    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        if not isinstance(signature, bytes):
            return False
        expected = hmac.new(test_key(node), data, hashlib.sha256).digest()
        return hmac.compare_digest(expected, signature)


def test_key(node: int) -> bytes:
    return hashlib.sha256(b"pbft-test-key:" + str(int(node)).encode()).digest()


test_key.__test__ = False  # type: ignore[attr-defined]


class SafetyViolation(AssertionError):
    """Two honest replicas committed different entries at one index."""


def check_safety(logs: dict[NodeId, list[Entry]]) -> None:
    """No two honest replicas commit different entries at one index, and each
    replica's committed indices are contiguous from 1."""
    reference: dict[int, tuple[NodeId, Entry]] = {}
    for node, log in logs.items():
        for position, entry in enumerate(log):
            if entry.index != position + 1:
                raise SafetyViolation(f"replica {node} committed index {entry.index} at position {position + 1}")
            held = reference.get(entry.index)
            if held is None:
                reference[entry.index] = (node, entry)
            elif held[1] != entry:
                raise SafetyViolation(
                    f"index {entry.index}: replica {held[0]} committed {held[1]!r}, replica {node} {entry!r}"
                )


class Net:
    """Replicas 0..n-1 joined by a lossy, partitionable, deterministic network."""

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        config: PbftConfig | None = None,
        byzantine: dict[int, str] | None = None,
        coalition: bool = False,
        loss: float = 0.0,
    ) -> None:
        self.n = n
        self.seed = seed
        self.rng = random.Random(seed)
        self.config = config or PbftConfig(batch_max=8, checkpoint_interval=4, batch_timeout_s=0.001)
        self.replicas = tuple(NodeId(i) for i in range(n))
        self.byzantine = dict(byzantine or {})
        self.coalition = (
            Coalition(frozenset(NodeId(i) for i in self.byzantine), self.replicas) if coalition else None
        )
        self.loss = loss
        self.now = 0.0
        self.cut: set[tuple[int, int]] = set()
        self.storage = {r: MemoryStorage() for r in self.replicas}
        self.cores: dict[NodeId, Any] = {}
        self.signers: dict[NodeId, KeyedSigner] = {}
        self.authenticators: dict[NodeId, SessionKeyAuthenticator] = {}
        self.down: set[NodeId] = set()
        self.committed: dict[NodeId, list[Entry]] = {r: [] for r in self.replicas}
        self.rejections: dict[NodeId, list[Any]] = {r: [] for r in self.replicas}
        self.wake: dict[NodeId, float | None] = {}
        self._queue: list[tuple[float, int, NodeId, NodeId, Any]] = []
        self._counter = 0
        self.delivered = 0
        for r in self.replicas:
            self.cores[r] = self._build(r, recovered=None)
            self._drain(r)

    # --------------------------------------------------------------- setup

    def _build(self, r: NodeId, recovered: Any) -> Any:
        signer = self.signers[r] = KeyedSigner(r)
        authenticator = None
        if self.config.authentication == "macs":
            authenticator = self.authenticators[r] = SessionKeyAuthenticator(r, self.replicas)
        core = PbftReplica(
            r,
            self.replicas,
            config=self.config,
            signer=signer,
            verifier=KeyedVerifier(),
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.now,
            recovered=recovered,
            authenticator=authenticator,
        )
        behaviour = self.byzantine.get(int(r))
        if behaviour is None:
            return core
        return ByzantineReplica(
            core,
            behaviour,
            rng=random.Random(self.rng.getrandbits(64)),
            signer=KeyedSigner(r),
            peers=self.replicas,
            coalition=self.coalition,
        )

    @property
    def honest(self) -> list[NodeId]:
        return [r for r in self.replicas if int(r) not in self.byzantine]

    def honest_logs(self) -> dict[NodeId, list[Entry]]:
        return {r: self.committed[r] for r in self.honest}

    def core(self, r: int) -> PbftReplica:
        c = self.cores[NodeId(r)]
        return c.inner if isinstance(c, ByzantineReplica) else c

    # ------------------------------------------------------------- faults

    def isolate(self, r: int) -> None:
        for other in self.replicas:
            if other != r:
                self.cut.add((r, int(other)))
                self.cut.add((int(other), r))

    def heal(self) -> None:
        self.cut.clear()
        self.loss = 0.0

    def partition(self, side: Iterable[int]) -> None:
        a = set(side)
        for x in self.replicas:
            for y in self.replicas:
                if (int(x) in a) != (int(y) in a):
                    self.cut.add((int(x), int(y)))

    def crash(self, r: int) -> None:
        self.down.add(NodeId(r))
        del self.cores[NodeId(r)]
        self.wake[NodeId(r)] = None

    def restart(self, r: int) -> None:
        node = NodeId(r)
        self.down.discard(node)
        self.committed[node] = []  # the state machine is rebuilt from the log
        self.cores[node] = self._build(node, recovered=self.storage[node].recover())
        self._drain(node)

    # ------------------------------------------------------------ running

    def propose(self, r: int, command: bytes) -> Any:
        node = NodeId(r)
        outcome = self.cores[node].propose(command, self.now)
        self._drain(node)
        return outcome

    def _drain(self, r: NodeId) -> None:
        core = self.cores[r]
        while True:
            ready = core.ready()
            if ready.hard_state is not None or ready.entries:
                self.storage[r].persist(ready.hard_state, ready.entries, None)
            for to, message in ready.messages:
                self._send(r, to, message)
            self.committed[r].extend(ready.committed)
            self.rejections[r].extend(ready.rejected)
            core.advance(ready)
            if not core.has_ready():
                self.wake[r] = ready.wake_at
                return

    def _send(self, src: NodeId, dst: NodeId, message: Any) -> None:
        if (int(src), int(dst)) in self.cut:
            return
        if self.loss and self.rng.random() < self.loss:
            return
        at = self.now + self.rng.uniform(LATENCY_MIN_S, LATENCY_MAX_S)
        self._counter += 1
        heapq.heappush(self._queue, (at, self._counter, src, dst, message))

    def run(self, duration_s: float, *, max_events: int = 2_000_000) -> None:
        end = self.now + duration_s
        for _ in range(max_events):
            next_msg = self._queue[0][0] if self._queue else None
            timer_node, timer_at = None, None
            for node, at in self.wake.items():
                if at is not None and node not in self.down and (timer_at is None or at < timer_at):
                    timer_node, timer_at = node, at
            candidates = [t for t in (next_msg, timer_at) if t is not None]
            if not candidates or min(candidates) > end:
                self.now = end
                return
            if timer_at is not None and (next_msg is None or timer_at <= next_msg):
                assert timer_node is not None
                self.now = max(self.now, timer_at)
                self.wake[timer_node] = None
                self.cores[timer_node].tick(self.now)
                self._drain(timer_node)
            else:
                at, _, src, dst, message = heapq.heappop(self._queue)
                self.now = max(self.now, at)
                if dst in self.down:
                    continue
                self.delivered += 1
                self.cores[dst].step(src, message, self.now)
                self._drain(dst)
        raise AssertionError(f"too many events (seed={self.seed})")

    def run_until_committed(self, count: int, *, timeout_s: float, nodes: Iterable[int] | None = None) -> bool:
        """Run until every given (default: honest, up) replica committed ``count`` entries."""
        targets = [NodeId(x) for x in nodes] if nodes is not None else [
            r for r in self.honest if r not in self.down
        ]
        deadline = self.now + timeout_s
        while self.now < deadline:
            if all(len(self.committed[r]) >= count for r in targets):
                return True
            self.run(min(0.05, deadline - self.now))
        return all(len(self.committed[r]) >= count for r in targets)


def crash_restart_run(seed: int, config: PbftConfig | None = None) -> None:
    """Crash and restart replicas one at a time under message loss (what a
    replica signed or MAC'd, its certificates or claims, come back from the
    hard state); then heal and check that every replica holds the same log
    with the final commands and that nobody was convicted."""
    rng = random.Random(seed)
    n = rng.choice([4, 7])
    net = Net(n, seed=seed, config=config, loss=rng.choice([0.0, 0.1]))
    for round_ in range(6):
        up = [r for r in range(n) if NodeId(r) not in net.down]
        for i in range(5):
            net.propose(rng.choice(up), f"s{seed}-{round_}-{i}".encode())
        net.run(rng.uniform(0, 0.3))
        net.crash(rng.randrange(n))
        net.run(rng.uniform(0, 1.0))
        for down in list(net.down):
            net.restart(down)
        check_safety(net.honest_logs())
    net.heal()
    # Commands proposed at a replica that then crashed were lost with it (a
    # client would retry); these last ones must reach every replica.
    for i in range(5):
        net.propose(i % n, f"final-{i}".encode())
    net.run(20.0)
    check_safety(net.honest_logs())
    logs = [net.committed[r] for r in net.replicas]
    assert all(log == logs[0] for log in logs), f"replicas disagree; reproduce with seed={seed}"
    assert sum(e.data.startswith(b"final-") for e in logs[0]) == 5, f"seed={seed}"
    assert not any(net.core(r).detections for r in net.replicas), f"seed={seed}"


def step_junk(net: Net, rng: random.Random, junk: Sequence[object], rounds: int = 200) -> None:
    """Feed every replica but the claimed sender random junk messages
    directly (no network); a core must refuse them without raising."""
    for _ in range(rounds):
        message = rng.choice(junk)
        sender = NodeId(rng.randrange(len(net.replicas)))
        for r in net.replicas:
            if r != sender:
                net.cores[r].step(sender, message, 0.0)
                net.cores[r].ready()
