"""A real gossip member: SWIM membership plus a PN-Counter and an OR-Set,
over the cluster's TCP (or TLS 1.3) transport, one OS process per member.

Theory of operation.

- **The core.** A ``SwimNode`` (``quorate.swim``: SWIM with Lifeguard) runs
  unchanged from the simulator. Its inputs are peers' messages (from the
  ``Transport``) and the passage of time: one timer task sleeps until the
  core's ``wake_at`` on the event loop's monotonic clock and ticks it. After
  every input, ``runtime.driver.drive`` sends what the core produced.
- **The CRDTs** (``quorate.crdt.gossip.GossipReplica``). The member's
  PN-Counter and OR-Set are one entry of SWIM's anti-entropy keyspace, owned
  and written only by this member; anti-entropy brings the others' entries,
  which are joined into the local replica (a state-based merge). When the join
  changed the state, the member writes its own entry again, so news spreads
  transitively until every replica holds the join of all.
- **Durability.** After every change (a client's operation or a merge) the
  replica is written to ``<data_dir>/n<id>.crdt`` atomically (a temporary
  file, fsync, rename, fsync of the directory) *before* the client hears
  "done". A member killed with SIGKILL restarts from that file, so no
  acknowledged operation is lost and no OR-Set dot is handed out twice; what
  peers merged meanwhile comes back through anti-entropy. SWIM itself keeps
  nothing durable: the restarted member rejoins with its seeds and refutes its
  own death with a higher incarnation.
- **Why TCP, not UDP.** SWIM was designed for datagrams, and memberlist uses
  UDP for probes. Here the cluster's ``Transport`` (one connection per pair,
  TLS 1.3 with mutual authentication, bounded queues, length-prefixed
  frames) carries everything, because (1) it authenticates every member,
  which plain UDP cannot without a DTLS stack the standard library lacks;
  (2) Merkle entries and membership snapshots exceed one datagram; (3) the
  failure detector stays correct: a crashed member's connection fails and its
  probes go unanswered exactly as lost datagrams would. The cost is that a
  lost segment is retransmitted by TCP and arrives late instead of never, so
  a slow link looks slow (an Ack after the probe timeout) rather than lossy;
  Lifeguard's Nacks and health multiplier exist for exactly that case. At the
  group sizes one process per member on a host allows, a connection per pair
  is cheap.
- **Eclipse resistance.** The transport bounds connections per source
  address and subnet (``quorate.security.limits``), and the SWIM core knows
  each peer's subnet, so its Cyclon view holds at most its share from one
  subnet and is refreshed from the seeds when one subnet dominates it.
- **Clients** speak the ``GossipRequest``/``GossipReply`` messages on the
  same listener (``Transport`` client role): increment, add, remove, read.
  A read answers with this replica's value (eventually consistent), its
  members up and its keyspace root, so a caller can tell when replicas agree.

Invariants: a client's operation is durable before its reply leaves; the
replica file always holds a complete state (rename is atomic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quorate.core.ready import Entry, ReadState, Rejection
from quorate.core.wire import WireMessage
from quorate.crdt.gossip import GossipReplica
from quorate.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.tls import TlsConfig
from quorate.runtime.aio.transport import Address, Transport
from quorate.runtime.driver import drive
from quorate.security.limits import subnet_of
from quorate.swim import SWIM_MESSAGE_TYPES, SwimConfig, SwimNode

log = logging.getLogger("quorate.runtime.aio.gossip")

GOSSIP_OPERATIONS = ("increment", "add", "remove", "read")
MAX_ELEMENT_CHARS = 256
"""Longest OR-Set element a client may add."""
STATE_FILE_SUFFIX = ".crdt"


class GossipRequest(WireMessage, tag="gossip.Request", frozen=True):
    """A client's operation: ``op`` is one of ``GOSSIP_OPERATIONS``."""

    op: str
    element: str = ""
    amount: int = 0
    request_id: int = 0


class GossipReply(WireMessage, tag="gossip.Reply", frozen=True):
    """The answer to one ``GossipRequest`` (``ok`` False: ``error`` says why)."""

    request_id: int
    ok: bool
    counter: int = 0
    elements: tuple[str, ...] = ()
    members_up: tuple[int, ...] = ()
    state_root: bytes = b""
    error: str = ""


