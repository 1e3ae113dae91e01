"""One real node: a protocol core, durable storage, the KV service and a
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
  order says, unless a BFT binding was given ``send_before_persist`` (the
  trade-off is in ``quorate.runtime.aio.protocols``): then all of a Ready's
  messages leave before its fsync, while applying, client replies and the
  next Ready still wait for it.
- *Time.* The core asks to be woken at ``ready.wake_at`` (the node's monotonic
  clock). The node keeps one ``TimerHandle`` and reschedules it only when the
  deadline changes; when it fires, ``core.tick(now)`` and drive.
- *Clients.* Replies the service produces go back on the connection their
  request came from (client connection ids never collide with node ids).
- *Storage.* ``storage_kind`` picks the engine: ``"sqlite"``
  (``SqliteStorage``, the default) or ``"wal"`` (``WalStorage``, a segmented
  write-ahead log with one ``fdatasync`` per persist). A data directory
  written by one engine is refused by the other rather than read as empty,
  which would make the node forget its term, vote and log.
- *One protocol per data directory.* The directory records the protocol
  that wrote it (``PROTOCOL``); a node of another protocol refuses it with
  one line instead of misreading its state.
- *Test keys.* A PBFT or HotStuff node without ``keys_dir`` signs with keys
  derived from a shared seed; it warns at start and reports
  ``keys.shared_test_seed`` in its status counters.
- *Restart.* The core is built from the storage's ``recover()``; a recovered
  snapshot is restored into the state machine before the core runs, and the
  core replays committed entries above it.
- *Status and administration.* ``Status`` is answered at once from the core's
  view; ``Admin`` calls the core's ``propose_conf_change`` or
  ``transfer_leadership`` (``quorate.runtime.aio.admin``). A change the core
  cannot take *yet* (the previous one is still committing, the new leader has
  not committed in its term) is answered ``retry``, so a client's
  ``add_learner`` then ``promote`` simply waits its turn; a change the cluster
  will never take (the node is already a member...) is an ``error``.
- *Member addresses.* A membership change carries the leader's address book
  in its configuration entry; the node reads the book from every
  configuration entry it is about to persist (and, at restart, from its
  recovered log), so it can dial members it was never configured with.
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
from quorate.errors import ConfigError, LocalProtocolError
from quorate.ids import NodeId, node_name
from quorate.runtime.aio.admin import (
    CLIENT_REQUEST_TYPES,
    Admin,
    AdminReply,
    Status,
    StatusReply,
    decode_address_book,
    encode_address_book,
)
from quorate.runtime.aio.bft import BFT_PROTOCOLS, bft_metrics, replica_service_class
from quorate.runtime.aio.config import STORAGE_KINDS, format_address, parse_address
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
from quorate.state.service import ClientAttach, ClientRequest, ReplicaService
from quorate.storage.sqlite import DB_FILE_NAME, SqliteStorage
from quorate.storage.wal import WAL_DIR_NAME, WalStorage

DiskStorage = SqliteStorage | WalStorage

log = logging.getLogger("quorate.runtime.aio.node")


INLINE_PERSIST_MAX_ENTRIES = 8
"""A Ready with at most this many entries (and no snapshot) is persisted on the
event loop itself: its fsync is cheaper than handing it to the worker thread
and back. Larger batches go to the worker so input keeps flowing meanwhile."""


def event_loop_factory(tls: bool = False) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when it is installed (faster sockets), else asyncio's.

    With TLS the node keeps asyncio's loop: the acceptor upgrades a connection
    to TLS itself (to count and log refused handshakes) and relies on the
    dialer's ClientHello staying in the kernel until then; uvloop's transport
    may read it into the plain buffer first, which stalls the handshake."""
    if tls:
        return asyncio.new_event_loop
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


