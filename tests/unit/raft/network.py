"""An in-memory network of Raft nodes for tests (after etcd-io/raft's ``network``).

Messages wait in one FIFO queue until ``deliver`` hands them over; the test
decides what gets through: ``drop`` a pair's messages in one direction, ``cut``
a pair both ways, ``isolate`` a node, ``heal`` everything, or ``drop_types``
to lose messages of some kinds. Time only moves when the test says so
(``advance``), and a node's timers fire only through ``tick``.

Each node has a ``MemoryStorage`` (survives ``restart``) and a state machine
that is the list of applied ``NORMAL`` commands; snapshots encode that list.
Every event is followed by a ``RaftSafetyMonitor`` check, so every test also
checks Raft's safety properties.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from quorate.core.ready import Entry, ReadState, Rejection
from quorate.ids import NodeId
from quorate.raft import (
    EntryKind,
    RaftConfig,
    RaftNode,
    RaftSafetyMonitor,
    Role,
    Snapshot,
)
from quorate.storage import MemoryStorage, Recovered

DEFAULT_CONFIG = RaftConfig(
    election_timeout_s=1.0,
    heartbeat_interval_s=0.1,
    pre_vote=False,
    check_quorum=False,
)


class Network:
    """Nodes, their storage and state machines, and the messages between them."""

    def __init__(
        self,
        voters: Iterable[int],
        *,
        config: RaftConfig = DEFAULT_CONFIG,
        learners: Iterable[int] = (),
        seed: int = 0,
        now: float = 0.0,
        configs: dict[int, RaftConfig] | None = None,
        monitor: bool = True,
        node_options: Callable[[NodeId], dict[str, Any]] | None = None,
    ) -> None:
        self.now = now
        self.voters = tuple(NodeId(v) for v in voters)
        self.initial_learners = tuple(NodeId(v) for v in learners)
        self.config = config
        self.configs = {NodeId(k): v for k, v in (configs or {}).items()}
        self.seed = seed
        self.node_options = node_options or (lambda node: {})
        """Extra ``RaftNode`` arguments per node (hooks, quorum rule)."""
        self.nodes: dict[NodeId, RaftNode] = {}
        self.storage: dict[NodeId, MemoryStorage] = {}
        self.applied: dict[NodeId, list[bytes]] = {}
        self.applied_entries: dict[NodeId, list[Entry]] = {}
        self.reads: dict[NodeId, list[ReadState]] = {}
        self.rejected: list[tuple[NodeId, Rejection]] = []
        self.installed: dict[NodeId, list[Snapshot]] = {}
        self.wake: dict[NodeId, float | None] = {}
        self.queue: list[tuple[NodeId, NodeId, Any]] = []
        self.sent: list[tuple[NodeId, NodeId, Any]] = []
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.dropped_types: set[type] = set()
        self.down: set[NodeId] = set()
        self.monitor = RaftSafetyMonitor() if monitor else None
        for node in (*self.voters, *self.initial_learners):
            self.add_node(node)

    # ------------------------------------------------------------ membership
    def add_node(
        self, node_id: int, voters: Iterable[int] | None = None, learners: Iterable[int] = ()
    ) -> RaftNode:
        nid = NodeId(node_id)
        node = RaftNode(
            nid,
            self.voters if voters is None else [NodeId(v) for v in voters],
            config=self.configs.get(nid, self.config),
            rng=random.Random(self.seed * 1000 + nid),
            now=self.now,
            learners=self.initial_learners if voters is None else [NodeId(v) for v in learners],
            **self.node_options(nid),
        )
        self.nodes[nid] = node
        self.storage[nid] = MemoryStorage()
        self.applied[nid] = []
        self.applied_entries[nid] = []
        self.reads[nid] = []
        self.installed[nid] = []
        self.collect(nid)
        return node

    def put(self, node: RaftNode, recovered: Recovered | None = None) -> None:
        """Use ``node`` (built by the test, maybe from ``recovered``) in the network."""
        storage = MemoryStorage()
        if recovered is not None:
            storage.persist(recovered.hard_state, recovered.entries, recovered.snapshot)
        self.nodes[node.id] = node
        self.storage[node.id] = storage
        self.applied[node.id] = []
        self.applied_entries[node.id] = []
        self.reads[node.id] = []
        self.installed[node.id] = []
        self.collect(node.id)

    def crash(self, node_id: int) -> None:
        """The node stops; its in-flight messages are lost, its disk stays."""
        nid = NodeId(node_id)
        self.down.add(nid)
        self.queue = [(f, t, m) for f, t, m in self.queue if f != nid and t != nid]

    def restart(self, node_id: int) -> RaftNode:
        """Rebuild the node from its storage only (volatile state is lost)."""
        nid = NodeId(node_id)
        self.down.discard(nid)
        recovered = self.storage[nid].recover()
        old = self.nodes[nid]
        node = RaftNode(
            nid,
            self.voters,
            config=old.config,
            rng=random.Random(self.seed * 1000 + nid + 7919),
            now=self.now,
            learners=self.initial_learners,
            recovered=recovered,
            **self.node_options(nid),
        )
        self.nodes[nid] = node
        # The state machine restarts from the node's own snapshot, then the
        # core re-delivers committed entries after it.
        snap = recovered.snapshot
        self.applied[nid] = list(_decode_state(snap.data)) if snap is not None else []
        self.applied_entries[nid] = []
        self.collect(nid)
        return node

    # ------------------------------------------------------------ faults
    def drop(self, src: int, dst: int) -> None:
        """Lose every message from ``src`` to ``dst`` until ``heal``."""
        self.blocked.add((NodeId(src), NodeId(dst)))

    def cut(self, a: int, b: int) -> None:
        self.drop(a, b)
        self.drop(b, a)

    def isolate(self, node_id: int) -> None:
        for other in self.nodes:
            if other != node_id:
                self.cut(node_id, other)

    def drop_types(self, *types: type) -> None:
        self.dropped_types.update(types)

    def heal(self) -> None:
        self.blocked.clear()
        self.dropped_types.clear()

    # ------------------------------------------------------------ driving
    def collect(self, node_id: NodeId) -> None:
        """Carry out the node's Ready: persist, queue messages, apply, advance."""
        node = self.nodes[node_id]
        storage = self.storage[node_id]
        while node.has_ready():
            ready = node.ready()
            # The driver's order: early messages, persist, the other messages.
            for to, message in ready.early_messages:
                self.sent.append((node_id, to, message))
                self.queue.append((node_id, to, message))
            storage.persist(ready.hard_state, ready.entries, ready.snapshot)
            for to, message in ready.messages:
                self.sent.append((node_id, to, message))
                self.queue.append((node_id, to, message))
            if ready.snapshot is not None:
                self.installed[node_id].append(ready.snapshot)
                self.applied[node_id] = list(_decode_state(ready.snapshot.data))
            for entry in ready.committed:
                self.applied_entries[node_id].append(entry)
                if entry.kind == EntryKind.NORMAL:
                    self.applied[node_id].append(entry.data)
            self.reads[node_id].extend(ready.reads)
            self.rejected.extend((node_id, r) for r in ready.rejected)
            self.wake[node_id] = ready.wake_at
            node.advance(ready)
        self.wake[node_id] = node.wake_at()
        if self.monitor is not None:
            self.monitor.check(node, self.now)

    def step(self, src: int, dst: int, message: Any) -> None:
        """Hand one message to ``dst`` now (bypassing the queue)."""
        nid = NodeId(dst)
        self.nodes[nid].step(NodeId(src), message, self.now)
        self.collect(nid)

    def deliver(self, limit: int = 1_000_000) -> int:
        """Deliver queued messages (and those they cause) until none remain."""
        delivered = 0
        while self.queue and delivered < limit:
            src, dst, message = self.queue.pop(0)
            if (
                (src, dst) in self.blocked
                or type(message) in self.dropped_types
                or dst in self.down
                or dst not in self.nodes
            ):
                continue
            delivered += 1
            self.step(src, dst, message)
        return delivered

    def deliver_one(self) -> tuple[NodeId, NodeId, Any] | None:
        """Deliver exactly the first queued message that is not blocked."""
        while self.queue:
            src, dst, message = self.queue.pop(0)
            if (
                (src, dst) in self.blocked
                or type(message) in self.dropped_types
                or dst in self.down
            ):
                continue
            self.step(src, dst, message)
            return src, dst, message
        return None

    def take(
        self, src: int | None = None, dst: int | None = None
    ) -> list[tuple[NodeId, NodeId, Any]]:
        """Remove and return queued messages matching ``src``/``dst``."""
        out = [
            m for m in self.queue if (src is None or m[0] == src) and (dst is None or m[1] == dst)
        ]
        self.queue = [m for m in self.queue if m not in out]
        return out

    def tick(self, node_id: int) -> None:
        nid = NodeId(node_id)
        if nid in self.down:
            return
        self.nodes[nid].tick(self.now)
        self.collect(nid)

    def advance(self, seconds: float, *, deliver: bool = True) -> None:
        """Move time forward in small steps, firing due timers (and delivering)."""
        end = self.now + seconds
        step_s = self.config.heartbeat_interval_s / 2
        while self.now < end - 1e-12:
            self.now = min(end, self.now + step_s)
            for nid in list(self.nodes):
                wake = self.wake.get(nid)
                if nid not in self.down and wake is not None and wake <= self.now:
                    self.tick(nid)
            if deliver:
                self.deliver()

    def campaign(self, node_id: int) -> None:
        nid = NodeId(node_id)
        self.nodes[nid].campaign(self.now)
        self.collect(nid)

    def elect(self, node_id: int) -> RaftNode:
        """Make ``node_id`` campaign and deliver until the election settles."""
        self.campaign(node_id)
        self.deliver()
        return self.nodes[NodeId(node_id)]

    def propose(self, node_id: int, command: bytes) -> Any:
        nid = NodeId(node_id)
        outcome = self.nodes[nid].propose(command, self.now)
        self.collect(nid)
        return outcome

    # ------------------------------------------------------------ views
    def leader(self) -> RaftNode | None:
        """The leader with the highest term among running nodes, if any."""
        leaders = [
            n for nid, n in self.nodes.items() if n.role is Role.LEADER and nid not in self.down
        ]
        return max(leaders, key=lambda n: n.term) if leaders else None

    def node(self, node_id: int) -> RaftNode:
        return self.nodes[NodeId(node_id)]


def encode_state(commands: list[bytes]) -> bytes:
    """A snapshot of the test state machine (the list of applied commands)."""
    return msgspec.msgpack.encode(commands)


def _decode_state(data: bytes) -> list[bytes]:
    if not data:
        return []
    return msgspec.msgpack.decode(data, type=list[bytes])
