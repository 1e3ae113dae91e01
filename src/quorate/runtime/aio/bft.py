"""What a real node does differently when its core is Byzantine fault tolerant
(PBFT, HotStuff): how it turns client requests into commands, and what it
shows in its ``Status`` counters.

Theory of operation.

- **Every replica answers** (Castro & Liskov §4.1: "the client waits for f + 1
  replies from different replicas with the same result"). A BFT client sends
  each request to every replica; each replica proposes it and answers when
  it has *executed* it, so no single replica — the primary least of all —
  can make a client accept a forged result.
- **One command, one order.** All replicas must propose identical bytes for
  one request, or the core would order n copies of it (PBFT and HotStuff
  deduplicate by content). The replica's clock differs from its peers', so
  ``BftReplicaService`` stamps commands with the fixed log time
  ``BFT_COMMAND_TIME_S`` instead. Consequence: log time never advances in a
  BFT store, so TTLs on puts do not expire there.
- **Every replica answers, whoever it heard from.** A client sends a
  request to the primary only (it broadcasts after a timeout), so a backup
  usually learns a command from the pre-prepare, not from the client. The
  client's connection says which sessions it carries (``ClientAttach``);
  after executing a command a replica answers on the connection the
  request came in on, else on the one its session attached (the most
  recent ``MAX_ROUTES`` sessions are remembered). PBFT replies name the
  primary (``ClientReply.leader``) so clients know where to send next.
- **Retries.** A client resends with the same ``(client, seq)`` when it has
  not gathered f + 1 matching replies in time. A replica that still has the
  command pending keeps waiting to answer; one that already executed it
  answers with the result it remembers for that session (the store applied
  it once, the session records its result). Flow-control refusals
  ("busy") are answered ``retry`` so the client backs off and resends.
- **Counters.** ``bft_metrics`` lists, for ``StatusReply.metrics``, the view,
  its primary/leader, how many equivocations this replica convicted and
  which replicas it excluded (``bft.excluded.n<id> = 1``). A ``byzantine``
  wrapper reports its honest core's view of these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from quorate.core.protocol import ProtocolCore, Queued, Refused
from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.ids import NodeId, node_name
from quorate.state.kv import (
    NO_SESSION,
    Command,
    KVStore,
    decode_command,
    decode_op,
    encode_command,
    encode_result,
)
from quorate.state.service import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_RETRY,
    ClientReply,
    ClientRequest,
    ReplicaService,
)

BFT_PROTOCOLS = ("pbft", "hotstuff")
"""Registered protocols whose clients need f + 1 matching replies."""
BFT_COMMAND_TIME_S = 0.0
"""The log time of every BFT command (see the module docstring)."""
_STILL_PENDING = ("already pending", "already waiting")
_ALREADY_EXECUTED = ("already executed", "committed already")
_BUSY = "busy"
MAX_ROUTES = 1 << 16
"""Client sessions whose connection a replica remembers (oldest forgotten)."""


class BftReplicaService(ReplicaService):
    """``ReplicaService`` for a BFT core on a real node (see the module docstring)."""

    __slots__ = ("_honest", "_results", "_routes")

    def __init__(
        self,
        core: ProtocolCore,
        kv: KVStore,
        *,
        read_mode: str = "log",
        snapshot_every: int = 0,
        stamp_clock: Callable[[], float] | None = None,
    ) -> None:
        # BFT cores have no ReadIndex: reads are ordered like writes. Commands
        # carry a fixed time (every replica must propose identical bytes), so
        # ``stamp_clock`` is not used.
        super().__init__(core, kv, read_mode="log", snapshot_every=snapshot_every)
        self._results: dict[int, tuple[int, bytes]] = {}
        """client -> (seq, encoded result) of its latest executed command."""
        self._routes: dict[int, NodeId] = {}
        """client -> the connection its session attached on (oldest first)."""
        self._honest = getattr(core, "inner", core)  # a Byzantine wrapper: its honest core

    def attach(self, connection: NodeId, clients: tuple[int, ...]) -> None:
        routes = self._routes
        for client in clients:
            routes.pop(client, None)  # re-insert: the dict stays ordered by recency
            routes[client] = connection
        while len(routes) > MAX_ROUTES:
            del routes[next(iter(routes))]

    def _primary_hint(self) -> int | None:
        """The primary clients should send to (PBFT); None for rotating leaders."""
        primary = getattr(self._honest, "primary", None)
        return None if primary is None else int(primary)

    def on_client_request(self, sender: NodeId, req: ClientRequest, now: float) -> None:
        try:
            op = decode_op(req.op)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._reply(sender, req, STATUS_ERROR, error="malformed operation")
            return
        command = Command(req.client, req.seq, op, BFT_COMMAND_TIME_S)
        outcome = self.core.propose(encode_command(command), now)
        if isinstance(outcome, Queued):
            self._by_session[(req.client, req.seq)] = (sender, req)
            return
        if isinstance(outcome, Refused):
            reason = outcome.reason
            if any(words in reason for words in _STILL_PENDING):
                self._by_session[(req.client, req.seq)] = (sender, req)
                return
            if any(words in reason for words in _ALREADY_EXECUTED):
                remembered = self._results.get(req.client)
                if remembered is not None and remembered[0] == req.seq:
                    self._reply(sender, req, STATUS_OK, remembered[1], leader=self._primary_hint())
                else:
                    self._reply(sender, req, STATUS_RETRY, error="executed; result no longer held")
                return
            if reason.startswith(_BUSY):
                self._reply(sender, req, STATUS_RETRY, error=reason)
                return
        self._refuse(sender, req, outcome)

    def apply(self, entry: Entry) -> None:
        """Execute one command and answer its session: one decode, one
        result encoding, shared by the store, the retry memory and the reply."""
        if entry.kind != ENTRY_NORMAL:
            super().apply(entry)
            return
        try:
            command = decode_command(entry.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            super().apply(entry)  # the store's error result; nobody to answer
            return
        self.applied = entry.index
        self.kv.applied_index = entry.index
        result = self.kv.apply_command(command)
        client = command.client
        if client != NO_SESSION:
            encoded = encode_result(result)
            self._results[client] = (command.seq, encoded)
            waiting = self._by_session.pop((client, command.seq), None)
            to = waiting[0] if waiting is not None else self._routes.get(client)
            if to is not None:
                self._replies.append(
                    (to, ClientReply(client, command.seq, STATUS_OK, encoded, self._primary_hint()))
                )
        if self.snapshot_every and entry.index % self.snapshot_every == 0:
            compact = getattr(self.core, "compact", None)
            if compact is not None:
                compact(entry.index, self.kv.snapshot())


def replica_service_class(protocol: str) -> type[ReplicaService]:
    """The service a node running ``protocol`` puts in front of its core."""
    return BftReplicaService if protocol in BFT_PROTOCOLS else ReplicaService


def bft_metrics(core: Any) -> dict[str, int]:
    """View, primary/leader, convictions and exclusions of a BFT core; ``{}``
    for a core that has none of these (Raft)."""
    honest = getattr(core, "inner", core)  # a Byzantine wrapper: its honest core
    detections = getattr(honest, "detections", None)
    if detections is None:
        return {}
    out = {"bft.detections": len(detections)}
    view = getattr(honest, "view", None)
    if isinstance(view, int):
        out["bft.view"] = view
        primary = getattr(honest, "primary", None)
        leader_of = getattr(honest, "leader", None)
        if primary is None and callable(leader_of):
            primary = leader_of(view)
        if primary is not None:
            out["bft.leader"] = int(primary)
    executed_seq = getattr(honest, "executed_seq", None)
    if isinstance(executed_seq, int):
        # Sequence numbers executed: with entries_applied, the mean batch size.
        out["bft.executed_seq"] = executed_seq
    excluded = sorted(int(x) for x in getattr(honest, "excluded", ()))
    out["bft.excluded"] = len(excluded)
    for node in excluded:
        out[f"bft.excluded.{node_name(NodeId(node))}"] = 1
    return out
