"""An in-memory network of one HRB shard, and a stub core, for tests (after
``tests/unit/raft/network.py``).

Messages wait in one FIFO queue until ``deliver`` hands them over; the test
decides what gets through (``drop``, ``cut``, ``isolate``, ``heal``,
``drop_types``, and ``loss``: a seeded fraction lost at random). Time
moves only through ``advance``. Each member has a
``MemoryStorage`` that survives ``crash``/``restart``; its Ready is carried
out in the driver's order (early messages, persist, messages, apply).

``StubCore`` stands in for HRB's core tier: it holds a real t-of-n BLS
threshold dealing (``quorate.crypto.threshold``) and certifies any decision
the test hands it, so shards verify real threshold signatures. What shards
send the core is collected in ``core_inbox``.

Every event is followed by the shard's safety check (applied digests agree
across members) and Raft's ``RaftSafetyMonitor`` on honest members.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import msgspec

from quorate.core.ready import Rejection
from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, ed25519_cluster_keys
from quorate.crypto.threshold import FeldmanDealing, ThresholdSigner, deal
from quorate.hrb.messages import (
    CoreCertificate,
    Decision,
    EpochChange,
    Transaction,
    TxnOp,
    certificate_bytes,
    encode_decision,
)
from quorate.hrb.shard.binding import bls_group_check
from quorate.hrb.shard.byzantine import ByzantineShardReplica
from quorate.hrb.shard.config import ShardConfig
from quorate.hrb.shard.invariants import ShardSafetyMonitor
from quorate.hrb.shard.replica import ShardReplica
from quorate.hrb.shard.state import ClientTxn, TxnOutcome, encode_command
from quorate.ids import NodeId
from quorate.raft import RaftConfig, RaftSafetyMonitor
from quorate.storage import MemoryStorage

KEY_SEED = b"hrb shard tests"
CORE_SEED = b"hrb stub core"
CORE_SENDER = NodeId(1000)
"""The node id certificates come from (not a shard member: they count by signature)."""
FAST_RAFT = RaftConfig(election_timeout_s=1.0, heartbeat_interval_s=0.1, pre_vote=True, check_quorum=True)


@cache
def _dealing(threshold: int, n: int, epoch: int) -> FeldmanDealing:
    return deal(threshold, n, seed=CORE_SEED + bytes([epoch]))


class StubCore:
    """Certifies decisions with a real threshold key per epoch (see the module docstring)."""

    def __init__(self, threshold: int = 3, n: int = 4) -> None:
        self.threshold = threshold
        self.n = n
        self.epoch = 1
        self.index = 0
        self.genesis = self.epoch_change(1)

    def epoch_change(self, epoch: int) -> EpochChange:
        dealing = _dealing(self.threshold, self.n, epoch)
        return EpochChange(epoch, tuple(range(1, self.n + 1)), self.threshold, dealing.group_public_key)

    def sign(self, epoch: int, index: int, decision: bytes) -> bytes:
        dealing = _dealing(self.threshold, self.n, epoch)
        message = certificate_bytes(epoch, index, decision)
        partials = {
            share.index: ThresholdSigner(NodeId(share.index), share).sign(message)
            for share in dealing.shares[: self.threshold]
        }
        return dealing.public_key().combine(partials)

    def certify(self, decision: Decision) -> CoreCertificate:
        self.index += 1
        data = encode_decision(decision)
        return CoreCertificate(self.epoch, self.index, data, self.sign(self.epoch, self.index, data))

    def next_epoch(self) -> CoreCertificate:
        """Certify the next epoch (by the current one) and switch to it."""
        cert = self.certify(self.epoch_change(self.epoch + 1))
        self.epoch += 1
        return cert


def txn_id(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()[:16]


def txn(label: str, *ops: TxnOp, home: int = 1, client: int = 0, seq: int = 0) -> Transaction:
    return Transaction(txn_id(label), client, seq, home, tuple(ops))


def client_txn(t: Transaction) -> bytes:
    return encode_command(ClientTxn(t))


def two_shard_keys(key: str) -> int:
    """Keys starting with ``b`` belong to shard 2, the others to shard 1."""
    return 2 if key.startswith("b") else 1


class ShardNet:
    """One shard's members, their storage, and the messages between them."""

    def __init__(
        self,
        members: Iterable[int] = (1, 2, 3, 4),
        *,
        quorum: str = "majority",
        shard: int = 1,
        shards: int = 2,
        key_shard: Callable[[str], int] = two_shard_keys,
        byzantine: dict[int, str] | None = None,
        seed: int = 0,
        monitor: bool = True,
        loss: float = 0.0,
        **options: Any,
    ) -> None:
        self.now = 0.0
        self.members = tuple(NodeId(m) for m in members)
        self.core = StubCore()
        self.keys = ed25519_cluster_keys(KEY_SEED, self.members)
        self.verifier = Ed25519Verifier({n: k.public_key for n, k in self.keys.items()})
        self.config = ShardConfig(shard=shard, shards=shards, quorum=quorum, raft=options.pop("raft", FAST_RAFT), **options)
        self.key_shard = key_shard
        self.byzantine = {NodeId(k): v for k, v in (byzantine or {}).items()}
        self.seed = seed
        self.loss = loss
        """Fraction of messages lost at random (drawn from a source seeded by ``seed``)."""
        self._loss_rng = random.Random(seed ^ 0x5EED)
        self.nodes: dict[NodeId, Any] = {}
        self.storage: dict[NodeId, MemoryStorage] = {}
        self.applied: dict[NodeId, list[Any]] = {}
        self.results: dict[NodeId, list[TxnOutcome]] = {}
        self.core_inbox: list[tuple[NodeId, Any]] = []
        self.rejected: list[tuple[NodeId, Rejection]] = []
        self.queue: list[tuple[NodeId, NodeId, Any]] = []
        self.sent: list[tuple[NodeId, NodeId, Any]] = []
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.dropped_types: set[type] = set()
        self.down: set[NodeId] = set()
        self.wake: dict[NodeId, float | None] = {}
        self.shard_monitor = ShardSafetyMonitor() if monitor else None
        # A Byzantine leader breaks Raft's own log matching among honest members
        # on purpose (equivocation); what must hold is certified agreement.
        lying_leaders = any(b.endswith("leader") for b in self.byzantine.values())
        self.raft_monitor = RaftSafetyMonitor() if monitor and not lying_leaders else None
        self.restarts = 0
        for node in self.members:
            self.storage[node] = MemoryStorage()
            self.nodes[node] = self._build(node, None)
            self.applied[node] = []
            self.results[node] = []
            self.collect(node)

    # ------------------------------------------------------------ building
    def _build(self, node: NodeId, recovered: Any) -> Any:
        signer = Ed25519Signer(node, self.keys[node].signing_key)
        replica = ShardReplica(
            node,
            self.members,
            config=self.config,
            signer=signer,
            verifier=self.verifier,
            rng=random.Random(self.seed * 1000 + node + 7919 * self.restarts),
            now=self.now,
            key_shard=self.key_shard,
            check_certificate=bls_group_check,
            genesis=self.core.genesis,
            recovered=recovered,
        )
        behaviour = self.byzantine.get(node)
        if behaviour is None:
            return replica
        return ByzantineShardReplica(replica, behaviour, rng=random.Random(self.seed + node))

    def replica(self, node: int) -> ShardReplica:
        """The honest core of ``node`` (inside its Byzantine wrapper, if any)."""
        core = self.nodes[NodeId(node)]
        return core.inner if isinstance(core, ByzantineShardReplica) else core

    def honest(self) -> list[ShardReplica]:
        return [self.replica(n) for n in self.members if n not in self.byzantine and n not in self.down]

    # ------------------------------------------------------------ faults
    def drop(self, src: int, dst: int) -> None:
        self.blocked.add((NodeId(src), NodeId(dst)))

    def cut(self, a: int, b: int) -> None:
        self.drop(a, b)
        self.drop(b, a)

    def isolate(self, node: int) -> None:
        for other in self.members:
            if other != node:
                self.cut(node, other)

    def drop_types(self, *types: type) -> None:
        self.dropped_types.update(types)

    def heal(self) -> None:
        self.blocked.clear()
        self.dropped_types.clear()

    def crash(self, node: int) -> None:
        nid = NodeId(node)
        self.down.add(nid)
        self.queue = [(f, t, m) for f, t, m in self.queue if f != nid and t != nid]

    def restart(self, node: int) -> ShardReplica:
        nid = NodeId(node)
        self.down.discard(nid)
        self.restarts += 1
        self.nodes[nid] = self._build(nid, self.storage[nid].recover())
        self.applied[nid] = []
        self.collect(nid)
        return self.replica(nid)

    # ------------------------------------------------------------ driving
    def collect(self, node: NodeId) -> None:
        core = self.nodes[node]
        storage = self.storage[node]
        while core.has_ready():
            ready = core.ready()
            for to, message in ready.early_messages:
                self._send(node, to, message)
            storage.persist(ready.hard_state, ready.entries, ready.snapshot)
            for to, message in ready.messages:
                self._send(node, to, message)
            self.applied[node].extend(ready.committed)
            self.rejected.extend((node, r) for r in ready.rejected)
            core.advance(ready)
        self.wake[node] = core.wake_at()
        replica = self.replica(node)
        self.core_inbox.extend((node, m) for m in core.take_core_messages())
        self.results[node].extend(replica.take_results())
        if node not in self.byzantine:
            if self.shard_monitor is not None:
                self.shard_monitor.check(replica, self.now)
            if self.raft_monitor is not None:
                self.raft_monitor.check(replica.raft, self.now)

    def _send(self, src: NodeId, dst: NodeId, message: Any) -> None:
        self.sent.append((src, dst, message))
        self.queue.append((src, dst, message))

    def step(self, src: int, dst: int, message: Any) -> None:
        nid = NodeId(dst)
        if nid in self.down:
            return
        self.nodes[nid].step(NodeId(src), message, self.now)
        self.collect(nid)

    def deliver(self, limit: int = 1_000_000) -> int:
        delivered = 0
        while self.queue and delivered < limit:
            src, dst, message = self.queue.pop(0)
            if (src, dst) in self.blocked or type(message) in self.dropped_types or dst in self.down:
                continue
            if self.loss and self._loss_rng.random() < self.loss:
                continue
            delivered += 1
            self.step(src, dst, message)
        return delivered

    def tick(self, node: int) -> None:
        nid = NodeId(node)
        if nid in self.down:
            return
        self.nodes[nid].tick(self.now)
        self.collect(nid)

    def advance(self, seconds: float, *, deliver: bool = True, step_s: float = 0.05) -> None:
        end = self.now + seconds
        while self.now < end - 1e-12:
            self.now = min(end, self.now + step_s)
            for nid in self.members:
                wake = self.wake.get(nid)
                if nid not in self.down and wake is not None and wake <= self.now:
                    self.tick(nid)
            if deliver:
                self.deliver()

    def elect(self, node: int) -> ShardReplica:
        """Make ``node`` campaign and deliver until the election settles."""
        nid = NodeId(node)
        self.replica(nid).raft.campaign(self.now)
        self.nodes[nid].tick(self.now)
        self.collect(nid)
        self.deliver()
        self.advance(0.3)
        return self.replica(nid)

    def propose(self, node: int, command: bytes) -> Any:
        nid = NodeId(node)
        outcome = self.nodes[nid].propose(command, self.now)
        self.collect(nid)
        return outcome

    def submit(self, node: int, t: Transaction) -> Any:
        return self.propose(node, client_txn(t))

    def deliver_certificate(self, cert: CoreCertificate, to: Iterable[int] | None = None) -> None:
        """The core sends ``cert`` to the shard's members (all by default)."""
        for node in self.members if to is None else to:
            self.step(CORE_SENDER, node, cert)

    # ------------------------------------------------------------ views
    def leader(self) -> ShardReplica | None:
        leaders = [self.replica(n) for n in self.members if n not in self.down and self.replica(n).is_leader]
        return max(leaders, key=lambda r: r.term) if leaders else None

    def core_messages(self, kind: type) -> list[tuple[NodeId, Any]]:
        return [(n, m) for n, m in self.core_inbox if isinstance(m, kind)]

    def rejections(self, reason_part: str) -> list[tuple[NodeId, Rejection]]:
        return [(n, r) for n, r in self.rejected if reason_part in r.reason]


def decode(data: bytes, type_: type) -> Any:
    return msgspec.msgpack.decode(data, type=type_)
