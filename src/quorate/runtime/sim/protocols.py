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
- how many replicas may be crashed at once while staying live.

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
    new_monitor: Callable[[], Callable[[ProtocolCore, float], None]] | None = None
    leader_term: Callable[[ProtocolCore], int | None] | None = None
    """The term in which this core leads, or None if it does not lead."""
    message_types: tuple[type, ...] = field(default=())


class ServiceCodec:
    """Workload operations <-> ``quorate.state.service`` client messages.

    Values are the workload's integers written as decimal strings (the store
    holds strings); reads convert them back. A ``retry`` reply re-sends the
    same session and number to the same node (the store's sessions make it
    exactly-once); an ``error`` means the core refused the command, so it
    certainly did not take effect."""

    def request(self, client: int, seq: int, op: Operation) -> ClientRequest:
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


def _primary(options: Mapping[str, Any]) -> ProtocolSpec:
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


def _raft(options: Mapping[str, Any]) -> ProtocolSpec:
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
        if getattr(core, "is_leader", False):
            term: int = getattr(core, "term", 0)
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


REGISTRY: dict[str, Callable[[Mapping[str, Any]], ProtocolSpec]] = {
    "primary": _primary,
    "raft": _raft,
}


def protocol_spec(name: str, options: Mapping[str, Any] | None = None) -> ProtocolSpec:
    """The spec of protocol ``name``; ``ConfigError`` for an unknown name or option."""
    factory = REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return factory(options or {})
