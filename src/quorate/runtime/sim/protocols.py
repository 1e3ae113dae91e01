"""Protocol glue: how to build each protocol's nodes for the simulator.

Theory of operation. The engine, network, nodes and workload are generic over
``ProtocolCore``; everything that names a particular protocol lives here, in a
registry mapping a name to a ``ProtocolSpec`` factory:

- how to build a core for a node (fresh, or from what storage recovered);
- the replica service on top of it (``quorate.state.service.ReplicaService``
  with a ``quorate.state.kv.KVStore``, the same for every protocol);
- the online safety monitor, if the protocol has one (called after every step
  of every node; an ``InvariantViolation`` stops the run);
- how to see who leads in which term (to count leader changes);
- how many replicas may be crashed at once while staying live;
- for the BFT protocols (PBFT, HotStuff): which replicas are Byzantine (the
  ``SpecContext`` the simulation passes in) and with which behaviour, the
  cost-model signatures (``quorate.crypto.costmodel``: one ``CpuMeter`` per
  replica shared by its signer and verifier, which the node charges to its
  CPU after each step), the agreement monitor over honest replicas and the
  client codec (``runtime.sim.bft``).

Factories import their protocol lazily, so a protocol that is not installed
(or not written yet) only fails when asked for, with a ``ConfigError``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quorate.core.protocol import ProtocolCore
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.runtime.sim.bft import session_id, session_process
from quorate.runtime.sim.node import Replica
from quorate.runtime.sim.workload import Operation, ReplyView
from quorate.state.kv import Cas, Get, KVStore, Put, decode_result, encode_op
from quorate.state.service import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_REDIRECT,
    STATUS_RETRY,
    ClientReply,
    ClientRequest,
    ReplicaService,
)
from quorate.storage.base import Recovered

BuildCore = Callable[[NodeId, tuple[NodeId, ...], random.Random, float, "Recovered | None"], ProtocolCore]


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """Everything the simulator needs to know about one protocol."""

    name: str
    build_core: BuildCore
    build_replica: Callable[[ProtocolCore], Replica]
    max_crashed: Callable[[int], int]
    """Replicas that may be down at once (out of n) with the cluster still live."""
    new_monitor: Callable[[], Callable[[ProtocolCore, float], None] | None] | None = None
    """Starts the safety monitor; returns the check to run after every step,
    or None when the monitor checks elsewhere (BFT: as entries execute)."""
    leader_term: Callable[[ProtocolCore], int | None] | None = None
    """The term in which this core leads, or None if it does not lead."""
    message_types: tuple[type, ...] = field(default=())
    meter_for: Callable[[NodeId], Any] | None = None
    """The CPU meter (``spent_s``) of a node's signer and verifier, if any."""
    behaviours: tuple[str, ...] = ()
    """Byzantine behaviours this protocol can run (empty: crash faults only)."""
    max_byzantine: Callable[[int], int] = field(default=lambda n: 0)
    """Byzantine replicas (out of n) the protocol tolerates."""
    reply_quorum: Callable[[int], int] = field(default=lambda n: 1)
    """Matching replies from distinct replicas a client needs (BFT: f + 1);
    above 1 the client sends to the primary f + 1 replies named, else to
    every replica (``runtime.sim.workload``)."""
    client_codec: Callable[[], Any] | None = None
    """Builds the client codec; ``None``: ``ServiceCodec``."""


@dataclass(frozen=True, slots=True)
class SpecContext:
    """What a simulation tells a protocol factory besides its options."""

    byzantine: Mapping[NodeId, str] = field(default_factory=dict)
    """Replica -> behaviour, already drawn (no ``random`` left)."""
    seed: int = 0
    """The run's seed (cost-model keys derive from it)."""
    client_endpoints: range = range(0)
    """Network ids of the run's client endpoints: where BFT replicas may
    send the answers to the commands they execute."""
    replicas: int = 0
    """Replicas in the group (BFT: a store's time rounds count on it)."""


