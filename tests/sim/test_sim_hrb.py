"""HRB composed in the simulator: real watched-Raft shard groups and the real
BFT core (``quorate.hrb.system``) hosted side by side on simulated nodes
(``runtime.sim.node.SimNode``: one ``NodeHost`` and the runtimes' driver per
node, a modelled disk, the simulated network).

Two shards of four nodes and a core of four (two members of each shard):
node n hosts its shard's group (group id = shard) and, if it is in the core,
the core group; the core's certificates to shard members and the shard
leaders' requests and votes to the core travel as messages of the receiving
group (``NodeHost.take_outbound``). An agent sends its transactions to a
member of its home shard and is answered by the home shard's members once the
core's decision is applied there:

- a cross-shard transfer commits in both shards; an overdraft aborts and is
  applied in neither; the balances agree on every member;
- the run is deterministic: the same seed gives the same answers at the same
  simulated times.
"""

from __future__ import annotations

import random
from typing import Any

from tests.unit.hrb.hrb_system_net import FAST_CORE, FAST_HOTSTUFF, FAST_RAFT, txn_id

from quorate.core.binding import BftSettings, ClusterContext
from quorate.core.host import HostedGroup
from quorate.crypto.dkg import encryption_keypair
from quorate.crypto.keyring import CostModelKeyring
from quorate.hotstuff.binding import BINDING as HOTSTUFF
from quorate.hrb.core.config import CoreRules
from quorate.hrb.core.genesis import genesis
from quorate.hrb.core.threshold import CostModelSuite
from quorate.hrb.desk import AgentDesk
from quorate.hrb.messages import CORE_GROUP_BASE, Transaction, TxnOp
from quorate.hrb.shard.config import ShardConfig
from quorate.hrb.shard.state import TxnOutcome
from quorate.hrb.system import Deployment, ShardMember, build_core_member, build_shard_member
from quorate.hrb.txn import shard_of_key
from quorate.ids import NodeId
from quorate.runtime.sim.engine import EventLoop
from quorate.runtime.sim.network import Network
from quorate.runtime.sim.node import CostModel, Grouped, SimNode
from quorate.storage.base import Recovered

SHARDS = 2
SHARD_SIZE = 4
NODES = SHARDS * SHARD_SIZE
CLIENT = NODES + 1
FSYNC_S = 0.002


