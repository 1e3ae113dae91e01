"""A tiny ping/echo protocol core and a one-hop test world, for simulator tests.

``EchoCore`` answers every ``Ping`` with a ``Pong``, remembers what it received
in volatile memory (``seen``) and persists each ping as a log entry (durable).
With ``period_s`` it arms a periodic timer (``ticks`` counts firings) and pings
``target`` on each firing; without it the core is idle and asks for no wake-up.
With ``reset_on_ping`` every message pushes the deadline ``period_s`` later,
as heartbeats push back a Raft follower's election timeout.
"""

from __future__ import annotations

import random
from typing import Any

from quorate.core.protocol import ProposeOutcome, Refused
from quorate.core.ready import Entry, ReadState, Ready, Rejection
from quorate.core.wire import WireMessage
from quorate.ids import NodeId
from quorate.runtime.sim.engine import EventLoop
from quorate.runtime.sim.network import Network
from quorate.runtime.sim.node import CostModel, SimNode
from quorate.storage.base import Recovered


class Ping(WireMessage, tag="toy.Ping", frozen=True):
    n: int
    pad: bytes = b""


class Pong(WireMessage, tag="toy.Pong", frozen=True):
    n: int


class EchoCore:
    def __init__(
        self,
        node_id: NodeId,
        now: float,
        recovered: Recovered | None = None,
        *,
        period_s: float | None = None,
        target: NodeId | None = None,
        rng: random.Random | None = None,
        reset_on_ping: bool = False,
    ) -> None:
        self._id = node_id
        self.reset_on_ping = reset_on_ping
        self.seen: list[tuple[int, Any, float]] = []
        self.durable = [e.data for e in recovered.entries] if recovered is not None else []
        self.recovered = recovered
        self.period_s = period_s
        self.target = target
        self.ticks = 0
        self.tick_times: list[float] = []
        self._deadline = now + period_s if period_s is not None else None
        self._msgs: list[tuple[NodeId, Any]] = []
        self._persist: list[Entry] = []

    @property
    def id(self) -> NodeId:
        return self._id

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self.seen.append((sender, message, now))
        if self.reset_on_ping and self.period_s is not None:
            self._deadline = now + self.period_s  # like a follower's election timer
        if type(message) is Ping:
            index = len(self.durable) + 1
            self.durable.append(b"%d" % message.n)
            self._persist.append(Entry(1, index, 0, b"%d" % message.n))
            self._msgs.append((sender, Pong(message.n)))

    def tick(self, now: float) -> None:
        if self._deadline is not None and now >= self._deadline:
            self.ticks += 1
            self.tick_times.append(now)
            self._deadline = now + (self.period_s or 0.0)
            if self.target is not None:
                self._msgs.append((self.target, Ping(self.ticks)))

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        return Refused("echo cores order nothing")

    def has_ready(self) -> bool:
        return bool(self._msgs or self._persist)

    def ready(self) -> Ready:
        return Ready(messages=self._msgs, entries=self._persist, wake_at=self._deadline)

    def advance(self, ready: Ready) -> None:
        self._msgs = []
        self._persist = []


class NullReplica:
    def __init__(self) -> None:
        self.requests: list[tuple[NodeId, Any, float]] = []

    def on_client_request(self, sender: NodeId, request: Any, now: float) -> None:
        self.requests.append((sender, request, now))

    def take_replies(self) -> list[tuple[NodeId, Any]]:
        return []

    def has_replies(self) -> bool:
        return False

    def apply_all(self, entries: list[Entry]) -> None:
        for entry in entries:
            self.apply(entry)

    def apply(self, entry: Entry) -> None:
        pass

    def read_ready(self, read: ReadState) -> None:
        pass

    def restore(self, snapshot: Any) -> None:
        pass

    def rejected(self, rejection: Rejection) -> None:
        pass


class World:
    """``n`` replicas running ``EchoCore`` (one endpoint each) plus ``probes``
    extra endpoints whose received messages land in ``inbox``. Probes act as
    peers unless ``probes_are_clients`` (then replicas hand what they send to
    the replica service)."""

    def __init__(
        self,
        n: int,
        *,
        regions: list[int] | None = None,
        latency_s: list[list[float]] | None = None,
        bandwidth_bps: float = 1e9,
        cost: CostModel | None = None,
        period_s: float | None = None,
        seed: int = 0,
        probes: int = 1,
        loss: float = 0.0,
        duplicate: float = 0.0,
        jitter_kind: str = "none",
        jitter_s: float = 0.0,
        probes_are_clients: bool = False,
        reset_on_ping: bool = False,
    ) -> None:
        self.loop = EventLoop()
        endpoints = n + probes
        self.inbox: list[tuple[float, int, int, Any, int]] = []
        probe_kind = self.loop.add_kind(lambda e: self.inbox.append((e[0], e[3], e[4], e[5], e[6])))
        kinds = [probe_kind] * endpoints
        self.network = Network(
            self.loop,
            random.Random(f"{seed}:network"),
            region_of=regions or [0] * endpoints,
            latency_s=latency_s or [[0.001]],
            bandwidth_bps=[bandwidth_bps] * endpoints,
            deliver_kind_of=kinds,
            jitter_kind=jitter_kind,
            jitter_s=jitter_s,
            loss=loss,
            duplicate=duplicate,
        )
        self.nodes: list[SimNode] = []
        for i in range(n):
            node = SimNode(
                NodeId(i),
                build_core=lambda nid, now, rec: EchoCore(nid, now, rec, period_s=period_s, reset_on_ping=reset_on_ping),
                build_replica=lambda core: NullReplica(),
                cost=cost or CostModel(base_s=0.0, per_byte_s=0.0, tick_s=0.0),
                send=self.network.send,
                schedule=self.loop.schedule,
                wake_kind=-1,
                cpu_kind=-1,
                first_client_id=n if probes_are_clients else endpoints,
            )
            kinds[i] = self.loop.add_kind(node.deliver)
            node.wake_kind = self.loop.add_kind(node.wake)
            node.cpu_kind = self.loop.add_kind(node.cpu_free)
            self.nodes.append(node)
        self.network.deliver_kind_of = kinds
        self.probe = n

    def start(self) -> None:
        for node in self.nodes:
            node.start(self.loop.now)

    def core(self, i: int) -> EchoCore:
        core = self.nodes[i].core
        assert isinstance(core, EchoCore)
        return core