class ServiceCodec:
    """Workload operations <-> ``quorate.state.service`` client messages.

    Values are the workload's integers written as decimal strings (the store
    holds strings); reads convert them back. A ``retry`` reply re-sends the
    same session and number to the same node (the store's sessions make it
    exactly-once); an ``error`` means the core refused the command, so it
    certainly did not take effect. The session id is the workload's process
    plus one (``endpoint``, the sending endpoint, is not needed: the replica
    that received a request answers it)."""

    def request(self, client: int, seq: int, op: Operation, endpoint: int = 0) -> ClientRequest:
        if op.f == "write":
            kv_op: Put | Get | Cas = Put(op.key, str(op.value))
        elif op.f == "read":
            kv_op = Get(op.key)
        else:
            expected, new = op.value
            kv_op = Cas(op.key, None if expected is None else str(expected), str(new))
        # Session 0 means "no session" to the store, so sessions start at 1.
        return ClientRequest(client + 1, seq, encode_op(kv_op))

    def reply(self, message: Any) -> ReplyView | None:
        if type(message) is not ClientReply:
            return None
        client = message.client - 1
        status = message.status
        if status == STATUS_OK:
            result = decode_result(message.result)
            if result.ok:
                value = None if result.value is None else _as_int(result.value)
                return ReplyView(client, message.seq, "ok", value)
            if result.error is None:
                return ReplyView(client, message.seq, "fail")  # cas found another value
            return ReplyView(client, message.seq, "unknown")
        if status == STATUS_REDIRECT:
            return ReplyView(client, message.seq, "redirect", leader=message.leader)
        if status == STATUS_RETRY:
            return ReplyView(client, message.seq, "redirect", leader=None)
        if status == STATUS_ERROR:
            return ReplyView(client, message.seq, "fail")
        return ReplyView(client, message.seq, "unknown")