GOSSIP_CLIENT_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (GossipRequest, GossipReply)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new
    content, never a mix: temporary file, fsync, rename, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class _GossipHost:
    """The driver's ``Host``: SWIM only ever asks for messages to be sent."""

    __slots__ = ("node",)

    def __init__(self, node: GossipNode) -> None:
        self.node = node

    def persist(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None:
        """SWIM keeps no durable protocol state."""

    def send(self, to: NodeId, message: Any) -> None:
        self.node.transport.send(to, message)

    def restore(self, snapshot: Any) -> None:
        """SWIM installs no snapshots."""

    def apply(self, entry: Entry) -> None:
        """SWIM commits nothing."""

    def read_ready(self, read: ReadState) -> None:
        """SWIM serves no linearizable reads."""

    def rejected(self, rejection: Rejection) -> None:
        self.node.counters[f"rejected.{rejection.reason}"] += 1


class GossipNode:
    """One gossip member on this process's event loop (see the module docstring)."""

    def __init__(
        self,
        node_id: NodeId,
        listen: Address,
        peers: Mapping[NodeId, Address],
        data_dir: Path,
        *,
        tls: TlsConfig | None = None,
        insecure: bool = False,
        swim: SwimConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if node_id < 0:
            raise ConfigError(f"--id must be >= 0, got {node_id}")
        self.id = NodeId(node_id)
        self.data_dir = Path(data_dir)
        self.state_path = self.data_dir / f"{node_name(self.id)}{STATE_FILE_SUFFIX}"
        self.swim_config = (swim or SwimConfig()).validate()
        self._rng = rng or random.Random()
        self._peers = {NodeId(p): a for p, a in peers.items() if p != node_id}
        self.transport = Transport(
            self.id,
            listen,
            self._peers,
            peer_message_types=SWIM_MESSAGE_TYPES,
            client_message_types=GOSSIP_CLIENT_MESSAGE_TYPES,
            on_peer_message=self._on_peer_message,
            on_client_message=self._on_client_message,
            tls=tls,
            insecure=insecure,
            rng=self._rng,
        )
        self.replica = self._load_replica()
        self.counters: Counter[str] = Counter()
        self._host = _GossipHost(self)
        self._core: SwimNode | None = None
        self._timer: asyncio.Task[None] | None = None
        self._rearm = asyncio.Event()
        self._wake_at: float | None = None

    # ------------------------------------------------------------ lifecycle
    def _load_replica(self) -> GossipReplica:
        try:
            data = self.state_path.read_bytes()
        except FileNotFoundError:
            return GossipReplica(self.id)
        try:
            replica = GossipReplica.from_bytes(data)
        except RemoteProtocolError as exc:
            raise ConfigError(f"{self.state_path} is not a replica state: {exc}") from exc
        if replica.replica != self.id:
            raise ConfigError(
                f"{self.state_path} holds the state of replica {replica.replica}, not {self.id}"
            )
        return replica

    def _locality(self, peer: NodeId) -> str:
        """The subnet ``peer`` is reached at: the peer sampling view keeps
        several subnets in it (eclipse resistance, ``quorate.swim.peer_sampling``)."""
        address = self._peers.get(peer)
        return subnet_of(address[0]) if address is not None else f"unknown:{int(peer)}"

    @property
    def core(self) -> SwimNode:
        if self._core is None:
            raise LocalProtocolError("the gossip node is not started")
        return self._core

    async def start(self) -> Address:
        """Listen, join through the peers, start the timer; return the bound address."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        address = await self.transport.start()
        now = asyncio.get_running_loop().time()
        self._core = SwimNode(
            self.id, sorted(self._peers), config=self.swim_config, rng=self._rng, now=now, locality=self._locality
        )
        if self.replica.version:
            self._core.local_state_put(*self.replica.entry())
        self._drive()
        self._timer = asyncio.get_running_loop().create_task(self._timer_loop())
        return address

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.transport.close()

    # ------------------------------------------------------------ inputs
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _on_peer_message(self, sender: NodeId, message: WireMessage, group: int) -> None:
        if self._core is None or group != 0:
            return
        self._core.step(sender, message, self._now())
        self._drive()

    async def _timer_loop(self) -> None:
        while True:
            wake = self._wake_at
            self._rearm.clear()
            delay = None if wake is None else max(wake - self._now(), 0.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._rearm.wait(), timeout=delay)
                continue  # the deadline moved earlier: sleep again
            self.core.tick(self._now())
            self._drive()

    def _drive(self) -> None:
        core = self.core
        wake = drive(core, self._host)
        self._merge_state_updates()
        if wake != self._wake_at:
            earlier = wake is not None and (self._wake_at is None or wake < self._wake_at)
            self._wake_at = wake
            if earlier:
                self._rearm.set()

    def _merge_state_updates(self) -> None:
        core = self.core
        updates = core.take_state_updates()
        if not updates:
            return
        changed = False
        for update in updates:
            try:
                changed |= self.replica.merge_entry(update.key, update.version, update.value)
            except RemoteProtocolError as exc:
                self.counters["malformed_replica_states"] += 1
                log.warning("%s ignored the state %s: %s", node_name(self.id), update.key, exc)
        if changed:
            self._publish()
            self.counters["merges"] += 1

    def _publish(self) -> None:
        """Durable first, then offered to anti-entropy."""
        write_atomically(self.state_path, self.replica.to_bytes())
        self.core.local_state_put(*self.replica.entry())

    def _on_client_message(self, connection: int, message: WireMessage, group: int) -> None:
        if not isinstance(message, GossipRequest) or group != 0:
            return
        self.transport.send_to_client(connection, self.handle(message))

    def handle(self, request: GossipRequest) -> GossipReply:
        """Carry out one client operation; the reply leaves after it is durable."""
        replica = self.replica
        op = request.op
        if op not in GOSSIP_OPERATIONS:
            return GossipReply(
                request.request_id,
                False,
                error=f"unknown op {op!r}; use one of {', '.join(GOSSIP_OPERATIONS)}",
            )
        if op in ("add", "remove") and not 0 < len(request.element) <= MAX_ELEMENT_CHARS:
            return GossipReply(
                request.request_id,
                False,
                error=f"element must be 1..{MAX_ELEMENT_CHARS} characters",
            )
        if op == "increment":
            replica.increment(request.amount)
        elif op == "add":
            replica.add(request.element)
        elif op == "remove":
            replica.remove(request.element)
        if op != "read":
            self._publish()
            self.counters[f"ops.{op}"] += 1
        value, elements = replica.snapshot()
        return GossipReply(
            request.request_id,
            True,
            counter=value,
            elements=tuple(str(e) for e in elements),
            members_up=tuple(sorted(int(m) for m in self.core.reachable())),
            state_root=self.core.state_root(),
        )
