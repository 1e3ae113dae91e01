"""What a real node does differently when its core is Byzantine fault tolerant
(PBFT, HotStuff): how it turns client requests into commands, and what it
shows in its ``Status`` counters.

Theory of operation.

- **Every replica answers** (Castro & Liskov §4.1: "the client waits for f + 1
  replies from different replicas with the same result"). Each replica
  answers a command only once it has *executed* it, so no single replica —
  the primary least of all — can make a client accept a forged result. The
  request handling shared with the simulator is
  ``quorate.state.service.BftService``; this module adds where answers go.
- **One command, one order.** All replicas must propose identical bytes for
  one request, or the core would order n copies of it (PBFT and HotStuff
  deduplicate by content). The replica's clock differs from its peers', so
  commands carry the fixed stamp ``BFT_COMMAND_TIME_S`` instead, and log
  time comes from rounds of the replicas' signed clock readings
  (``quorate.state.replica_time``), so TTLs expire in a BFT store too.
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

from quorate.core.protocol import ProtocolCore
from quorate.ids import NodeId
from quorate.state.kv import KVStore
from quorate.state.replica_time import ReplicaClock
from quorate.state.service import BftService, ClientRequest, ReplicaService

MAX_ROUTES = 1 << 16
"""Client sessions whose connection a replica remembers (oldest forgotten)."""


class BftReplicaService(BftService):
    """``BftService`` on a real node: answers go back on the connection the
    request came in on, else on the one the session attached (see the
    module docstring)."""

    __slots__ = ("_routes",)

    busy_is_retry = True

    def __init__(
        self,
        core: ProtocolCore,
        kv: KVStore,
        *,
        read_mode: str = "log",
        snapshot_every: int = 0,
        stamp_clock: Callable[[], float] | None = None,
        local_clock: Callable[[], float] | None = None,
        clock: ReplicaClock | None = None,
    ) -> None:
        # BFT cores have no ReadIndex: reads are ordered like writes, so
        # ``read_mode`` is not used. Commands carry a fixed time (every replica
        # must propose identical bytes); ``stamp_clock`` is what this replica's
        # signed time entries read (``quorate.state.replica_time``).
        super().__init__(
            core, kv, snapshot_every=snapshot_every, clock=clock, stamp_clock=stamp_clock, local_clock=local_clock
        )
        self._routes: dict[int, NodeId] = {}
        """client -> the connection its session attached on (oldest first)."""

    def attach(self, connection: NodeId, clients: tuple[int, ...]) -> None:
        routes = self._routes
        for client in clients:
            routes.pop(client, None)  # re-insert: the dict stays ordered by recency
            routes[client] = connection
        while len(routes) > MAX_ROUTES:
            del routes[next(iter(routes))]

    def _answer_to(self, client: int, waiting: tuple[NodeId, ClientRequest] | None) -> NodeId | None:
        return waiting[0] if waiting is not None else self._routes.get(client)


def replica_service_class(fault_model: str) -> type[ReplicaService]:
    """The service a node puts in front of a core with this fault model
    (``quorate.core.binding.Binding.fault_model``)."""
    return BftReplicaService if fault_model == "byzantine" else ReplicaService
