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
  clock), the replica service at ``tick_at`` when a TTL deadline needs a time
  entry (``quorate.state.service``). The node keeps one ``TimerHandle`` for the
  earlier of the two and reschedules it only when that changes; when it
  fires, ``core.tick(now)``, ``service.tick(now)`` and drive.
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
  view, with the transport's smoothed round trip and ping loss to each peer
  (``peer_rtt_ms``, ``peer_ping_loss``); a ``BackupRequest`` goes to the replica service, which takes a
  linearizable image of the store (``quorate.state.backup``); ``Admin`` calls the core's ``propose_conf_change`` or
  ``transfer_leadership`` (``quorate.runtime.aio.admin``). A change the core
  cannot take *yet* (the previous one is still committing, the new leader has
  not committed in its term) is answered ``retry``, so a client's
  ``add_learner`` then ``promote`` simply waits its turn; a change the cluster
  will never take (the node is already a member...) is an ``error``.
  ``AdminChange`` (several members or the quorum sizes at once) goes to the
  group's binding's ``membership`` role too (``Membership.change``); the
  node only keeps the address book.
- *Member addresses.* A membership change carries the leader's address book
  in its configuration entry; the node reads the book from every
  configuration entry it is about to persist (and, at restart, from its
  recovered log), so it can dial members it was never configured with.
- *Security* (``quorate.runtime.aio.security``). Group 0's store hosts the
  key registry and the private votes; every group's cores sign and verify
  through the registry's keyring, so a rotated key verifies from the index
  that activated it and a revoked node's from none. After each applied batch
  the security manager acts on the registry's decisions; from the index at
  which a node is revoked, its messages are dropped before they are stepped
  and its connections closed. Membership changes that add a node go through
  the admission policy and a rate limit per source address. The inbox holds
  at most ``max_inbox`` inputs; more are dropped and counted
  (``inbox_drops``).
