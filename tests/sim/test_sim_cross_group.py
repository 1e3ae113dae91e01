"""Messages a group sends on *other* groups in the simulator (the node host's
``CrossGroupOutput`` role, which HRB's tiers use: the core certifies decisions
for shard groups, a shard member votes on the core's group).

Two nodes host a ``Sink`` group (2) each; node 1 also hosts a ``Relay`` group
(1) whose timer makes it send on group 2, to node 2 and to node 1 itself.
The message to node 2 crosses the simulated network as a group-2 message;
the one to itself is stepped into its own host, without the network.
"""

from __future__ import annotations

import random
from typing import Any

from quorate.core.host import HostedGroup
from quorate.core.protocol import ProposeOutcome, Refused
from quorate.core.ready import Ready
from quorate.ids import NodeId
from quorate.runtime.sim.engine import EventLoop
from quorate.runtime.sim.network import Network
from quorate.runtime.sim.node import CostModel, SimNode
from quorate.storage.base import Recovered

RELAY_GROUP = 1
SINK_GROUP = 2
RELAY_AT_S = 0.1
CLIENT = 3


class Sink:
    """Records what it is sent; does nothing else."""

    def __init__(self, node: NodeId) -> None:
        self._id = node
        self.got: list[tuple[NodeId, Any, float]] = []

    @property
    def id(self) -> NodeId:
        return self._id

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self.got.append((sender, message, now))

    def tick(self, now: float) -> None:
        return None

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        return Refused("a sink takes no proposals")

    def has_ready(self) -> bool:
        return False

    def ready(self) -> Ready:
        return Ready()

    def advance(self, ready: Ready) -> None:
        return None


class Relay(Sink):
    """At ``RELAY_AT_S`` sends one message on the sink group to each node."""

    def __init__(self, node: NodeId) -> None:
        super().__init__(node)
        self._out: list[tuple[NodeId, int, Any]] = []
        self._armed = True

    def tick(self, now: float) -> None:
        if self._armed and now >= RELAY_AT_S:
            self._armed = False
            self._out += [(NodeId(2), SINK_GROUP, "to node 2"), (NodeId(1), SINK_GROUP, "to myself")]

    def has_ready(self) -> bool:
        return bool(self._out)

    def ready(self) -> Ready:
        return Ready(wake_at=RELAY_AT_S if self._armed else None)

    def take_outbound(self) -> list[tuple[NodeId, int, Any]]:
        out, self._out = self._out, []
        return out


def _run(seed: int) -> dict[NodeId, Sink]:
    loop = EventLoop()
    endpoints = CLIENT + 1
    kinds = [loop.add_kind(lambda event: None)] * endpoints
    network = Network(
        loop,
        random.Random(f"{seed}:network"),
        region_of=[0] * endpoints,
        latency_s=[[0.001]],
        bandwidth_bps=[1e9] * endpoints,
        deliver_kind_of=kinds,
    )
    sinks: dict[NodeId, Sink] = {}

    def group_factory(node: NodeId, group: int, now: float, recovered: Recovered | None) -> HostedGroup | None:
        if group == SINK_GROUP:
            sinks[node] = Sink(node)
            return HostedGroup(group, sinks[node], None)
        if group == RELAY_GROUP and node == 1:
            return HostedGroup(group, Relay(node), None)
        return None

    nodes = []
    for node_id in (NodeId(1), NodeId(2)):
        node = SimNode(
            node_id,
            group_factory=group_factory,
            initial_groups=(RELAY_GROUP, SINK_GROUP) if node_id == 1 else (SINK_GROUP,),
            cost=CostModel(),
            send=network.send,
            schedule=loop.schedule,
            wake_kind=-1,
            cpu_kind=-1,
            first_client_id=CLIENT,
        )
        kinds[node_id] = loop.add_kind(node.deliver)
        node.wake_kind = loop.add_kind(node.wake)
        node.cpu_kind = loop.add_kind(node.cpu_free)
        nodes.append(node)
    network.deliver_kind_of = kinds
    for node in nodes:
        node.start(0.0)
    loop.run(1.0)
    return sinks


def test_a_group_sends_on_another_group_across_the_network_and_to_its_own_node() -> None:
    sinks = _run(seed=1)
    assert [(s, m) for s, m, _ in sinks[NodeId(1)].got] == [(NodeId(1), "to myself")]
    assert [(s, m) for s, m, _ in sinks[NodeId(2)].got] == [(NodeId(1), "to node 2")]
    (_, _, here), (_, _, there) = sinks[NodeId(1)].got[0], sinks[NodeId(2)].got[0]
    assert here >= RELAY_AT_S and there > here  # the network's latency, not the local hand-over
    assert [m for m in (_run(seed=1)[NodeId(2)].got)] == sinks[NodeId(2)].got  # deterministic
