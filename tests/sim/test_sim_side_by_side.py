"""One simulated process hosting a Raft group and a PBFT group side by side
(the shape of an HRB shard manager: its shard's Raft group and the core's BFT
group), on four nodes 1..4 of the simulated network:

- group 0 runs Raft, group 1 runs PBFT, both built from their bindings
  (``runtime.sim.protocols.protocol_spec``), in one ``NodeHost`` and one
  driver loop per node, with a modelled disk (one fsync shared by every
  group's writes of a turn);
- a write to each group commits in that group only: Raft's leader answers
  its client; PBFT's client gets f + 1 = 2 matching answers; each group's
  stores hold their own key and not the other's, on every node;
- each node keeps each group's durable state apart (storage keyed by group);
- the run is deterministic: the same seed gives the same replies at the
  same simulated times.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from quorate.core.host import HostedGroup
from quorate.ids import NodeId
from quorate.runtime.sim.bft import session_id
from quorate.runtime.sim.engine import EventLoop
from quorate.runtime.sim.network import Network
from quorate.runtime.sim.node import CostModel, Grouped, SimNode
from quorate.runtime.sim.protocols import SpecContext, protocol_spec
from quorate.state.kv import Get, Put, decode_result, encode_op
from quorate.state.service import STATUS_OK, ClientReply, ClientRequest
from quorate.storage.base import Recovered

NODES = 4
CLIENT = NODES + 1
"""The client's network endpoint (nodes are 1..4, endpoint 0 is unused)."""
RAFT_GROUP = 0
PBFT_GROUP = 1
FSYNC_S = 0.002


class _Run:
    def __init__(self, seed: int) -> None:
        self.loop = EventLoop()
        endpoints = CLIENT + 1
        self.replies: list[tuple[float, int, int, Any]] = []
        client_kind = self.loop.add_kind(self._on_reply)
        kinds = [client_kind] * endpoints
        self.network = Network(
            self.loop,
            random.Random(f"{seed}:network"),
            region_of=[0] * endpoints,
            latency_s=[[0.001]],
            bandwidth_bps=[1e9] * endpoints,
            deliver_kind_of=kinds,
        )
        members = tuple(NodeId(i) for i in range(1, NODES + 1))
        specs = {
            RAFT_GROUP: protocol_spec("raft", {"election_timeout_s": 0.3, "heartbeat_interval_s": 0.03}),
            PBFT_GROUP: protocol_spec(
                "pbft",
                {"batch_timeout_s": 0.001},
                SpecContext(seed=seed, client_endpoints=range(CLIENT, CLIENT + 1), replicas=NODES),
            ),
        }

        def group_factory(node: NodeId, group: int, now: float, recovered: Recovered | None) -> HostedGroup | None:
            spec = specs.get(group)
            if spec is None:
                return None
            rng = random.Random(f"{seed}:{node}:{group}")
            core = spec.build_core(node, members, rng, now, recovered)
            return HostedGroup(group, core, spec.binding, state=spec.build_replica(core), pipelines=spec.pipelines)

        self.nodes: list[SimNode] = []
        for node_id in members:
            node = SimNode(
                node_id,
                group_factory=group_factory,
                initial_groups=(RAFT_GROUP, PBFT_GROUP),
                cost=CostModel(),
                send=self.network.send,
                schedule=self.loop.schedule,
                wake_kind=-1,
                cpu_kind=-1,
                first_client_id=CLIENT,
                verifier=specs[PBFT_GROUP].meter_for(node_id) if specs[PBFT_GROUP].meter_for else None,
                fsync_s=FSYNC_S,
            )
            kinds[node_id] = self.loop.add_kind(node.deliver)
            node.wake_kind = self.loop.add_kind(node.wake)
            node.cpu_kind = self.loop.add_kind(node.cpu_free)
            self.nodes.append(node)
        self.network.deliver_kind_of = kinds
        for node in self.nodes:
            node.start(0.0)

    def _on_reply(self, event: tuple[Any, ...]) -> None:
        message = event[5]
        group = RAFT_GROUP
        if type(message) is Grouped:
            group, message = message.group, message.message
        self.replies.append((event[0], int(event[4]), group, message))

    def run_for(self, seconds: float) -> None:
        self.loop.run(self.loop.now + seconds)

    def raft_leader(self) -> SimNode:
        leaders = [n for n in self.nodes if n.core is not None and n.core.is_leader]  # type: ignore[attr-defined]
        assert len(leaders) == 1, "one Raft leader in group 0"
        return leaders[0]

    def raft_call(self, seq: int, op: Any) -> ClientReply:
        leader = self.raft_leader()
        self.network.send(CLIENT, leader.id, ClientRequest(1, seq, encode_op(op)), self.loop.now)
        self.run_for(1.0)
        answers = [m for _, _, g, m in self.replies if g == RAFT_GROUP and isinstance(m, ClientReply) and m.client == 1 and m.seq == seq]
        assert answers and answers[-1].status == STATUS_OK, answers
        return answers[-1]

    def pbft_call(self, seq: int, op: Any) -> bytes:
        client = session_id(0, CLIENT)
        for node in self.nodes:
            self.network.send(CLIENT, node.id, Grouped(PBFT_GROUP, ClientRequest(client, seq, encode_op(op))), self.loop.now)
        self.run_for(1.0)
        votes: Counter[bytes] = Counter()
        for _, _sender, group, message in self.replies:
            if group == PBFT_GROUP and isinstance(message, ClientReply) and message.seq == seq and message.status == STATUS_OK:
                votes[message.result] += 1
        result, count = votes.most_common(1)[0]
        assert count >= 2, votes  # f + 1 matching answers
        return result


def _scenario(seed: int) -> tuple[_Run, list[tuple[float, int, int, str]]]:
    run = _Run(seed)
    run.run_for(2.0)
    assert decode_result(run.raft_call(1, Put("raft-key", "r")).result).ok
    assert decode_result(run.pbft_call(1, Put("pbft-key", "p"))).ok
    assert decode_result(run.raft_call(2, Get("pbft-key")).result).value is None
    assert decode_result(run.raft_call(3, Get("raft-key")).result).value == "r"
    assert decode_result(run.pbft_call(2, Get("raft-key"))).value is None
    assert decode_result(run.pbft_call(3, Get("pbft-key"))).value == "p"
    trace = [(t, s, g, type(m).__name__) for t, s, g, m in run.replies]
    return run, trace


def test_a_raft_group_and_a_pbft_group_in_one_simulated_process() -> None:
    run, trace = _scenario(seed=3)
    for node in run.nodes:
        assert node.host is not None and len(node.host) == 2
        assert set(node.storages) == {RAFT_GROUP, PBFT_GROUP}
        raft_state = node.host.get(RAFT_GROUP)
        pbft_state = node.host.get(PBFT_GROUP)
        assert raft_state is not None and pbft_state is not None
        # Every replica of each group applied its own group's write only.
        assert raft_state.state.kv.get("raft-key") == "r" and raft_state.state.kv.get("pbft-key") is None
        assert pbft_state.state.kv.get("pbft-key") == "p" and pbft_state.state.kv.get("raft-key") is None
        # One modelled disk per node: both groups' writes shared its fsyncs.
        assert node.fsyncs > 0
    # The same seed, the same replies at the same simulated times.
    _, again = _scenario(seed=3)
    assert again == trace