def open_disk_storage(
    kind: str,
    data_dir: Path,
    *,
    hard_state_type: type[Any] | None,
    snapshot_type: type[Any] | None,
) -> DiskStorage:
    """Open ``data_dir`` with the ``kind`` engine; ``ConfigError`` when the
    directory already holds the other engine's data."""
    other = {"sqlite": data_dir / WAL_DIR_NAME, "wal": data_dir / DB_FILE_NAME}[kind]
    if other.exists() and (other.is_file() or any(other.iterdir())):
        raise ConfigError(
            f"{data_dir} holds data of the other storage engine ({other.name}); "
            f"set storage to match it, or use an empty data_dir for {kind!r}"
        )
    if kind == "wal":
        return WalStorage(data_dir, hard_state_type=hard_state_type, snapshot_type=snapshot_type)
    return SqliteStorage(data_dir, hard_state_type=hard_state_type, snapshot_type=snapshot_type)


PROTOCOL_MARKER = "PROTOCOL"
"""A file in the data directory naming the protocol whose state it holds."""
SHARED_SEED_METRIC = "keys.shared_test_seed"
SHARED_SEED_WARNING = (
    "no keys_dir: signing keys derive from the shared test key seed, for tests only "
    "(whoever knows the seed can sign as any replica); make a key per node with "
    "'quorate keys init' and set keys_dir"
)


def check_data_protocol(data_dir: Path, protocol: str) -> None:
    """``ConfigError`` when ``data_dir`` holds another protocol's state: its
    hard state and log would not decode, or worse, be misread."""
    try:
        written_by = (data_dir / PROTOCOL_MARKER).read_text(encoding="utf-8").strip()
    except OSError:
        return  # a fresh directory, or one from before the marker
    if written_by and written_by != protocol:
        raise ConfigError(
            f"{data_dir} holds {written_by} data; run this node with --protocol {written_by} "
            f"(or protocol = \"{written_by}\"), or give {protocol} an empty data_dir"
        )


def mark_data_protocol(data_dir: Path, protocol: str) -> None:
    marker = data_dir / PROTOCOL_MARKER
    if not marker.exists():
        partial = marker.with_suffix(".tmp")
        partial.write_text(protocol + "\n", encoding="utf-8")
        partial.replace(marker)


