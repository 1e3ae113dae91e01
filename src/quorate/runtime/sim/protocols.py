"""The simulator's view of a protocol, built from its binding.

Theory of operation. The engine, network, nodes and workload are generic over
``ProtocolCore``; what they need to know about a protocol comes from its
binding (``quorate.protocols``, ``quorate.core.binding``), turned here into a
``ProtocolSpec`` with what only the simulator adds:

- cores built by the binding with the simulator's ``CostModelKeyring`` for
  protocols that sign (``quorate.crypto.keyring``: one ``CpuMeter`` per
  replica shared by its signer, verifier and MAC authenticator, which the
  node charges to its CPU after each step), and the Byzantine behaviours the
  run drew (``SpecContext``);
- the replica service on top of each core (``quorate.state.service``, with a
  ``quorate.state.kv.KVStore``; for Byzantine fault tolerant protocols the
  simulator's ``BftReplicaService``, which answers every client endpoint);
- the client codec (``ServiceCodec``, or ``BftServiceCodec`` for clients that
  need f + 1 matching replies);
- the protocol's own online safety monitor, if its binding has one, and who
  leads in which term (to count leader changes).

The simulator's reference protocol ``primary`` registers its binding here.
Nothing in this module names another protocol.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quorate.core.binding import Binding, ClusterContext
from quorate.core.protocol import ProtocolCore
from quorate.crypto.costmodel import CryptoCosts, Scheme
from quorate.crypto.keyring import CostModelKeyring
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.protocols import binding, register
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
    binding: Binding
    build_core: BuildCore
    build_replica: Callable[[ProtocolCore], Replica]
    max_crashed: Callable[[int], int]
    """Replicas that may be down at once (out of n) with the cluster still live."""
    new_monitor: Callable[[], Callable[[ProtocolCore, float], None] | None] | None = None
    """Starts the protocol's own safety monitor; returns the check to run
    after every step. (Agreement on what replicas execute is checked for
    every protocol by ``runtime.sim.agreement``, as entries execute.)"""
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
    pipelines: bool = False
    """With this config, every message of a Ready may leave before its write
    (``Binding.pipelines_while_persisting``)."""


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
    crypto_costs: CryptoCosts | None = None
    """CPU seconds the cost-model keyring charges per primitive (None: its defaults)."""


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


def _service(core: ProtocolCore) -> Replica:
    return ReplicaService(core, KVStore())


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


def _primary_binding() -> Any:
    from quorate.runtime.sim.primary import BINDING

    return BINDING


register("primary", _primary_binding)

_SIM_OPTIONS = ("scheme",)
"""Simulator options besides a protocol's own config: ``scheme`` is
``ed25519`` (default) or ``bls`` for the cost model of signing protocols."""


def _bft_replica(context: SpecContext, keyring: CostModelKeyring) -> Callable[[ProtocolCore], Replica]:
    """The simulator's BFT replica service, answering the run's client
    endpoints and signing its time entries with the run's cost-model keys."""
    from quorate.runtime.sim.bft import SESSION_ENDPOINT_BITS, BftReplicaService
    from quorate.state.replica_time import ReplicaClock

    endpoints = context.client_endpoints
    if len(endpoints) and endpoints[-1] >= 1 << SESSION_ENDPOINT_BITS:
        raise ConfigError(
            f"nodes + clients must stay below {1 << SESSION_ENDPOINT_BITS} for a BFT protocol "
            "(client session ids carry the client's endpoint id)"
        )

    replicas = context.replicas

    replicas = context.replicas

    def build_replica(core: ProtocolCore) -> Replica:
        clock = ReplicaClock(keyring.signer(core.id), keyring.verifier(core.id)) if replicas else None
        return BftReplicaService(core, clients=endpoints, replicas=max(replicas, 1), clock=clock)

    return build_replica


def protocol_spec(
    name: str, options: Mapping[str, Any] | None = None, context: SpecContext | None = None
) -> ProtocolSpec:
    """The simulator's spec of protocol ``name`` from its binding
    (``quorate.protocols``); ``ConfigError`` for an unknown name or option."""
    b = binding(name)
    context = context or SpecContext()
    options = dict(options or {})
    sim_options = {k: options.pop(k) for k in _SIM_OPTIONS if k in options}
    config = b.parse_config(options)
    byzantine = b.fault_model == "byzantine"
    if context.byzantine and not byzantine:
        raise ConfigError(f"protocol {name!r} tolerates crash faults only; --byzantine needs a Byzantine fault tolerant protocol")
    if sim_options and not byzantine:
        raise ConfigError(f"protocol {name!r} signs nothing: option(s) {', '.join(sim_options)} do not apply")
    keyring: CostModelKeyring | None = None
    if byzantine:
        try:
            scheme = Scheme(str(sim_options.get("scheme", "ed25519")))
        except ValueError:
            raise ConfigError(f"scheme must be ed25519 or bls, got {sim_options.get('scheme')!r}") from None
        keyring = CostModelKeyring(context.seed, scheme, context.crypto_costs)
    build = b.builder(config, ClusterContext(keyring, dict(context.byzantine)))
    leader_term = b.leading_term or b.term_if_leading

    return ProtocolSpec(
        name=name,
        binding=b,
        build_core=build,
        build_replica=_bft_replica(context, keyring) if keyring is not None else _service,
        max_crashed=b.max_faulty,
        new_monitor=b.safety_monitor,
        leader_term=leader_term,
        message_types=b.message_types,
        meter_for=keyring.meter if keyring is not None else None,
        behaviours=b.behaviours,
        max_byzantine=b.max_byzantine,
        reply_quorum=b.reply_quorum,
        client_codec=BftServiceCodec if byzantine else None,
        pipelines=b.pipelines_while_persisting(config),
    )