class HrbSim:
    def __init__(self, seed: int) -> None:
        self.loop = EventLoop()
        endpoints = CLIENT + 1
        self.answers: list[tuple[float, int, TxnOutcome]] = []
        kinds = [self.loop.add_kind(self._on_reply)] * endpoints
        self.network = Network(
            self.loop,
            random.Random(f"{seed}:network"),
            region_of=[0] * endpoints,
            latency_s=[[0.002]],
            bandwidth_bps=[1e9] * endpoints,
            deliver_kind_of=kinds,
        )
        suite = CostModelSuite(b"sim-%d" % seed)
        keyring = CostModelKeyring(seed)
        rules = CoreRules(core_size=4, epoch_length=10**9, txn_timeout_s=3.0, tick_interval_s=0.1, shard_quorum="byzantine")
        keys = {NodeId(n): encryption_keypair(b"node %d" % n)[1] for n in range(1, NODES + 1)}
        self.deployment = Deployment(
            genesis(keys, shard_size=SHARD_SIZE, seed=b"genesis-%d" % seed, suite=suite, rules=rules),
            suite,
            ShardConfig(quorum="byzantine", raft=FAST_RAFT),
            FAST_CORE,
        )
        bft = HOTSTUFF.builder(BftSettings(FAST_HOTSTUFF), ClusterContext(keyring, {}))
        self.members: dict[NodeId, ShardMember] = {}
        deployment = self.deployment

        def group_factory(node: NodeId, group: int, now: float, recovered: Recovered | None) -> HostedGroup | None:
            signer, verifier = keyring.signer(node), keyring.verifier(node)
            if group == CORE_GROUP_BASE:
                rng = random.Random(f"{seed}:core:{node}")
                core = build_core_member(deployment, node, bft=bft, signer=signer, verifier=verifier, rng=rng, now=now)
                return HostedGroup(group, core, None)
            rng = random.Random(f"{seed}:shard:{node}")
            replica = build_shard_member(deployment, node, signer=signer, verifier=verifier, rng=rng, now=now)
            member = self.members[node] = ShardMember(replica, replica.store)
            return HostedGroup(group, member, None, state=AgentDesk(member))

        self.nodes: list[SimNode] = []
        for n in range(1, NODES + 1):
            node_id = NodeId(n)
            groups = [deployment.shard_of(node_id)]
            if node_id in deployment.core_members:
                groups.append(CORE_GROUP_BASE)
            node = SimNode(
                node_id,
                group_factory=group_factory,
                initial_groups=groups,
                cost=CostModel(),
                send=self.network.send,
                schedule=self.loop.schedule,
                wake_kind=-1,
                cpu_kind=-1,
                first_client_id=CLIENT,
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
        if type(message) is Grouped:
            message = message.message
        if isinstance(message, TxnOutcome):
            self.answers.append((event[0], int(event[4]), message))

    def run_for(self, seconds: float) -> None:
        self.loop.run(self.loop.now + seconds)

    def submit(self, txn: Transaction) -> None:
        """The agent sends ``txn`` to every member of its home shard (one of
        them leads; the others forward and watch)."""
        for node in self.deployment.shards[txn.home_shard]:
            self.network.send(CLIENT, NodeId(node), Grouped(txn.home_shard, txn), self.loop.now)

    def outcome(self, txn: Transaction) -> TxnOutcome | None:
        return next((o for _, _, o in self.answers if o.txn_id == txn.txn_id), None)

    def keys_for(self, shard: int, prefix: str) -> str:
        i = 0
        while shard_of_key(f"{prefix}{i}", SHARDS) != shard:
            i += 1
        return f"{prefix}{i}"

    def values(self, key: str) -> set[str | None]:
        shard = shard_of_key(key, SHARDS)
        return {self.members[NodeId(n)].member.store.get(key) for n in self.deployment.shards[shard]}


def _scenario(seed: int) -> tuple[HrbSim, list[Transaction]]:
    sim = HrbSim(seed)
    sim.run_for(3.0)
    a, b = sim.keys_for(1, "acct"), sim.keys_for(2, "acct")

    def txn(tag: str, home: int, client_seq: int, *ops: TxnOp) -> Transaction:
        return Transaction(txn_id(f"{seed}-{tag}"), 1, client_seq, home, ops)

    steps = [
        txn("open", 1, 1, TxnOp(a, "put", "100"), TxnOp(b, "put", "5")),
        txn("pay", 2, 2, TxnOp(a, "add", delta=-30, minimum=0), TxnOp(b, "add", delta=30)),
        txn("overdraw", 1, 3, TxnOp(a, "add", delta=-500, minimum=0), TxnOp(b, "add", delta=500)),
        txn("flush-1", 1, 4, TxnOp(sim.keys_for(1, "f"), "put", "x")),
        txn("flush-2", 2, 5, TxnOp(sim.keys_for(2, "f"), "put", "x")),
    ]
    for t in steps:
        sim.submit(t)
        sim.run_for(2.0)
    sim.run_for(1.0)
    return sim, steps


def test_hrb_in_the_simulator_commits_across_shards_atomically_and_deterministically() -> None:
    sim, steps = _scenario(seed=1)
    outcomes = [o.committed if o else None for o in (sim.outcome(t) for t in steps)]
    assert outcomes == [True, True, False, True, True], outcomes
    overdraft = sim.outcome(steps[2])
    assert overdraft is not None and "voted no" in overdraft.reason
    a, b = sim.keys_for(1, "acct"), sim.keys_for(2, "acct")
    assert sim.values(a) == {"70"} and sim.values(b) == {"35"}
    again, _ = _scenario(seed=1)
    assert [(t, node, o.txn_id, o.committed) for t, node, o in again.answers] == [
        (t, node, o.txn_id, o.committed) for t, node, o in sim.answers
    ]