def _as_int(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _service(read_mode: str) -> Callable[[ProtocolCore], Replica]:
    def build(core: ProtocolCore) -> Replica:
        return ReplicaService(core, KVStore(), read_mode=read_mode)

    return build


def _no_byzantine(name: str, context: SpecContext) -> None:
    if context.byzantine:
        raise ConfigError(f"protocol {name!r} tolerates crash faults only; --byzantine needs pbft or hotstuff")


def _primary(options: Mapping[str, Any], context: SpecContext) -> ProtocolSpec:
    _no_byzantine("primary", context)
    from quorate.runtime.sim.primary import PRIMARY_MESSAGE_TYPES, PRIMARY_TERM, PrimaryBackupNode

    heartbeat_s = float(options.get("heartbeat_s", 0.05))
    unknown = set(options) - {"heartbeat_s"}
    if unknown:
        raise ConfigError(f"protocol 'primary' has no option(s) {', '.join(sorted(unknown))}")

    def build(node: NodeId, voters: tuple[NodeId, ...], rng: random.Random, now: float, rec: Recovered | None) -> ProtocolCore:
        return PrimaryBackupNode(node, voters, rng=rng, now=now, recovered=rec, heartbeat_s=heartbeat_s)

    def leader_term(core: ProtocolCore) -> int | None:
        return PRIMARY_TERM if getattr(core, "is_primary", False) else None

    return ProtocolSpec(
        name="primary",
        build_core=build,
        build_replica=_service("log"),
        max_crashed=lambda n: 0,  # the primary is a single point of failure
        leader_term=leader_term,
        message_types=PRIMARY_MESSAGE_TYPES,
    )


def _raft(options: Mapping[str, Any], context: SpecContext) -> ProtocolSpec:
    _no_byzantine("raft", context)
    try:
        from quorate.raft import RaftConfig, RaftNode
    except ImportError as exc:
        raise ConfigError(f"protocol 'raft' is not available: {exc}") from None
    read_mode = str(options.get("read_mode", "read_index"))
    try:
        config = RaftConfig(**dict(options)).validate()
    except TypeError as exc:
        raise ConfigError(f"bad Raft option: {exc}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    def build(node: NodeId, voters: tuple[NodeId, ...], rng: random.Random, now: float, rec: Recovered | None) -> ProtocolCore:
        core: ProtocolCore = RaftNode(node, voters, config=config, rng=rng, now=now, recovered=rec)
        return core

    def new_monitor() -> Callable[[ProtocolCore, float], None]:
        from quorate.raft.invariants import RaftSafetyMonitor

        monitor = RaftSafetyMonitor()

        def check(core: ProtocolCore, now: float) -> None:
            monitor.check(core, now)  # type: ignore[arg-type]  # only RaftNodes are built here

        return check

    def leader_term(core: ProtocolCore) -> int | None:
        # Runs after every input of every node: plain attribute reads, since
        # only RaftNodes are built here.
        if core.is_leader:  # type: ignore[attr-defined]
            term: int = core.term  # type: ignore[attr-defined]
            return term
        return None

    try:
        from quorate.raft import RAFT_MESSAGE_TYPES

        types: tuple[type, ...] = tuple(RAFT_MESSAGE_TYPES)
    except ImportError:
        types = ()
    service_read_mode = "log" if read_mode == "log" else "read_index"
    return ProtocolSpec(
        name="raft",
        build_core=build,
        build_replica=_service(service_read_mode),
        max_crashed=lambda n: (n - 1) // 2,
        new_monitor=new_monitor,
        leader_term=leader_term,
        message_types=types,
    )


class BftServiceCodec(ServiceCodec):
    """``ServiceCodec`` for BFT clients.

    - The session id carries the sending endpoint
      (``runtime.sim.bft.session_id``): every replica answers the commands
      it executes, most of which it learnt from the primary, not from the
      client, and the command is all it has to go on.
    - A result keeps the primary its replica named (``ReplyView.leader``),
      which the workload follows once f + 1 replies agree on it.
    - A refusal (``error``, ``redirect``, ``retry``) is "ask elsewhere",
      never a result, since any one replica may refuse a command another
      one ordered (e.g. a duplicate whose result it no longer holds). Only
      results count towards the f + 1 matching replies."""

    def request(self, client: int, seq: int, op: Operation, endpoint: int = 0) -> ClientRequest:
        plain = super().request(client, seq, op)
        return ClientRequest(session_id(client, endpoint), seq, plain.op)

    def reply(self, message: Any) -> ReplyView | None:
        if type(message) is not ClientReply:
            return None
        client = session_process(message.client)
        if message.status != STATUS_OK:
            return ReplyView(client, message.seq, "redirect", leader=None)
        view = super().reply(message)
        assert view is not None
        return ReplyView(client, message.seq, view.status, view.value, leader=message.leader)


_BFT_OPTIONS = ("scheme",)
"""Simulator options of the BFT protocols besides their cores' configs:
``scheme`` is ``ed25519`` (default) or ``bls`` for the cost model."""


def _cost_model(context: SpecContext, options: Mapping[str, Any]) -> tuple[Callable[[NodeId], Any], Callable[[NodeId], Any], Callable[[NodeId], Any]]:
    """(signer_for, verifier_for, meter_for): one meter per node, shared by
    its signer and verifier and kept across restarts (it is the node's CPU)."""
    from quorate.crypto.costmodel import (
        CostModelKeys,
        CostModelSigner,
        CostModelVerifier,
        CpuMeter,
        Scheme,
    )

    try:
        scheme = Scheme(str(options.get("scheme", "ed25519")))
    except ValueError:
        raise ConfigError(f"scheme must be ed25519 or bls, got {options.get('scheme')!r}") from None
    keys = CostModelKeys(f"quorate-sim-{context.seed}".encode())
    meters: dict[NodeId, CpuMeter] = {}

    def meter_for(node: NodeId) -> CpuMeter:
        meter = meters.get(node)
        if meter is None:
            meter = meters[node] = CpuMeter()
        return meter

    def signer_for(node: NodeId) -> CostModelSigner:
        return CostModelSigner(node, keys, scheme=scheme, meter=meter_for(node))

    def verifier_for(node: NodeId) -> CostModelVerifier:
        return CostModelVerifier(keys, scheme=scheme, meter=meter_for(node))

    return signer_for, verifier_for, meter_for


def _bft_monitor(
    context: SpecContext,
    signer_for: Callable[[NodeId], Any],
    verifier_for: Callable[[NodeId], Any],
) -> tuple[Callable[[], Callable[[ProtocolCore, float], None] | None], Callable[[ProtocolCore], Replica]]:
    """(new_monitor, build_replica): services report executed entries to the
    monitor once the simulation asks for it (``check_invariants``), and sign
    their time entries with the cost-model keys."""
    from quorate.runtime.sim.bft import SESSION_ENDPOINT_BITS, BftReplicaService, BftSafetyMonitor
    from quorate.state.replica_time import ReplicaClock

    endpoints = context.client_endpoints
    if len(endpoints) and endpoints[-1] >= 1 << SESSION_ENDPOINT_BITS:
        raise ConfigError(
            f"nodes + clients must stay below {1 << SESSION_ENDPOINT_BITS} for a BFT protocol "
            "(client session ids carry the client's endpoint id)"
        )
    monitor = BftSafetyMonitor(frozenset(context.byzantine))
    active: list[bool] = [False]

    def record(node: NodeId, entry: Any) -> None:
        if active[0]:
            monitor.record(node, entry)

    def new_monitor() -> Callable[[ProtocolCore, float], None] | None:
        # Agreement is checked as entries execute (``record``, fail-fast);
        # nothing is left to look at per step.
        active[0] = True
        return None

    replicas = context.replicas

    def build_replica(core: ProtocolCore) -> Replica:
        clock = ReplicaClock(signer_for(core.id), verifier_for(core.id)) if replicas else None
        return BftReplicaService(core, record=record, clients=endpoints, replicas=max(replicas, 1), clock=clock)

    return new_monitor, build_replica


def _split_options(name: str, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    core_options = {k: v for k, v in options.items() if k not in _BFT_OPTIONS}
    sim_options = {k: v for k, v in options.items() if k in _BFT_OPTIONS}
    return core_options, sim_options


def _mac_authenticators(
    config: Any, context: SpecContext, meter_for: Callable[[NodeId], Any]
) -> Callable[[NodeId, tuple[NodeId, ...]], Any]:
    """``authenticator_for(node, voters)``: with ``authentication="macs"``, a
    ``MeteredMacAuthenticator`` over session keys drawn from the run's seed
    that charges the node's CPU meter (it authenticates pre-prepares,
    prepares and commits); otherwise ``None`` (every message signed)."""
    from quorate.pbft.config import AUTH_MACS

    if config.authentication != AUTH_MACS:
        return lambda node, voters: None
    from quorate.runtime.sim.bft_auth import MeteredMacAuthenticator, session_secret

    secret = session_secret(context.seed)

    def authenticator_for(node: NodeId, voters: tuple[NodeId, ...]) -> Any:
        return MeteredMacAuthenticator(node, voters, secret, meter_for(node))

    return authenticator_for


def _pbft(options: Mapping[str, Any], context: SpecContext) -> ProtocolSpec:
    try:
        from quorate.pbft import (
            BEHAVIOURS,
            PBFT_MESSAGE_TYPES,
            ByzantineReplica,
            Coalition,
            PbftConfig,
            PbftReplica,
        )
    except ImportError as exc:
        raise ConfigError(f"protocol 'pbft' is not available: {exc}") from None
    from quorate.runtime.sim.bft import max_byzantine

    core_options, sim_options = _split_options("pbft", options)
    try:
        config = PbftConfig(**core_options)
    except TypeError as exc:
        raise ConfigError(f"bad PBFT option: {exc}") from None
    signer_for, verifier_for, meter_for = _cost_model(context, sim_options)
    authenticator_for = _mac_authenticators(config, context, meter_for)
    byzantine = dict(context.byzantine)
    coalitions: dict[tuple[NodeId, ...], Coalition] = {}
    equivocators = frozenset(n for n, b in byzantine.items() if b == "equivocate")

    def build(node: NodeId, voters: tuple[NodeId, ...], rng: random.Random, now: float, rec: Recovered | None) -> ProtocolCore:
        signer = signer_for(node)
        core = PbftReplica(
            node,
            voters,
            config=config,
            signer=signer,
            verifier=verifier_for(node),
            rng=rng,
            now=now,
            recovered=rec,
            authenticator=authenticator_for(node, voters),
        )
        behaviour = byzantine.get(node)
        if behaviour is None:
            return core
        coalition = None
        if behaviour == "equivocate" and len(equivocators) > max_byzantine(len(voters)):
            # More equivocators than PBFT tolerates (only with --allow-unsafe):
            # let them collude, which is what can actually break agreement.
            coalition = coalitions.get(voters)
            if coalition is None:
                coalition = coalitions[voters] = Coalition(equivocators, voters)
        wrapped: ProtocolCore = ByzantineReplica(
            core, behaviour, rng=rng, signer=signer, peers=voters, coalition=coalition
        )
        return wrapped

    new_monitor, build_replica = _bft_monitor(context, signer_for, verifier_for)

    def leader_term(core: ProtocolCore) -> int | None:
        inner: Any = getattr(core, "inner", core)
        if getattr(inner, "is_primary", False):
            view: int = inner.view
            return view
        return None

    return ProtocolSpec(
        name="pbft",
        build_core=build,
        build_replica=build_replica,
        max_crashed=max_byzantine,
        new_monitor=new_monitor,
        leader_term=leader_term,
        message_types=tuple(PBFT_MESSAGE_TYPES),
        meter_for=meter_for,
        behaviours=tuple(BEHAVIOURS),
        max_byzantine=max_byzantine,
        reply_quorum=lambda n: max_byzantine(n) + 1,
        client_codec=BftServiceCodec,
    )


def _hotstuff(options: Mapping[str, Any], context: SpecContext) -> ProtocolSpec:
    try:
        from quorate.hotstuff import (
            BEHAVIOURS,
            HOTSTUFF_MESSAGE_TYPES,
            ByzantineReplica,
            HotStuffConfig,
            HotStuffReplica,
        )
    except ImportError as exc:
        raise ConfigError(f"protocol 'hotstuff' is not available: {exc}") from None
    from quorate.runtime.sim.bft import max_byzantine

    core_options, sim_options = _split_options("hotstuff", options)
    try:
        config = HotStuffConfig(**core_options).validate()
    except TypeError as exc:
        raise ConfigError(f"bad HotStuff option: {exc}") from None
    signer_for, verifier_for, meter_for = _cost_model(context, sim_options)
    byzantine = dict(context.byzantine)

    def build(node: NodeId, voters: tuple[NodeId, ...], rng: random.Random, now: float, rec: Recovered | None) -> ProtocolCore:
        signer = signer_for(node)
        core: ProtocolCore = HotStuffReplica(
            node, voters, config=config, signer=signer, verifier=verifier_for(node), rng=rng, now=now, recovered=rec
        )
        behaviour = byzantine.get(node)
        if behaviour is None:
            return core
        wrapped: ProtocolCore = ByzantineReplica(
            core, behaviour, rng=rng, signer=signer, peers=voters, view_timeout_s=config.view_timeout_s
        )
        return wrapped

    new_monitor, build_replica = _bft_monitor(context, signer_for, verifier_for)

    def leader_term(core: ProtocolCore) -> int | None:
        inner: Any = getattr(core, "inner", core)
        view: int = getattr(inner, "view", 0)
        return view if inner.leader(view) == inner.id else None

    return ProtocolSpec(
        name="hotstuff",
        build_core=build,
        build_replica=build_replica,
        max_crashed=max_byzantine,
        new_monitor=new_monitor,
        leader_term=leader_term,
        message_types=tuple(HOTSTUFF_MESSAGE_TYPES),
        meter_for=meter_for,
        behaviours=tuple(BEHAVIOURS),
        max_byzantine=max_byzantine,
        reply_quorum=lambda n: max_byzantine(n) + 1,
        client_codec=BftServiceCodec,
    )


REGISTRY: dict[str, Callable[[Mapping[str, Any], SpecContext], ProtocolSpec]] = {
    "primary": _primary,
    "raft": _raft,
    "pbft": _pbft,
    "hotstuff": _hotstuff,
}


def protocol_spec(
    name: str, options: Mapping[str, Any] | None = None, context: SpecContext | None = None
) -> ProtocolSpec:
    """The spec of protocol ``name``; ``ConfigError`` for an unknown name or option."""
    factory = REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return factory(options or {}, context or SpecContext())