class AioNode:
    """A node of a cluster on this process's event loop.

    ``peers`` maps every *other* voter to its address; ``data_dir`` holds the
    log and snapshots, in the ``storage_kind`` engine (``"sqlite"`` or
    ``"wal"``). ``protocol`` is a registered name (``"raft"``) or a
    ``ProtocolBinding``; ``protocol_options`` go to its builder (Raft: the
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
        storage_kind: str = "sqlite",
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if storage_kind not in STORAGE_KINDS:
            raise ConfigError(
                f"storage must be one of {', '.join(STORAGE_KINDS)}, got {storage_kind!r}"
            )
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
        self.storage_kind = storage_kind
        self.clock = clock
        self.rng = rng or random.Random()
        self.counters: Counter[str] = Counter()
        self.logged_rejections: set[str] = set()
        self.core: Any = None
        self.storage: DiskStorage | None = None
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
        self._early_despite_hard_state = False
        self._waiting: list[Ready] = []
        """Readies taken while an fsync was in flight (``send_before_persist``
        only): their messages are sent, the rest waits for one merged persist."""
        self._failed = False
        self._stopping: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> Address:
        """Recover from disk, build the core, listen and dial; return the listen address."""
        self._loop = asyncio.get_running_loop()
        binding = self.binding
        check_data_protocol(self.data_dir, binding.name)
        self.storage = open_disk_storage(
            self.storage_kind,
            self.data_dir,
            hard_state_type=binding.hard_state_type,
            snapshot_type=binding.snapshot_type,
        )
        try:
            recovered = self.storage.recover()
        except LocalProtocolError as exc:  # typed records of another protocol (no marker yet)
            raise ConfigError(f"{self.data_dir} was written by another protocol: {exc}") from None
        mark_data_protocol(self.data_dir, binding.name)
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
        if binding.name in BFT_PROTOCOLS and "keys_dir" not in self.protocol_options:
            self.counters[SHARED_SEED_METRIC] = 1
            log.warning("%s: %s", node_name(self.id), SHARED_SEED_WARNING)
        self.service = replica_service_class(binding.name)(
            self.core,
            KVStore(),
            read_mode=self.read_mode,
            snapshot_every=self.snapshot_every,
            stamp_clock=time.time,  # log time for TTLs: wall clock, comparable across hosts
        )
        if recovered.snapshot is not None:
            self.service.restore(recovered.snapshot)
        self._last_hard_state = recovered.hard_state
        self._early_types = _early_message_types(binding.name)
        self._early_despite_hard_state = False
        if binding.sends_before_persist(self.protocol_options):
            # Opted in (BFT only, see quorate.runtime.aio.protocols): every
            # message may leave before the fsync, whatever the hard state holds.
            self._early_types = binding.message_types
            self._early_despite_hard_state = True
        # The config file is the operator's latest word: the log only adds members.
        self._learn_members(recovered.entries, replace=False)
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

    def storage_or_raise(self) -> DiskStorage:
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
                    self.counters["client_requests"] += 1
                    service.on_client_request(NodeId(sender), message, now)
                elif isinstance(message, ClientAttach):
                    service.attach(NodeId(sender), message.clients)
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
            voters=tuple(sorted(int(v) for v in getattr(core, "voters", ()))),
            learners=tuple(sorted(int(v) for v in getattr(core, "learners", ()))),
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
        """Propose ``request``'s membership change with the address book attached."""
        propose = getattr(self.core, "propose_conf_change", None)
        if propose is None:
            return AdminReply(request.seq, "error", error="this protocol has no membership changes")
        from quorate.core.protocol import Accepted
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
        core = self.core
        if not core.is_leader:
            leader = core.leader_id
            return AdminReply(request.seq, "redirect", leader=None if leader is None else int(leader))
        if self._conf_change_must_wait():
            return AdminReply(
                request.seq, "retry", error="the previous configuration change is still committing"
            )
        node = NodeId(request.node)
        book = self._address_book()
        address: Address | None = None
        if request.action in ("add", "add_learner"):
            try:
                address = parse_address(request.address, f"the address of {node_name(node)}")
            except ConfigError as exc:
                return AdminReply(request.seq, "error", error=str(exc))
            if node == self.id:
                return AdminReply(request.seq, "error", error=f"{node_name(node)} is already a member")
            book[int(node)] = format_address(address)
        elif request.action == "remove":
            book.pop(int(node), None)
        outcome = propose(ConfChange(kind, node, encode_address_book(book)), now)
        if isinstance(outcome, Accepted) and address is not None:
            # Only now: a refused add must not redirect an existing member's traffic.
            self.set_peer_address(node, address)
        return outcome

    def _conf_change_must_wait(self) -> bool:
        """True while the core would refuse any change for now (thesis §4.1:
        one change at a time, and a new leader first commits in its term)."""
        core = self.core
        if getattr(core, "transfer_target", None) is not None:
            return True
        commit = int(core.commit_index)
        if core.term_at(commit) != core.term:
            return True
        from quorate.raft.messages import EntryKind

        for index in range(commit + 1, int(core.last_index) + 1):
            entry = core.entry_at(index)
            if entry is not None and entry.kind == EntryKind.CONFIG:
                return True
        return False

    def _address_book(self) -> dict[int, str]:
        """Every member this node can reach, itself included, as ``host:port``."""
        book = {int(p): format_address(a) for p, a in self.peers.items()}
        book[int(self.id)] = format_address(self.transport_or_raise().listen_address)
        return book

    def _learn_members(self, entries: list[Entry], *, replace: bool = True) -> None:
        """Take addresses from the address books of configuration entries.

        With ``replace`` false only unknown members are added (used at
        restart, where the config file knows better than an old entry)."""
        if self.binding.name != "raft":
            return
        from quorate.raft.messages import EntryKind
        from quorate.raft.node import decode_conf_state

        for entry in entries:
            if entry.kind != EntryKind.CONFIG:
                continue
            try:
                context = decode_conf_state(entry.data).context
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # the core rejects and counts a malformed entry itself
            for member, text in decode_address_book(context).items():
                peer = NodeId(member)
                if peer == self.id or (not replace and peer in self.peers):
                    continue
                try:
                    address = parse_address(text, "member address")
                except ConfigError:
                    continue
                if self.peers.get(peer) != address:
                    log.info("%s: %s is at %s", node_name(self.id), node_name(peer), text)
                    self.set_peer_address(peer, address)

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
        if self._failed:
            return
        if self._in_flight is not None:
            if self._early_despite_hard_state:
                self._take_while_persisting()
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

    def _take_while_persisting(self) -> None:
        """``send_before_persist``: while an fsync is in flight, take the
        core's Readies anyway and send their messages at once, so a protocol
        phase does not wait for the previous phase's fsync. Everything else
        (persist, apply, client replies, ``advance``) waits: the Readies are
        merged into the next persist, which starts when this one ends, so
        commands still share fsyncs and are applied in order. Only cores
        whose ``ready()`` hands all its work over (PBFT, HotStuff: their
        ``advance`` does nothing) are driven this way."""
        core, send = self.core, self.transport_or_raise().send
        while core.has_ready():
            ready = core.ready()
            for to, message in (*ready.early_messages, *ready.messages):
                send(to, message)
            self.counters["sent_before_persist"] += len(ready.early_messages) + len(ready.messages)
            self._waiting.append(dataclasses.replace(ready, messages=[], early_messages=[]))
        if self._waiting:
            self._schedule(self._waiting[-1].wake_at)

    def _merge_waiting(self) -> Ready | None:
        """The Readies taken during the last fsync, as one (latest hard state,
        all entries and commits in order), or None if there were none."""
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return None
        hard_states = [r.hard_state for r in waiting if r.hard_state is not None]
        snapshots = [r.snapshot for r in waiting if r.snapshot is not None]
        return Ready(
            messages=[],
            hard_state=hard_states[-1] if hard_states else None,
            entries=[e for r in waiting for e in r.entries],
            snapshot=snapshots[-1] if snapshots else None,
            committed=[e for r in waiting for e in r.committed],
            reads=[x for r in waiting for x in r.reads],
            wake_at=waiting[-1].wake_at,
            rejected=[x for r in waiting for x in r.rejected],
        )

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
        self._learn_members(ready.entries)
        if ready.early_messages:
            send = self.transport_or_raise().send
            for to, message in ready.early_messages:
                send(to, message)
            self.counters["sent_before_persist"] += len(ready.early_messages)
            ready = dataclasses.replace(ready, early_messages=[])
        early_types = self._early_types
        late = ready.messages
        if (
            early_types
            and ready.messages
            and (
                self._early_despite_hard_state
                or ready.hard_state is None
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
        if len(ready.entries) <= INLINE_PERSIST_MAX_ENTRIES and ready.snapshot is None:
            # A small write: the fsync costs less than two thread hand-offs, so
            # it runs here; large batches go to the worker so the loop keeps
            # reading (and the next batch grows) while the disk works.
            future = loop.create_future()
            try:
                storage.persist(ready.hard_state, ready.entries, ready.snapshot)
            except Exception as exc:  # reported through the future, as from the worker
                future.set_exception(exc)
            else:
                future.set_result(None)
            self.counters["inline_persists"] += 1
        else:
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
        wake_at = ready.wake_at
        merged = self._merge_waiting()
        if merged is not None:
            # Their messages already left; advance() of these cores is a no-op.
            wake_at = merged.wake_at
            if self._needs_fsync(merged):
                self._start_persist(merged)
                self._take_while_persisting()
                self._after_readies(self._waiting[-1].wake_at if self._waiting else wake_at)
                return
            if merged.hard_state is not None:
                self._last_hard_state = merged.hard_state
            carry_out(merged, self._host)
        # Drive even when the core has nothing to do: inputs that arrived
        # during the fsync may have moved its deadline (a PBFT primary's batch
        # timer), and only a fresh Ready tells. Without this the timer would
        # stay armed for the old deadline and the batch would wait for the
        # next unrelated wake-up.
        self._drive()

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
