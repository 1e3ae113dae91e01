"""One real node: a protocol core, SQLite storage, the KV service and a
transport, driven by ``quorate.runtime.driver.drive`` on an asyncio loop.

Theory of operation.

- *Inputs.* Peer messages and client requests arrive from the transport's
  reader tasks. They are appended to an inbox; the first arrival in an event
  loop iteration schedules one ``_process`` callback (``call_soon``), so every
  message that became readable in that iteration is stepped into the core
  before the node drives once. Many proposals thus share one ``Ready``, one
  SQLite transaction and one fsync (group commit).
- *Driving, one Ready at a time.* The node takes a ``Ready`` and carries it
  out with the driver's ``carry_out`` in the contract's order: persist →
  send (queue on the transport) → apply (the ``ReplicaService``) → advance.
  A Ready that needs an fsync is persisted on a single worker thread
  (``run_in_executor``; SQLite releases the GIL while it writes and syncs)
  and the rest of it is carried out back on the loop when the fsync is done.
  Meanwhile the loop keeps reading sockets and stepping inputs into the core,
  but takes no new ``Ready`` until the one in flight is advanced: the next
  Ready then carries everything that arrived during the fsync, so the group
  commit grows with the load instead of the loop stalling on it.
- *What needs an fsync.* Entries, snapshots and a hard state whose term or
  vote changed. A hard state that differs from the last one only in its
  commit index does not (the paper keeps the commit index in volatile state;
  etcd's ``MustSync`` is the same rule): it is handed to the storage with
  ``durable=False`` and rides along with the next durable transaction, so a
  commit costs no extra fsync on the leader or the followers.
- *A leader's AppendEntries leave before its own fsync* (Raft thesis
  §10.2.1; etcd does the same): they carry only the leader's log, which each
  follower makes durable itself before acknowledging. This is done only when
  the Ready changes no term or vote. It stays safe because no later Ready
  is taken before this one's fsync completes: a commit index that counts
  these entries, any message carrying it and every client acknowledgement
  are produced by a later Ready, so they leave after the leader's copy is
  durable too. Every other message waits for the fsync, as the driver's
  order says.
- *Time.* The core asks to be woken at ``ready.wake_at`` (the node's monotonic
  clock). The node keeps one ``TimerHandle`` and reschedules it only when the
  deadline changes; when it fires, ``core.tick(now)`` and drive.
- *Clients.* Replies the service produces go back on the connection their
  request came from (client connection ids never collide with node ids).
- *Restart.* The core is built from ``SqliteStorage.recover()``; a recovered
  snapshot is restored into the state machine before the core runs, and the
  core replays committed entries above it.
- *Status and administration.* ``Status`` is answered at once from the core's
  view; ``Admin`` calls the core's ``propose_conf_change`` or
  ``transfer_leadership`` (``quorate.runtime.aio.admin``).
- *Leadership changes.* After each drive the node compares the core's leader
  with the last one seen and logs a change. When this node stops being the
  leader, every client still waiting on it is answered ``retry``: its
  proposal may yet commit under the new leader, and the client's retry keeps
  the same ``(client, seq)``, so the session makes the outcome exactly-once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from quorate.core.ready import Entry, ReadState, Ready, Rejection
from quorate.core.wire import WireMessage
from quorate.errors import LocalProtocolError
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.admin import (
    CLIENT_REQUEST_TYPES,
    Admin,
    AdminReply,
    Status,
    StatusReply,
)
from quorate.runtime.aio.bft import bft_metrics, replica_service_class
from quorate.runtime.aio.protocols import ProtocolBinding, protocol_binding
from quorate.runtime.aio.tls import TlsConfig
from quorate.runtime.aio.transport import (
    CLIENT_CONNECTION_BASE,
    Address,
    Transport,
    TransportConfig,
)
from quorate.runtime.driver import carry_out
from quorate.state.kv import KVStore
from quorate.state.service import ClientRequest, ReplicaService
from quorate.storage.sqlite import SqliteStorage

log = logging.getLogger("quorate.runtime.aio.node")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when it is installed (faster sockets), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _early_message_types(protocol: str) -> tuple[type[Any], ...]:
    """Messages a leader may send before its own fsync (see the module docstring)."""
    if protocol == "raft":
        from quorate.raft.messages import AppendEntries

        return (AppendEntries,)
    return ()


def _only_commit_changed(previous: Any, current: Any) -> bool:
    """True if ``current`` equals ``previous`` but for a ``commit`` field."""
    if (
        previous is None
        or type(previous) is not type(current)
        or not isinstance(current, msgspec.Struct)
        or "commit" not in current.__struct_fields__
    ):
        return False
    return bool(msgspec.structs.replace(current, commit=previous.commit) == previous)


class _NodeHost:
    """The driver's ``Host`` for a real node.

    ``persist`` is reached in two cases: a Ready whose fsync the worker thread
    already did (``already_persisted``: nothing left to do), or one that
    needs no fsync (a commit index alone: deferred in the storage).
    """

    __slots__ = ("already_persisted", "node")

    def __init__(self, node: AioNode) -> None:
        self.node = node
        self.already_persisted = False

    def persist(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None:
        if self.already_persisted:
            return
        node = self.node
        node.storage_or_raise().persist(hard_state, entries, snapshot, durable=False)
        node.counters["deferred_hard_states"] += 1

    def send(self, to: NodeId, message: Any) -> None:
        self.node.transport_or_raise().send(to, message)

    def restore(self, snapshot: Any) -> None:
        self.node.service_or_raise().restore(snapshot)

    def apply(self, entry: Entry) -> None:
        self.node.service_or_raise().apply(entry)
        self.node.counters["entries_applied"] += 1

    def read_ready(self, read: ReadState) -> None:
        self.node.service_or_raise().read_ready(read)

    def rejected(self, rejection: Rejection) -> None:
        node = self.node
        node.counters[f"rejected.{rejection.reason}"] += 1
        if rejection.reason not in node.logged_rejections:
            node.logged_rejections.add(rejection.reason)
            log.warning(
                "%s dropped %s from %s: %s",
                node_name(node.id),
                rejection.message_type,
                node_name(rejection.sender),
                rejection.reason,
            )


class AioNode:
    """A node of a cluster on this process's event loop.

    ``peers`` maps every *other* voter to its address; ``data_dir`` holds the
    SQLite log and snapshots. ``protocol`` is a registered name (``"raft"``) or
    a ``ProtocolBinding``; ``protocol_options`` go to its builder (Raft: the
    ``RaftConfig`` fields).
    """

    def __init__(
        self,
        node_id: NodeId,
        peers: Mapping[NodeId, Address],
        data_dir: str | Path,
        *,
        listen: Address = ("127.0.0.1", 0),
        protocol: str | ProtocolBinding = "raft",
        protocol_options: Mapping[str, Any] | None = None,
        tls: TlsConfig | None = None,
        insecure: bool = False,
        transport_config: TransportConfig | None = None,
        read_mode: str = "read_index",
        snapshot_every: int = 0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.id = node_id
        self.binding = (
            protocol if isinstance(protocol, ProtocolBinding) else protocol_binding(protocol)
        )
        self.peers = {p: a for p, a in peers.items() if p != node_id}
        self.data_dir = Path(data_dir)
        self.listen = listen
        self.protocol_options = dict(protocol_options or {})
        self.tls = tls
        self.insecure = insecure
        self.transport_config = transport_config
        self.read_mode = read_mode
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.rng = rng or random.Random()
        self.counters: Counter[str] = Counter()
        self.logged_rejections: set[str] = set()
        self.core: Any = None
        self.storage: SqliteStorage | None = None
        self.service: ReplicaService | None = None
        self.transport: Transport | None = None
        self._host = _NodeHost(self)
        self._inbox: list[tuple[int, WireMessage, bool]] = []  # (sender, message, from_client)
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leader_seen: int | None = None
        self._was_leader = False
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: asyncio.Future[None] | None = None
        """The fsync of the Ready being carried out, while it runs."""
        self._last_hard_state: Any = None
        """The last hard state handed to the storage (durably or not)."""
        self._early_types: tuple[type[Any], ...] = ()
        self._failed = False
        self._stopping: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> Address:
        """Recover from disk, build the core, listen and dial; return the listen address."""
        self._loop = asyncio.get_running_loop()
        binding = self.binding
        self.storage = SqliteStorage(
            self.data_dir,
            hard_state_type=binding.hard_state_type,
            snapshot_type=binding.snapshot_type,
        )
        recovered = self.storage.recover()
        fresh = (
            recovered.hard_state is None and recovered.snapshot is None and not recovered.entries
        )
        voters = tuple(sorted({self.id, *self.peers}))
        self.core = binding.build(
            self.id,
            voters,
            self.rng,
            self.clock(),
            None if fresh else recovered,
            self.protocol_options,
        )
        self.service = replica_service_class(binding.name)(
            self.core, KVStore(), read_mode=self.read_mode, snapshot_every=self.snapshot_every
        )
        if recovered.snapshot is not None:
            self.service.restore(recovered.snapshot)
        self._last_hard_state = recovered.hard_state
        self._early_types = _early_message_types(binding.name)
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{node_name(self.id)}-persist"
        )
        self.transport = Transport(
            self.id,
            self.listen,
            self.peers,
            peer_message_types=binding.message_types,
            client_message_types=CLIENT_REQUEST_TYPES,
            on_peer_message=self._on_peer_message,
            on_client_message=self._on_client_message,
            tls=self.tls,
            insecure=self.insecure,
            config=self.transport_config,
            rng=random.Random(self.rng.random()),
        )
        address = await self.transport.start()
        self._drive()
        return address

    def set_peer_address(self, peer: NodeId, address: Address) -> None:
        self.peers[peer] = address
        if self.transport is not None:
            self.transport.set_peer_address(peer, address)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._failed = True  # drive no more: the storage is going away
        if self.transport is not None:
            await self.transport.close()
        if self._in_flight is not None:
            # The storage must not close under the worker's transaction.
            await asyncio.gather(self._in_flight, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self.storage is not None:
            self.storage.close()

    @property
    def metrics(self) -> dict[str, int]:
        """Node counters plus the transport's (under ``transport.``)."""
        out = dict(self.counters)
        if self.transport is not None:
            out.update({f"transport.{k}": v for k, v in self.transport.metrics.items()})
        out.update(bft_metrics(self.core))  # view, leader, convictions (BFT cores only)
        return out

    def storage_or_raise(self) -> SqliteStorage:
        if self.storage is None:
            raise LocalProtocolError("the node is not started")
        return self.storage

    def transport_or_raise(self) -> Transport:
        if self.transport is None:
            raise LocalProtocolError("the node is not started")
        return self.transport

    def service_or_raise(self) -> ReplicaService:
        if self.service is None:
            raise LocalProtocolError("the node is not started")
        return self.service

    # ------------------------------------------------------------ inputs
    def _on_peer_message(self, sender: NodeId, message: WireMessage) -> None:
        self._enqueue(sender, message, False)

    def _on_client_message(self, connection_id: int, message: WireMessage) -> None:
        self._enqueue(connection_id, message, True)

    def _enqueue(self, sender: int, message: WireMessage, from_client: bool) -> None:
        self._inbox.append((sender, message, from_client))
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._process)

    def _process(self) -> None:
        self._scheduled = False
        inbox, self._inbox = self._inbox, []
        now = self.clock()
        core, service = self.core, self.service_or_raise()
        for sender, message, from_client in inbox:
            if from_client:
                if isinstance(message, ClientRequest):
                    service.on_client_request(NodeId(sender), message, now)
                elif isinstance(message, Status):
                    self.transport_or_raise().send_to_client(sender, self.status(message.seq))
                elif isinstance(message, Admin):
                    self.transport_or_raise().send_to_client(sender, self._admin(message, now))
            else:
                core.step(NodeId(sender), message, now)
        self.counters["batches"] += 1
        self.counters["inputs"] += len(inbox)
        self._drive()

    def status(self, seq: int = 0) -> StatusReply:
        """This node's view: role, term, leader, indexes, members, counters."""
        core = self.core
        role = getattr(core, "role", None)
        leader = getattr(core, "leader_id", None)
        members = {int(p): f"{h}:{port}" for p, (h, port) in self.peers.items()}
        if self.transport is not None:
            host, port = self.transport.listen_address
            members[int(self.id)] = f"{host}:{port}"
        return StatusReply(
            seq=seq,
            node=int(self.id),
            protocol=self.binding.name,
            role=str(getattr(role, "value", role or "unknown")),
            term=int(getattr(core, "term", 0)),
            leader=None if leader is None else int(leader),
            commit_index=int(getattr(core, "commit_index", 0)),
            applied_index=self.service.applied if self.service is not None else 0,
            last_index=int(getattr(core, "last_index", 0)),
            members=members,
            metrics=self.metrics,
        )

    def _admin(self, request: Admin, now: float) -> AdminReply:
        from quorate.core.protocol import Accepted, Redirect

        core = self.core
        node = NodeId(request.node)
        if request.action == "transfer":
            transfer = getattr(core, "transfer_leadership", None)
            if transfer is None:
                return AdminReply(request.seq, "error", error="this protocol has no leader to transfer")
            outcome = transfer(node, now)
        else:
            outcome = self._conf_change(request, now)
            if isinstance(outcome, AdminReply):
                return outcome
        if isinstance(outcome, Accepted):
            log.info("%s: %s %s accepted", node_name(self.id), request.action, node_name(node))
            return AdminReply(request.seq, "ok")
        if isinstance(outcome, Redirect):
            leader = outcome.leader
            return AdminReply(request.seq, "redirect", leader=None if leader is None else int(leader))
        return AdminReply(request.seq, "error", error=str(getattr(outcome, "reason", outcome)))

    def _conf_change(self, request: Admin, now: float) -> Any:
        propose = getattr(self.core, "propose_conf_change", None)
        if propose is None:
            return AdminReply(request.seq, "error", error="this protocol has no membership changes")
        from quorate.raft.messages import ConfChange, ConfChangeKind

        kinds = {
            "add": ConfChangeKind.ADD_VOTER,
            "add_learner": ConfChangeKind.ADD_LEARNER,
            "promote": ConfChangeKind.PROMOTE_LEARNER,
            "remove": ConfChangeKind.REMOVE_NODE,
        }
        kind = kinds.get(request.action)
        if kind is None:
            return AdminReply(request.seq, "error", error=f"unknown action {request.action!r}")
        node = NodeId(request.node)
        if request.action in ("add", "add_learner"):
            if not self.core.is_leader:
                leader = self.core.leader_id
                return AdminReply(
                    request.seq, "redirect", leader=None if leader is None else int(leader)
                )
            host, sep, port = request.address.rpartition(":")
            if not sep or not port.isdigit():
                return AdminReply(
                    request.seq, "error", error=f"add needs the node's host:port, got {request.address!r}"
                )
            self.set_peer_address(node, (host, int(port)))
        return propose(ConfChange(kind, node), now)

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        if self._failed:
            return
        self.core.tick(self.clock())
        self._drive()

    # ------------------------------------------------------------ driving
    def _drive(self) -> None:
        """Carry out Readies until the core has none or one waits for its fsync."""
        if self._in_flight is not None or self._failed:
            return  # _persisted() drives again once the fsync is done
        core = self.core
        while True:
            ready = core.ready()
            if not ready.is_empty():
                if self._needs_fsync(ready):
                    self._start_persist(ready)
                    self._schedule(ready.wake_at)
                    return
                if ready.hard_state is not None:
                    self._last_hard_state = ready.hard_state
                carry_out(ready, self._host)
            core.advance(ready)
            if not core.has_ready():
                break
        self._after_readies(ready.wake_at)

    def _needs_fsync(self, ready: Ready) -> bool:
        if ready.entries or ready.snapshot is not None:
            return True
        hard_state = ready.hard_state
        return hard_state is not None and not _only_commit_changed(
            self._last_hard_state, hard_state
        )

    def _start_persist(self, ready: Ready) -> None:
        """Send what may leave before the fsync, then fsync on the worker thread."""
        loop, executor = self._loop, self._executor
        assert loop is not None and executor is not None
        early_types = self._early_types
        late = ready.messages
        if (
            early_types
            and ready.messages
            and (
                ready.hard_state is None
                or _only_commit_changed(self._last_hard_state, ready.hard_state)
            )
        ):
            send = self.transport_or_raise().send
            late = []
            for to, message in ready.messages:
                if isinstance(message, early_types):
                    send(to, message)
                    self.counters["sent_before_persist"] += 1
                else:
                    late.append((to, message))
        if ready.hard_state is not None:
            self._last_hard_state = ready.hard_state
        storage = self.storage_or_raise()
        future = loop.run_in_executor(
            executor, storage.persist, ready.hard_state, ready.entries, ready.snapshot
        )
        self._in_flight = future
        future.add_done_callback(
            lambda done: self._persisted(done, dataclasses.replace(ready, messages=late), ready)
        )

    def _persisted(self, future: asyncio.Future[None], rest: Ready, ready: Ready) -> None:
        """Back on the loop after the fsync: send, apply, advance, drive on."""
        self._in_flight = None
        if self._failed:
            return
        if future.cancelled() or future.exception() is not None:
            # Nothing more may be acknowledged: what was promised may not be durable.
            self._failed = True
            log.critical(
                "%s: persisting failed; the node stops serving",
                node_name(self.id),
                exc_info=None if future.cancelled() else future.exception(),
            )
            if self.transport is not None:
                # Peers and clients see the connections drop and go elsewhere.
                self._stopping = asyncio.ensure_future(self.transport.close())
            return
        self.counters["persists"] += 1
        self.counters["entries_persisted"] += len(ready.entries)
        host = self._host
        host.already_persisted = True
        try:
            carry_out(rest, host)
        finally:
            host.already_persisted = False
        self.core.advance(ready)
        if self.core.has_ready():
            self._drive()
        else:
            self._after_readies(ready.wake_at)

    def _after_readies(self, wake_at: float | None) -> None:
        """Answer clients, notice leadership changes, arm the timer."""
        service, transport = self.service_or_raise(), self.transport_or_raise()
        self._watch_leadership(service)
        for to, reply in service.take_replies():
            if to >= CLIENT_CONNECTION_BASE:
                transport.send_to_client(to, reply)
        transport.flush_clients()
        self._schedule(wake_at)

    def _watch_leadership(self, service: ReplicaService) -> None:
        core = self.core
        leader = getattr(core, "leader_id", None)
        if leader != self._leader_seen:
            self._leader_seen = leader
            self.counters["leader_changes"] += 1
            log.info(
                "%s: leader is now %s (term %s)",
                node_name(self.id),
                "unknown" if leader is None else node_name(leader),
                getattr(core, "term", "?"),
            )
        is_leader = bool(getattr(core, "is_leader", False))
        if self._was_leader and not is_leader:
            # Whatever we promised clients is now in the new leader's hands.
            service.abandon_pending()
        self._was_leader = is_leader

    def _schedule(self, wake_at: float | None) -> None:
        if wake_at == self._deadline and (self._timer is not None or wake_at is None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = wake_at
        if wake_at is not None and self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, wake_at - self.clock()), self._on_timer)