- *Cross-group output.* A hosted core may queue messages for *other*
  groups (``NodeHost.take_outbound``: HRB's shard members to the core, the
  core's certificates to shards). After the driver's turns, once no write is
  in flight (so they leave after the fsync of the turn that produced them,
  like the turn's other messages), the node sends each on its group; one
  for this node itself is stepped into its own host, and the node drives
  again.
- *Groups of the protocol's design.* A binding with a ``hosting`` role
  (HRB) builds the node's groups itself, instead of group 0 among all the
  nodes (``quorate.core.binding.HostingContext``); requests of that
  protocol's own clients (``Binding.client_message_types``) go to the state
  of the group they name.
- *Leadership changes.* After each drive the node compares the core's leader
  with the last one seen and logs a change. When this node stops being the
  leader, every client still waiting on it is answered ``retry``: its
  proposal may yet commit under the new leader, and the client's retry keeps
  the same ``(client, seq)``, so the session makes the outcome exactly-once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quorate.core.binding import Binding, HostingContext, MembershipChange
from quorate.core.host import GroupReady, HostedGroup, NodeHost
from quorate.core.protocol import Accepted, Redirect
from quorate.core.ready import Entry, ReadState, Rejection
from quorate.core.service_message import PeerService, ServiceMessage
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError, LocalProtocolError
from quorate.ids import MAX_GROUP_ID, NodeId, node_name, valid_group_id
from quorate.observe.events import decision
from quorate.runtime.aio.admin import (
    CLIENT_REQUEST_TYPES,
    Admin,
    AdminChange,
    AdminReply,
    Status,
    StatusReply,
    decode_address_book,
    encode_address_book,
)
from quorate.runtime.aio.bft import replica_service_class
from quorate.runtime.aio.config import STORAGE_KINDS, format_address, parse_address
from quorate.runtime.aio.profiling import start_profiler
from quorate.runtime.aio.protocols import DEFAULT_KEY_SEED, ProtocolBinding, protocol_binding
from quorate.runtime.aio.security_relay import SecurityRelay
from quorate.runtime.aio.tls import TlsConfig
from quorate.runtime.aio.transport import (
    CLIENT_CONNECTION_BASE,
    Address,
    Transport,
    TransportConfig,
)
from quorate.runtime.driver import HostDriver
from quorate.security.limits import DEFAULT_MAX_INBOX
from quorate.state.backup import BackupRequest
from quorate.state.kv import NO_SESSION, Command, Extension, KVStore, encode_command
from quorate.state.replica_time import ReplicaClock
from quorate.state.service import (
    BFT_COMMAND_TIME_S,
    STATUS_ERROR,
    BftService,
    ClientAttach,
    ClientReply,
    ClientRequest,
    ReplicaService,
)
from quorate.storage import GroupWrite
from quorate.storage.base import Recovered
from quorate.storage.engines import DiskStorage, open_storage

if TYPE_CHECKING:
    from quorate.runtime.aio.security import NodeSecurity, SecuritySettings
    from quorate.security.registry_keyring import RegistryKeyring

log = logging.getLogger("quorate.runtime.aio.node")


INLINE_PERSIST_MAX_ENTRIES = 8
"""A Ready with at most this many entries (and no snapshot) is persisted on the
event loop itself: its fsync is cheaper than handing it to the worker thread
and back. Larger batches go to the worker so input keeps flowing meanwhile."""


def timed_persist(storage: DiskStorage, batch: list[GroupWrite]) -> float:
    """Write ``batch`` durably; the seconds it took (the fsync's share of a turn)."""
    started = time.perf_counter()
    storage.persist_many(batch)
    return time.perf_counter() - started


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


def open_disk_storage(
    kind: str,
    data_dir: Path,
    *,
    hard_state_type: type[Any] | None,
    snapshot_type: type[Any] | None,
) -> DiskStorage:
    """Open ``data_dir`` with the ``kind`` engine (every group of the node in
    one store); ``ConfigError`` when the directory holds the other engine's data."""
    return open_storage(kind, data_dir, hard_state_type=hard_state_type, snapshot_type=snapshot_type)


SHARED_SEED_METRIC = "keys.shared_test_seed"
SHARED_SEED_WARNING = (
    "no keys_dir: signing keys derive from the shared test key seed, for tests only "
    "(whoever knows the seed can sign as any replica); make a key per node with "
    "'quorate keys init' and set keys_dir"
)


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """A group a node hosts besides group 0: its id, protocol, members (node
    ids; this node among them) and the protocol's options."""

    group: int
    protocol: str
    members: tuple[NodeId, ...]
    options: Mapping[str, Any] = dataclass_field(default_factory=dict)

    def validate(self, node: NodeId) -> GroupConfig:
        if not valid_group_id(self.group) or self.group == 0:
            raise ConfigError(f"an extra group's id must be an integer in 1..{MAX_GROUP_ID}, got {self.group!r}")
        if node not in self.members:
            raise ConfigError(f"group {self.group}: this node ({node_name(node)}) is not among its members")
        if len(set(self.members)) != len(self.members):
            raise ConfigError(f"group {self.group}: members must be distinct, got {list(self.members)}")
        return self


class AioNode:
    """A node of a cluster on this process's event loop.

    ``peers`` maps every *other* node to its address; ``data_dir`` holds the
    log and snapshots of every group the node hosts, in the ``storage_kind``
    engine (``"sqlite"`` or ``"wal"``). ``protocol`` is a registered name
    (``"raft"``) or a ``ProtocolBinding``; it runs as group 0 among all the
    nodes, with ``protocol_options`` going to its builder (Raft: the
    ``RaftConfig`` fields). ``groups`` are further groups the node hosts (a
    shard's Raft group and a core's BFT group side by side, say), each among
    its own members.
    """

    service_message_types: tuple[type[WireMessage], ...] = ()
    """Peer messages for a group's *service* (``PeerService``), not its core
    (see ``quorate.core.service_message``): a frame of one of these types
    goes to the service of the group it names."""
    client_message_types: tuple[type[WireMessage], ...] = CLIENT_REQUEST_TYPES
    security_group: int = 0
    """The group whose store hosts the key registry, the private votes and
    the DKG (its log decides them): group 0, among all the nodes."""

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
        groups: Sequence[GroupConfig] = (),
        security: SecuritySettings | None = None,
        max_inbox: int = DEFAULT_MAX_INBOX,
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
        self.groups = [g.validate(node_id) for g in groups]
        if len({g.group for g in self.groups}) != len(self.groups):
            raise ConfigError("the extra groups' ids must be distinct")
        for extra in self.groups:
            unknown = [node_name(m) for m in extra.members if m != node_id and m not in self.peers]
            if unknown:
                raise ConfigError(f"group {extra.group}: no address for {', '.join(unknown)} (add them to peers)")
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
        self.messages_in: Counter[type] = Counter()
        """Peer messages received, by type (for ``/metrics``)."""
        self.messages_out: Counter[type] = Counter()
        """Peer messages sent, by type."""
        self.persist_observer: Callable[[float], None] | None = None
        """Told the seconds of every synced storage write (the fsync histogram)."""
        self.logged_rejections: set[str] = set()
        self.host: NodeHost | None = None
        self.storage: DiskStorage | None = None
        self.transport: Transport | None = None
        self._driver: HostDriver | None = None
        self._inbox: list[tuple[int, WireMessage, int, bool]] = []  # (sender, message, group, from_client)
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leaders: dict[int, tuple[NodeId | None, bool]] = {}
        """Group -> (leader last seen, whether this node led)."""
        self._asked: dict[int, HostedGroup] = {}
        """Groups whose services got client requests since the last turn."""
        self._executor: ThreadPoolExecutor | None = None
        self._failed = False
        self._stopping: asyncio.Future[None] | None = None
        if security is None:
            from quorate.runtime.aio.security import (
                SecuritySettings,  # PyNaCl only when a node runs
            )

            security = SecuritySettings()
        self.security_settings = security.validate()
        self.security: NodeSecurity | None = None
        self.keyring: RegistryKeyring | None = None
        self.max_inbox = max_inbox
        own_requests = self.binding.core.client_message_types
        if own_requests:
            self.client_message_types = (*self.client_message_types, *own_requests)
        self._own_requests = own_requests
        self._hosting_config: Any = None
        """The parsed options of a ``hosting`` binding (set at start)."""

    # ------------------------------------------------------------ group 0's view
    @property
    def core(self) -> Any:
        """Group 0's core (None before ``start``)."""
        group = self.host.get(0) if self.host is not None else None
        return group.core if group is not None else None

    @property
    def service(self) -> ReplicaService | None:
        """Group 0's replica service (None before ``start``)."""
        group = self.host.get(0) if self.host is not None else None
        return group.state if group is not None else None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> Address:
        """Recover from disk, build the groups, listen and dial; return the listen address."""
        self._loop = asyncio.get_running_loop()
        start_profiler(self._loop, node_name(self.id))
        binding = self.binding
        self.storage = open_disk_storage(
            self.storage_kind,
            self.data_dir,
            hard_state_type=binding.hard_state_type,
            snapshot_type=binding.snapshot_type,
        )
        self._start_security()
        assert self.security is not None
        self.host = self._new_host()
        groups, message_types = self._initial_groups()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{node_name(self.id)}-persist"
        )
        self._driver = HostDriver(self.host, self)
        self.transport = Transport(
            self.id,
            self.listen,
            self.peers,
            peer_message_types=tuple(dict.fromkeys((*message_types, SecurityRelay, *self.service_message_types))),
            client_message_types=self.client_message_types,
            on_peer_message=self._on_peer_message,
            on_client_message=self._on_client_message,
            tls=self.tls,
            insecure=self.insecure,
            config=self.transport_config,
            rng=random.Random(self.rng.random()),
            peer_check=self.security.peer_check,
        )
        address = await self.transport.start()
        for hosted in groups:
            self.host.add(hosted)
        self._drive()
        return address

    def _start_security(self) -> None:
        """Load this node's keyring (its own key and the members' keys, as the
        key registry will check them) and its security manager."""
        voters = tuple(sorted({self.id, *self.peers}))
        options = self.protocol_options
        keys_dir = options.get("keys_dir")
        if keys_dir is not None and options.get("key_seed") is not None:
            raise ConfigError("give either keys_dir (a key per node) or key_seed (test clusters), not both")
        from quorate.runtime.aio.security import NodeSecurity
        from quorate.security.registry_keyring import load_keyring

        self.keyring = load_keyring(
            self.id,
            voters,
            keys_dir=keys_dir,
            key_seed=None if keys_dir is not None else str(options.get("key_seed") or DEFAULT_KEY_SEED),
            join=bool(options.get("join", False)),
            policy=self.security_settings.registry,
        )
        self.security = NodeSecurity(
            self.id,
            self.keyring,
            self.security_settings,
            keys_dir=None if keys_dir is None else Path(keys_dir),
            tls_dir=None if self.tls is None else Path(self.tls.cert_file).parent,
            clock=self.clock,
        )
        self.security.attach(self)

    def _new_host(self) -> NodeHost:
        """The node host (a subclass may give it an ``on_unknown_group``; a
        binding that joins groups at run time gets ``_join``)."""
        if self.binding.core.joining is not None:
            return NodeHost(self.id, on_unknown_group=self._join)
        return NodeHost(self.id)

    def _join(self, sender: NodeId, group_id: int, message: Any, now: float) -> HostedGroup | None:
        """``NodeHost.on_unknown_group`` for a binding's ``joining`` role: a
        group a peer's message asks this node to join (HRB's next core)."""
        joining = self.binding.core.joining
        driver = self._driver
        if joining is None or sender not in self.peers or driver is None or driver.persisting:
            return None  # not a peer of ours, or the store is busy (the sender asks again)
        hosted: list[HostedGroup] = list(self.host_or_raise())
        joined: HostedGroup | None = joining(self._hosting_config, self._hosting_context(now), hosted, sender, group_id, message)
        if joined is not None:
            self.counters["groups.joined"] += 1
            log.info("%s: joins group %d (asked by %s)", node_name(self.id), group_id, node_name(sender))
        return joined

    def _initial_groups(self) -> tuple[list[HostedGroup], list[type]]:
        """The groups hosted from the start and every message type their
        cores speak: group 0 among all the nodes, and the extra groups."""
        binding = self.binding
        storage = self.storage_or_raise()
        voters = tuple(sorted({self.id, *self.peers}))
        if binding.core.hosting is not None:
            return self._hosted_groups(binding)
        group = self._build_group(0, binding, voters, self.protocol_options)
        if binding.uses_test_keys(self.protocol_options):
            self.counters[SHARED_SEED_METRIC] = 1
            log.warning("%s: %s", node_name(self.id), SHARED_SEED_WARNING)
        # The config file is the operator's latest word: the log only adds members.
        membership = binding.core.membership
        if membership is not None:
            recovered_entries = storage.recover_group(0, binding.hard_state_type, binding.snapshot_type).entries
            self._learn_members(membership.contexts(recovered_entries), replace=False)
        extras = [
            self._build_group(g.group, protocol_binding(g.protocol), tuple(sorted(g.members)), g.options)
            for g in self.groups
        ]
        message_types: dict[type, None] = dict.fromkeys(binding.message_types)
        for extra in extras:
            assert extra.binding is not None
            message_types.update(dict.fromkeys(extra.binding.message_types))
        return [group, *extras], list(message_types)

    def _hosted_groups(self, binding: ProtocolBinding) -> tuple[list[HostedGroup], list[type]]:
        """The groups a ``hosting`` binding builds for this node, each
        recovered from what the store holds of it."""
        if self.groups:
            raise ConfigError(f"a {binding.name} node hosts the groups its protocol makes, not extra groups")
        if self.protocol_options.get("byzantine") not in (None, "", "none"):
            raise ConfigError(f"a {binding.name} node takes no byzantine option: see its own fault injection")
        hosting = binding.core.hosting
        assert hosting is not None
        self._hosting_config = binding.core.parse_config(binding.protocol_options(self.protocol_options))
        groups: list[HostedGroup] = hosting(self._hosting_config, self._hosting_context(self.clock()))
        return groups, list(binding.message_types)

    def _hosting_context(self, now: float) -> HostingContext:
        """What a ``hosting`` binding builds this node's groups with."""
        assert self.keyring is not None
        storage = self.storage_or_raise()

        def recover(group_id: int, group_binding: Binding) -> Recovered | None:
            registered = {record.group: record for record in storage.groups()}
            record = registered.get(group_id)
            if record is not None and record.protocol != group_binding.name:
                raise ConfigError(
                    f"{self.data_dir} holds {record.protocol} data for group {group_id}, not "
                    f"{group_binding.name}; give {self.binding.name} an empty data_dir"
                )
            if record is None:
                storage.create_group(group_id, group_binding.name)
                return None
            recovered = storage.recover_group(group_id, group_binding.hard_state_type, group_binding.snapshot_type)
            if recovered.hard_state is None and recovered.snapshot is None and not recovered.entries:
                return None
            return recovered

        nodes = tuple(sorted({self.id, *self.peers}))
        registered = tuple(sorted(record.group for record in storage.groups()))
        return HostingContext(self.id, nodes, self.keyring, random.Random(self.rng.random()), now, recover, registered)

    def _build_group(
        self, group_id: int, binding: ProtocolBinding, members: tuple[NodeId, ...], options: Mapping[str, Any]
    ) -> HostedGroup:
        """``group_id``'s core and replica service, from what the store holds of it."""
        storage = self.storage_or_raise()
        registered = {record.group: record for record in storage.groups()}
        record = registered.get(group_id)
        if record is not None and record.protocol != binding.name:
            raise ConfigError(
                f"{self.data_dir} holds {record.protocol} data for group {group_id}; run this node "
                f"with --protocol {record.protocol}, or give {binding.name} an empty data_dir"
            )
        if record is None and group_id != 0:
            storage.create_group(group_id, binding.name)  # group 0 may predate the registry
        try:
            recovered = storage.recover_group(group_id, binding.hard_state_type, binding.snapshot_type)
        except LocalProtocolError as exc:  # typed records of another protocol (a store from before the registry)
            raise ConfigError(f"{self.data_dir} was written by another protocol: {exc}") from None
        fresh = recovered.hard_state is None and recovered.snapshot is None and not recovered.entries
        if record is None and group_id == 0:
            storage.create_group(0, binding.name)
        core = binding.build(
            self.id, members, self.rng, self.clock(), None if fresh else recovered, options, keyring=self.keyring
        )
        service = self._build_service(binding, core, members, options, machines=group_id == self.security_group)
        if recovered.snapshot is not None:
            service.restore(recovered.snapshot)
        pipelines = binding.sends_before_persist(options)
        return HostedGroup(group_id, core, binding.core, state=service, pipelines=pipelines)

    def _build_service(
        self,
        binding: ProtocolBinding,
        core: Any,
        members: tuple[NodeId, ...],
        options: Mapping[str, Any],
        *,
        machines: bool = False,
    ) -> ReplicaService:
        service_options: dict[str, Any] = {}
        replicas = 0
        clock_keys = binding.clock_keys(self.id, members, options, keyring=self.keyring)
        if clock_keys is not None:
            # Byzantine fault tolerant: time from the replicas' signed readings.
            signer, verifier = clock_keys
            service_options["clock"] = ReplicaClock(signer, verifier)
            replicas = len(members)
        return replica_service_class(binding.core.fault_model)(
            core,
            KVStore(replicas=replicas, machines=self.security.machines() if machines and self.security else None),
            read_mode=self.read_mode,
            snapshot_every=self.snapshot_every,
            stamp_clock=time.time,  # log time for TTLs: wall clock, comparable across hosts
            local_clock=self.clock,  # ...and when to wake for a TTL deadline
            **service_options,
        )

    def set_peer_address(self, peer: NodeId, address: Address) -> None:
        self.peers[peer] = address
        if self.transport is not None:
            self.transport.set_peer_address(peer, address)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.security is not None:
            self.security.close()
        in_flight = self._driver is not None and self._driver.persisting
        self._failed = True  # drive no more: the storage is going away
        if self.transport is not None:
            await self.transport.close()
        if in_flight and self._executor is not None:
            # The storage must not close under the worker's transaction.
            await asyncio.get_running_loop().run_in_executor(self._executor, lambda: None)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self.storage is not None:
            self.storage.close()

    @property
    def metrics(self) -> dict[str, int]:
        """Node counters plus the transport's (under ``transport.``) and group 0's protocol counters."""
        out = dict(self.counters)
        if self._driver is not None and self._driver.sent_early:
            out["sent_before_persist"] = self._driver.sent_early
        if self._driver is not None and self._driver.carried_in_flight:
            out["carried_while_persisting"] = self._driver.carried_in_flight
        if self.transport is not None:
            out.update({f"transport.{k}": v for k, v in self.transport.metrics.items()})
            out["transport.peers_connected"] = len(self.transport.connected_peers())
            out["transport.connections_held"] = self.transport.connections_held
        group = self.host.get(0) if self.host is not None else None
        if group is not None and group.binding is not None:
            out.update(group.binding.status(group.core).metrics)
        if self.security is not None:
            out.update(self.security.metrics)
        service = self.service
        if service is not None:
            # Time entries proposed here for TTL deadlines; BFT: forged readings refused.
            out["time_entries"] = service.time_entries
            if isinstance(service, BftService):
                out["rejected_time_entries"] = service.rejected_ticks
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
        service = self.service
        if service is None:
            raise LocalProtocolError("the node is not started")
        return service

    def host_or_raise(self) -> NodeHost:
        if self.host is None:
            raise LocalProtocolError("the node is not started")
        return self.host

    # ------------------------------------------------------------ inputs
    def _on_peer_message(self, sender: NodeId, message: WireMessage, group: int) -> None:
        self._enqueue(sender, message, group, False)

    def _on_client_message(self, connection_id: int, message: WireMessage, group: int) -> None:
        self._enqueue(connection_id, message, group, True)

    def _enqueue(self, sender: int, message: WireMessage, group: int, from_client: bool) -> None:
        if len(self._inbox) >= self.max_inbox:
            self.counters["inbox_drops"] += 1
            return
        self._inbox.append((sender, message, group, from_client))
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._process)

    def _process(self) -> None:
        """Step every input that arrived this loop iteration, then drive once
        (many proposals share one Ready, one transaction and one fsync)."""
        self._scheduled = False
        if self._failed:
            self._inbox.clear()
            return
        inbox, self._inbox = self._inbox, []
        now = self.clock()
        host = self.host_or_raise()
        security = self.security
        assert security is not None
        # Looked up once per batch: with many groups a put brings about four
        # peer messages, each through this loop.
        refuses = security.refuses
        messages_in = self.messages_in
        service_types = self.service_message_types
        step = host.step
        for sender, message, group_id, from_client in inbox:
            if from_client:
                self._on_client_input(sender, message, group_id, now)
                continue
            if refuses(sender):
                self.counters["security.revoked_messages_dropped"] += 1
                continue
            cls = type(message)
            messages_in[cls] += 1
            if isinstance(message, SecurityRelay):
                security.on_relay(NodeId(sender), message, now)
            elif cls in service_types:
                self._to_service(NodeId(sender), message, group_id, now)
            elif step(NodeId(sender), group_id, message, now) is not None:
                self.counters["rejected.unknown group"] += 1
        self.counters["batches"] += 1
        self.counters["inputs"] += len(inbox)
        self._drive()

    def _no_group_reply(self, group_id: int, message: WireMessage) -> WireMessage | None:
        """The answer to a client's request for a group this node does not host."""
        if isinstance(message, ClientRequest):
            return ClientReply(message.client, message.seq, STATUS_ERROR, error=f"no group {group_id} here")
        return None

    def _to_service(self, sender: NodeId, message: WireMessage, group_id: int, now: float) -> None:
        """A peer's service message: to the service of ``group_id``, else dropped and counted."""
        host = self.host_or_raise()
        group = host.get(group_id)
        state = group.state if group is not None else None
        if group is None or not isinstance(state, PeerService):
            self.counters["rejected.service message for no group"] += 1
            return
        state.on_service_message(sender, message, now)
        host.touch(group)
        self._asked[group_id] = group

    def _on_client_input(self, connection: int, message: WireMessage, group_id: int, now: float) -> None:
        host = self.host_or_raise()
        group = host.get(group_id)
        if isinstance(message, Status):
            self.transport_or_raise().send_to_client(connection, self.status(message.seq, group_id), group_id)
            return
        if type(message) in self._own_requests:
            self._own_request(connection, message, group_id, now)
            return
        if group is None:
            self.counters["client_requests_unknown_group"] += 1
            reply = self._no_group_reply(group_id, message)
            if reply is not None:
                self.transport_or_raise().send_to_client(connection, reply, group_id)
            return
        service: ReplicaService = group.state
        security = self.security
        assert security is not None
        if isinstance(message, Admin | ClientRequest) and self._is_admission(message):
            address = self.transport_or_raise().client_address(connection)
            if not security.admission_request_allowed(address, now):
                refusal = f"admission requests from {address} are rate-limited; try again later"
                answer: WireMessage = (
                    AdminReply(message.seq, "error", error=refusal)
                    if isinstance(message, Admin)
                    else ClientReply(message.client, message.seq, STATUS_ERROR, error=refusal)
                )
                self.transport_or_raise().send_to_client(connection, answer, group_id)
                return
        if isinstance(message, ClientRequest):
            self.counters["client_requests"] += 1
            service.on_client_request(NodeId(connection), message, now)
        elif isinstance(message, ClientAttach):
            service.attach(NodeId(connection), message.clients)
        elif isinstance(message, Admin):
            self.transport_or_raise().send_to_client(connection, self._admin(group, message, now), group_id)
        elif isinstance(message, AdminChange):
            changed = self._admin_change(group, message, now)
            self.transport_or_raise().send_to_client(connection, changed, group_id)
        elif isinstance(message, BackupRequest):
            service.request_backup(NodeId(connection), message, now)
        host.touch(group)
        self._asked[group_id] = group

    def _own_request(self, connection: int, message: WireMessage, group_id: int, now: float) -> None:
        """A request of the protocol's own clients (``Binding.client_message_types``),
        to the state of its group; one for group 0 (which such a node does not
        host) to the first hosted group that has a state."""
        host = self.host_or_raise()
        group = host.get(group_id)
        if group is None and group_id == 0:
            group = next((g for g in host if g.state is not None), None)
        if group is None or group.state is None:
            self.counters["client_requests_unknown_group"] += 1
            return
        group.state.on_client_request(NodeId(connection), message, now)
        host.touch(group)
        self._asked[group.id] = group

    @staticmethod
    def _is_admission(message: Admin | ClientRequest) -> bool:
        if isinstance(message, Admin):
            return message.action in ("add", "add_learner")
        from quorate.runtime.aio.security import NodeSecurity

        return NodeSecurity.is_admission_request(message.op)

    def status(self, seq: int = 0, group_id: int = 0) -> StatusReply:
        """This node's view of ``group_id``: role, term, leader, indexes, members, counters."""
        host = self.host
        group = host.get(group_id) if host is not None else None
        members = {int(p): f"{h}:{port}" for p, (h, port) in self.peers.items()}
        if self.transport is not None:
            listen_host, port = self.transport.listen_address
            members[int(self.id)] = f"{listen_host}:{port}"
        peer_rtt_ms: dict[int, float] = {}
        peer_ping_loss: dict[int, float] = {}
        if self.transport is not None:
            peer_rtt_ms = {int(p): ms for p, ms in self.transport.peer_rtt_ms().items()}
            peer_ping_loss = {int(p): share for p, share in self.transport.peer_rtt.loss().items()}
        if group is None or group.binding is None:
            return StatusReply(
                seq=seq, node=int(self.id), protocol=self.binding.name, role="absent", term=0, leader=None,
                commit_index=0, applied_index=0, last_index=0, members=members, metrics=self.metrics,
                peer_rtt_ms=peer_rtt_ms, peer_ping_loss=peer_ping_loss,
            )
        view = group.binding.status(group.core)
        service = group.state
        membership = group.binding.membership
        configuration = membership.configuration(group.core) if membership is not None else None
        return StatusReply(
            seq=seq,
            node=int(self.id),
            protocol=group.binding.name,
            role=view.role,
            term=view.term,
            leader=None if view.leader is None else int(view.leader),
            commit_index=view.commit_index,
            applied_index=service.applied if service is not None else 0,
            last_index=view.last_index,
            members=members,
            # A group other than 0 adds its own protocol counters.
            metrics={**self.metrics, **view.metrics} if group.id else self.metrics,
            # While joint: the incoming voters and learners, with the outgoing
            # voters apart (the group's own status lists every voter of both).
            voters=tuple(int(v) for v in (configuration or view).voters),
            learners=tuple(int(v) for v in (configuration or view).learners),
            outgoing=tuple(int(v) for v in configuration.outgoing) if configuration is not None else (),
            election_quorum=configuration.election_quorum if configuration is not None else 0,
            commit_quorum=configuration.commit_quorum if configuration is not None else 0,
            peer_rtt_ms=peer_rtt_ms,
            peer_ping_loss=peer_ping_loss,
        )

    def _admin(self, group: HostedGroup, request: Admin, now: float) -> AdminReply:
        """A membership change or a leadership transfer, through the binding's membership role."""
        binding = group.binding
        membership = binding.membership if binding is not None else None
        if binding is None or membership is None:
            return AdminReply(request.seq, "error", error="this protocol has no membership changes")
        node = NodeId(request.node)
        leader, _ = binding.leadership(group.core)
        if request.action == "transfer":
            outcome = membership.transfer_leadership(group.core, node, now)
        else:
            if request.action not in membership.actions:
                return AdminReply(request.seq, "error", error=f"unknown action {request.action!r}")
            if leader != self.id:
                return AdminReply(request.seq, "redirect", leader=None if leader is None else int(leader))
            if membership.busy(group.core):
                return AdminReply(
                    request.seq, "retry", error="the previous configuration change is still committing"
                )
            book = self._address_book()
            address: Address | None = None
            if request.action in ("add", "add_learner"):
                try:
                    address = parse_address(request.address, f"the address of {node_name(node)}")
                except ConfigError as exc:
                    return AdminReply(request.seq, "error", error=str(exc))
                fault = self.security.admission_fault(node) if self.security is not None and group.id == 0 else None
                if fault is not None:
                    self.counters["security.admissions_refused"] += 1
                    return AdminReply(request.seq, "error", error=fault)
                if node == self.id:
                    return AdminReply(request.seq, "error", error=f"{node_name(node)} is already a member")
                book[int(node)] = format_address(address)
            elif request.action == "remove":
                book.pop(int(node), None)
            outcome = membership.propose(group.core, request.action, node, encode_address_book(book), now)
            if isinstance(outcome, Accepted) and address is not None:
                # Only now: a refused add must not redirect an existing member's traffic.
                self.set_peer_address(node, address)
        if isinstance(outcome, Accepted):
            decision(
                log, "membership.accepted", "%s: %s %s accepted", node_name(self.id), request.action, node_name(node),
                group=group.id, change=f"{request.action} {node_name(node)}",
            )
            return AdminReply(request.seq, "ok")
        if isinstance(outcome, Redirect):
            hint = outcome.leader
            return AdminReply(request.seq, "redirect", leader=None if hint is None else int(hint))
        return AdminReply(request.seq, "error", error=str(getattr(outcome, "reason", outcome)))

    def _admin_change(self, group: HostedGroup, request: AdminChange, now: float) -> AdminReply:
        """Several members and/or quorum sizes at once, through the binding's
        membership role, with the address book (new members' addresses
        added, removed members' taken out) as the change's context."""
        binding = group.binding
        membership = binding.membership if binding is not None else None
        if binding is None or membership is None:
            return AdminReply(request.seq, "error", error="this protocol has no membership changes")
        book = self._address_book()
        new: dict[NodeId, Address] = {}
        for node, text in (*request.add.items(), *request.add_learners.items()):
            if not text:
                continue
            try:
                address = parse_address(text, f"the address of {node_name(NodeId(node))}")
            except ConfigError as exc:
                return AdminReply(request.seq, "error", error=str(exc))
            new[NodeId(node)] = address
            book[int(node)] = format_address(address)
        for node in request.remove:
            book.pop(int(node), None)
        change = MembershipChange(
            add=tuple(NodeId(n) for n in request.add),
            remove=tuple(NodeId(n) for n in request.remove),
            add_learners=tuple(NodeId(n) for n in request.add_learners),
            quorum=None if request.quorum is None else (int(request.quorum[0]), int(request.quorum[1])),
            transition=request.transition,
        )
        outcome = membership.change(group.core, change, encode_address_book(book), now)
        if isinstance(outcome, Accepted):
            decision(
                log, "membership.accepted", "%s: membership change %s accepted", node_name(self.id), change,
                group=group.id, change=str(change),
            )
            for node, address in new.items():
                if node != self.id:
                    # Only now: a refused change must not redirect a member's traffic.
                    self.set_peer_address(node, address)
            return AdminReply(request.seq, "ok")
        if isinstance(outcome, Redirect):
            hint = outcome.leader
            return AdminReply(request.seq, "redirect", leader=None if hint is None else int(hint))
        return AdminReply(request.seq, "error", error=str(getattr(outcome, "reason", outcome)))

    def _address_book(self) -> dict[int, str]:
        """Every member this node can reach, itself included, as ``host:port``."""
        book = {int(p): format_address(a) for p, a in self.peers.items()}
        book[int(self.id)] = format_address(self.transport_or_raise().listen_address)
        return book

    def _learn_members(self, contexts: list[bytes], *, replace: bool = True) -> None:
        """Take member addresses from the address books membership changes carry.

        With ``replace`` false only unknown members are added (used at
        restart, where the config file knows better than an old entry)."""
        for context in contexts:
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
        self.host_or_raise().tick(self.clock())
        self._drive()

    # ------------------------------------------------------------ driving
    def _drive(self) -> None:
        """Take turns until the host has no work or one waits for its fsync,
        then answer clients, watch leadership and arm the timer."""
        if self._failed:
            return
        driver = self._driver
        assert driver is not None
        driver.drive()
        if self._failed:
            return
        self._send_across()
        if self._failed:
            return
        self._after_turns()

    def _send_across(self) -> None:
        """Messages the groups queued for other groups (see the module
        docstring), once no write is in flight; those for this node are
        stepped into its host and the node drives again."""
        host = self.host_or_raise()
        driver = self._driver
        assert driver is not None
        while not driver.persisting and not self._failed:
            outbound = host.take_outbound()
            if not outbound:
                return
            transport = self.transport_or_raise()
            local = False
            now = self.clock()
            for to, group_id, message in outbound:
                if to == self.id:
                    local = True
                    if host.step(to, group_id, message, now) is not None:
                        self.counters["rejected.unknown group"] += 1
                else:
                    self.messages_out[type(message)] += 1
                    transport.send(to, message, group_id)
                self.counters["cross_group_messages"] += 1
            if not local:
                return
            driver.drive()

    # HostEffects ----------------------------------------------------------
    def persist(self, writes: list[GroupReady], sync: bool) -> bool:
        """One write for every group of the turn: on the loop when small (its
        fsync costs less than two thread hand-offs), else on the worker
        thread, so the loop keeps reading and the next turn grows meanwhile."""
        storage = self.storage_or_raise()
        batch = []
        entries = 0
        snapshot = False
        for group, ready in writes:
            batch.append(GroupWrite(group.id, ready.hard_state, ready.entries, ready.snapshot))
            entries += len(ready.entries)
            snapshot = snapshot or ready.snapshot is not None
            membership = group.binding.membership if group.binding is not None else None
            if membership is not None and ready.entries:
                self._learn_members(membership.contexts(ready.entries))
        if not sync:
            # Only state a crash may lose (a commit index): written unsynced,
            # it rides along with the next synced write.
            storage.persist_many(batch, durable=False)
            self.counters["deferred_hard_states"] += 1
            return True
        if entries <= INLINE_PERSIST_MAX_ENTRIES and not snapshot:
            try:
                seconds = timed_persist(storage, batch)
            except Exception as exc:
                self._persist_failed(exc)
                return True
            self._persisted_counts(entries, inline=True, seconds=seconds)
            return True
        loop, executor = self._loop, self._executor
        assert loop is not None and executor is not None
        future = loop.run_in_executor(executor, timed_persist, storage, batch)
        future.add_done_callback(lambda done: self._persisted(done, entries))
        return False

    def _persisted(self, future: asyncio.Future[float], entries: int) -> None:
        """Back on the loop after the worker's fsync: finish the turn, drive on."""
        if self._failed:
            return
        if future.cancelled() or future.exception() is not None:
            self._persist_failed(None if future.cancelled() else future.exception())
            return
        self._persisted_counts(entries, inline=False, seconds=future.result())
        driver = self._driver
        assert driver is not None
        driver.persisted()
        self._send_across()  # what that turn queued for other groups, now durable
        # Drive even when no group had work: inputs that arrived during the
        # fsync may have moved a deadline (a PBFT primary's batch timer).
        self._drive()

    def _persisted_counts(self, entries: int, *, inline: bool, seconds: float) -> None:
        if self.persist_observer is not None:
            self.persist_observer(seconds)
        self.counters["persists"] += 1
        self.counters["entries_persisted"] += entries
        if inline:
            self.counters["inline_persists"] += 1

    def _persist_failed(self, exc: BaseException | None) -> None:
        """Nothing more may be acknowledged: what was promised may not be durable."""
        self._failed = True
        log.critical("%s: persisting failed; the node stops serving", node_name(self.id), exc_info=exc)
        if self.transport is not None:
            # Peers and clients see the connections drop and go elsewhere.
            self._stopping = asyncio.ensure_future(self.transport.close())

    def send(self, group: HostedGroup, messages: list[tuple[NodeId, Any]]) -> None:
        send = self.transport_or_raise().send
        messages_out = self.messages_out
        gid = group.id
        for to, message in messages:
            messages_out[type(message)] += 1
            send(to, message, gid)

    def restore(self, group: HostedGroup, snapshot: Any) -> None:
        if group.state is not None:
            group.state.restore(snapshot)
        decision(log, "snapshot.installed", "%s: group %d installed a snapshot", node_name(self.id), group.id, group=group.id)
        if group.id == self.security_group and self.security is not None:
            self.security.resync()

    def apply(self, group: HostedGroup, entries: list[Entry]) -> None:
        if group.state is not None:
            group.state.apply_all(entries)
        self.counters["entries_applied"] += len(entries)
        if group.id == self.security_group and self.security is not None:
            self.security.after_apply()

    # SecurityHost ---------------------------------------------------------
    def propose_extension(self, machine: str, data: bytes) -> Any:
        """Propose a sessionless ``Extension`` command to the security group
        (group 0), stamped as the group's service stamps its own commands;
        drive soon after."""
        host = self.host_or_raise()
        group = host.get(self.security_group)
        assert group is not None
        stamp = BFT_COMMAND_TIME_S if isinstance(group.state, BftService) else time.time()
        command = encode_command(Command(NO_SESSION, 0, Extension(machine, data), stamp))
        outcome = host.propose(self.security_group, command, self.clock())
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._process)
        return outcome

    def send_relay(self, to: NodeId, message: SecurityRelay) -> None:
        self.transport_or_raise().send(to, message, self.security_group)

    def reload_tls(self, tls: TlsConfig) -> None:
        self.tls = tls
        self.transport_or_raise().set_tls(tls)

    def recheck_peers(self) -> None:
        self.transport_or_raise().recheck_peers()

    def stop_serving(self, reason: str) -> None:
        """This node was revoked: take no more input, close every connection."""
        self._failed = True
        if self.transport is not None:
            self._stopping = asyncio.ensure_future(self.transport.close())

    def held_evidence(self) -> Sequence[Any]:
        """Group 0's proofs of misbehaviour (none for a crash-fault protocol)."""
        evidence = self.binding.core.evidence
        group = None if evidence is None or self.host is None else self.host.get(0)
        return () if evidence is None or group is None else evidence(group.core)

    def read_ready(self, group: HostedGroup, read: ReadState) -> None:
        if group.state is not None:
            group.state.read_ready(read)

    def rejected(self, group: HostedGroup, rejection: Rejection) -> None:
        self.counters[f"rejected.{rejection.reason}"] += 1
        if rejection.reason not in self.logged_rejections:
            self.logged_rejections.add(rejection.reason)
            decision(
                log,
                "input.rejected",
                "%s dropped %s from %s: %s",
                node_name(self.id),
                rejection.message_type,
                node_name(rejection.sender),
                rejection.reason,
                level=logging.WARNING,
                group=group.id,
                message_type=rejection.message_type,
                sender=int(rejection.sender),
                reason=rejection.reason,
            )

    # ------------------------------------------------------------ after turns
    def _after_turns(self) -> None:
        """Answer clients, notice leadership changes, arm the timer."""
        host = self.host_or_raise()
        transport = self.transport_or_raise()
        turned = host.turned
        groups = {group.id: group for group in turned}
        turned.clear()
        only = host.only
        if only is not None:
            groups[only.id] = only
        if self._asked:
            groups.update(self._asked)
            self._asked.clear()
        leaders = self._leaders
        me = self.id
        for group in groups.values():
            binding = group.binding
            if binding is not None:
                # _watch_leadership(group), when the leader is the one last seen:
                # nothing to log or abandon (most groups, most turns).
                leader = binding.leadership(group.core)[0]
                seen = leaders.get(group.id)
                if seen is None or seen[0] != leader or seen[1] != (leader == me):
                    self._watch_leadership(group)
            service = group.state
            if service is None or not service.has_replies():
                continue
            for to, reply in service.take_replies():
                if to >= CLIENT_CONNECTION_BASE:
                    transport.send_to_client(to, reply, group.id)
                elif type(reply) is ServiceMessage:
                    # To another group's service: on a peer, or on this node.
                    if to == self.id:
                        self._enqueue(to, reply.message, reply.group, False)
                    else:
                        transport.send(to, reply.message, reply.group)
        transport.flush_clients()
        self._schedule(host.wake_at())

    def _watch_leadership(self, group: HostedGroup) -> None:
        binding = group.binding
        if binding is None:
            return
        leader, term = binding.leadership(group.core)
        previous, was_leader = self._leaders.get(group.id, (None, False))
        is_leader = leader == self.id
        if leader != previous:
            self.counters["leader_changes"] += 1
            decision(
                log,
                "leader.changed",
                "%s: leader is now %s (term %s)%s",
                node_name(self.id),
                "unknown" if leader is None else node_name(leader),
                term,
                f" in group {group.id}" if group.id else "",
                group=group.id,
                leader=None if leader is None else int(leader),
                term=term,
            )
        if was_leader and not is_leader and group.state is not None:
            # Whatever we promised clients is now in the new leader's hands.
            group.state.abandon_pending()
        self._leaders[group.id] = (leader, is_leader)

    def _schedule(self, wake_at: float | None) -> None:
        if wake_at == self._deadline and (self._timer is not None or wake_at is None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = wake_at
        if wake_at is not None and self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, wake_at - self.clock()), self._on_timer)
