"""An in-memory, deterministic network of a whole HRB deployment: real
watched-Raft shard groups (``hrb.shard.ShardReplica``) and the real core
(``hrb.core.CoreReplica`` on chained HotStuff), composed by
``quorate.hrb.system``.

Every node is a ``quorate.core.host.NodeHost`` driven by the runtimes'
``HostDriver``: it hosts its shard's group (group id = shard id, the
replica wrapped in ``ShardMember``) and, if it is in epoch 0's core, the
core group (``CORE_GROUP_BASE``). Messages carry their group and travel
through one heap ordered by (delivery time, sequence number) with a seeded
latency, first in first out on each link (as over TCP); a node is woken only
at the deadline its host asked for. After each turn, what the groups have
for other groups (``NodeHost.take_outbound``: the core's certificates, a
shard member's requests, votes and evidence for the core) goes out on
those groups; what is for this node itself is stepped into its host.

Signatures are the cost-model keyring's (real forgeries fail), threshold
signatures the cost-model suite's; both tiers check them with public keys
only. After every turn of an honest shard member, ``ShardSafetyMonitor``
checks that honest members agree on what they applied.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any

from quorate.core.binding import BftSettings, ClusterContext
from quorate.core.host import GroupReady, HostedGroup, NodeHost
from quorate.core.ready import Entry, ReadState, Rejection
from quorate.crypto.dkg import encryption_keypair
from quorate.crypto.keyring import CostModelKeyring
from quorate.hotstuff.binding import BINDING as HOTSTUFF
from quorate.hotstuff.config import HotStuffConfig
from quorate.hrb.core.config import CoreConfig, CoreRules
from quorate.hrb.core.genesis import genesis
from quorate.hrb.core.replica import CoreReplica
from quorate.hrb.core.threshold import CostModelSuite
from quorate.hrb.messages import CORE_GROUP_BASE, Transaction, TxnOp
from quorate.hrb.shard.byzantine import ByzantineShardReplica
from quorate.hrb.shard.config import ShardConfig
from quorate.hrb.shard.invariants import ShardSafetyMonitor
from quorate.hrb.shard.replica import ShardReplica
from quorate.hrb.shard.state import ClientTxn, TxnOutcome, encode_command
from quorate.hrb.system import Deployment, ShardMember, build_core_member, build_shard_member
from quorate.hrb.txn import shard_of_key
from quorate.ids import NodeId
from quorate.raft import RaftConfig
from quorate.runtime.driver import HostDriver

FAST_RAFT = RaftConfig(election_timeout_s=1.0, heartbeat_interval_s=0.1, pre_vote=True, check_quorum=True)
FAST_HOTSTUFF = HotStuffConfig(view_timeout_s=0.2, max_view_timeout_s=1.6, batch_max=32)
FAST_CORE = CoreConfig(certificate_timeout_s=0.3, max_certificate_timeout_s=2.0, dkg_phase_timeout_s=0.5, join_retry_s=0.5)
SPIN_LIMIT = 1000
"""Wake-ups of one replica at one instant that count as a livelock."""


def txn_id(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()[:16]


class SystemNet:
    """``shards`` shards of ``shard_size`` and a core of ``core_size``."""

    def __init__(
        self,
        *,
        shards: int = 2,
        shard_size: int = 4,
        core_size: int = 4,
        quorum: str = "byzantine",
        seed: int = 1,
        byzantine: dict[int, str] | None = None,
        latency_s: tuple[float, float] = (0.001, 0.01),
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.latency_s = latency_s
        nodes = shards * shard_size
        rules = CoreRules(
            core_size=core_size, epoch_length=10**9, txn_timeout_s=3.0, tick_interval_s=0.1, shard_quorum=quorum
        )
        self.suite = CostModelSuite(b"system-%d" % seed)
        self.keyring = CostModelKeyring(seed)
        encryption = {NodeId(n): encryption_keypair(b"node %d" % n) for n in range(1, nodes + 1)}
        self.deployment = Deployment(
            genesis(
                {n: pub for n, (_, pub) in encryption.items()},
                shard_size=shard_size,
                seed=b"genesis-%d" % seed,
                suite=self.suite,
                rules=rules,
            ),
            self.suite,
            ShardConfig(quorum=quorum, raft=FAST_RAFT),
            FAST_CORE,
        )
        self.nodes = [NodeId(n) for n in range(1, nodes + 1)]
        self.byzantine = {NodeId(k): v for k, v in (byzantine or {}).items()}
        self.bft = HOTSTUFF.builder(BftSettings(FAST_HOTSTUFF), ClusterContext(self.keyring, {}))
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._spins = 0
        self._link_clear: dict[tuple[NodeId, NodeId], float] = {}
        self.wake: dict[NodeId, float] = {}
        self.rejections: list[tuple[NodeId, int, Rejection]] = []
        self.results: dict[NodeId, list[TxnOutcome]] = {n: [] for n in self.nodes}
        self.monitors = {k: ShardSafetyMonitor() for k in self.deployment.shards}
        self.hosts: dict[NodeId, NodeHost] = {}
        self.drivers: dict[NodeId, HostDriver] = {}
        self.members: dict[NodeId, ShardMember] = {}
        for node in self.nodes:
            host = self.hosts[node] = NodeHost(node)
            self.drivers[node] = HostDriver(host, _Effects(self, node))
            member = self.members[node] = self._shard_member(node)
            host.add(HostedGroup(self.deployment.shard_of(node), member, None))
            if node in self.deployment.core_members:
                core = build_core_member(
                    self.deployment,
                    node,
                    bft=self.bft,
                    signer=self.keyring.signer(node),
                    verifier=self.keyring.verifier(node),
                    rng=random.Random(f"{seed}:core:{node}"),
                    now=self.now,
                )
                host.add(HostedGroup(CORE_GROUP_BASE, core, None))
        for node in self.nodes:
            self._drive(node)

    def _shard_member(self, node: NodeId) -> ShardMember:
        replica = build_shard_member(
            self.deployment,
            node,
            signer=self.keyring.signer(node),
            verifier=self.keyring.verifier(node),
            rng=random.Random(f"{self.seed}:shard:{node}"),
            now=self.now,
        )
        behaviour = self.byzantine.get(node)
        if behaviour is None:
            return ShardMember(replica, replica.store)
        wrapped = ByzantineShardReplica(replica, behaviour, rng=random.Random(f"{self.seed}:byz:{node}"))
        return ShardMember(wrapped, replica.store)

    # -- views ---------------------------------------------------------------------------------
    def shard_replica(self, node: int) -> ShardReplica:
        """The honest core of ``node``'s shard member (inside its Byzantine wrapper, if any)."""
        member = self.members[NodeId(node)].member
        replica: ShardReplica = member.inner if isinstance(member, ByzantineShardReplica) else member
        return replica

    def honest_shard(self, shard: int) -> list[ShardReplica]:
        return [self.shard_replica(n) for n in self.deployment.shards[shard] if NodeId(n) not in self.byzantine]

    def core(self) -> list[CoreReplica]:
        out = []
        for node in self.nodes:
            group = self.hosts[node].get(CORE_GROUP_BASE)
            if group is not None:
                assert isinstance(group.core, CoreReplica)
                out.append(group.core)
        return out

    def leader(self, shard: int) -> ShardReplica | None:
        leaders = [r for r in self.honest_shard(shard) if r.is_leader]
        return max(leaders, key=lambda r: r.term) if leaders else None

    def keys_for(self, shard: int, count: int, prefix: str) -> list[str]:
        """``count`` keys owned by ``shard``."""
        out, i = [], 0
        while len(out) < count:
            key = f"{prefix}{i}"
            if shard_of_key(key, len(self.deployment.shards)) == shard:
                out.append(key)
            i += 1
        return out

    # -- driving -----------------------------------------------------------------------------
    def _send(self, src: NodeId, dst: NodeId, group: int, message: Any) -> None:
        lo, hi = self.latency_s
        self._seq += 1
        # Links are FIFO (as TCP is): a message never overtakes an earlier one on its link.
        link = (src, dst)
        at = max(self.now + self.rng.uniform(lo, hi), self._link_clear.get(link, 0.0))
        self._link_clear[link] = at
        heapq.heappush(self._heap, (at, self._seq, 0, (src, dst, group, message)))

    def _drive(self, node: NodeId) -> None:
        """The node host's turns, then what its groups have for other groups
        (this node's own groups get theirs at once, as if it had arrived)."""
        host, driver = self.hosts[node], self.drivers[node]
        while True:
            driver.drive()
            local = []
            for to, group, message in host.take_outbound():
                if to == node:
                    local.append((group, message))
                else:
                    self._send(node, to, group, message)
            if not local:
                break
            for group, message in local:
                rejection = host.step(node, group, message, self.now)
                if rejection is not None:
                    self.rejections.append((node, group, rejection))
        self.results[node].extend(self.members[node].take_results())
        wake = host.wake_at()
        if wake is None:
            self.wake.pop(node, None)
        else:
            self.wake[node] = wake
        if node not in self.byzantine:
            shard = self.deployment.shard_of(node)
            self.monitors[shard].check(self.shard_replica(node), self.now)

    def _deliver(self, src: NodeId, dst: NodeId, group: int, message: Any) -> None:
        rejection = self.hosts[dst].step(src, group, message, self.now)
        if rejection is not None:
            self.rejections.append((dst, group, rejection))
        self._drive(dst)

    def run_until(self, t_end: float, *, until: Callable[[], bool] | None = None) -> None:
        while True:
            if until is not None and until():
                return
            t_msg = self._heap[0][0] if self._heap else float("inf")
            t_timer, key = min(((t, k) for k, t in self.wake.items()), default=(float("inf"), None))
            t = min(t_msg, t_timer)
            if t > t_end:
                self.now = max(self.now, t_end)
                return
            self.now = max(self.now, t)
            if t_msg <= t_timer:
                _, _, _, payload = heapq.heappop(self._heap)
                self._deliver(*payload)
            else:
                assert key is not None
                del self.wake[key]
                self.hosts[key].tick(self.now)
                self._drive(key)
                same = self.wake.get(key) == self.now
                self._spins = self._spins + 1 if same else 0
                assert self._spins < SPIN_LIMIT, f"seed={self.seed}: {key} wakes at {self.now} forever"

    def run_for(self, seconds: float, **kw: Any) -> None:
        self.run_until(self.now + seconds, **kw)

    def campaign(self, node: int) -> None:
        """Make ``node`` stand for election in its shard now."""
        nid = NodeId(node)
        self.shard_replica(nid).raft.campaign(self.now)
        host = self.hosts[nid]
        group = host.get(self.deployment.shard_of(nid))
        assert group is not None
        host.touch(group)
        self._drive(nid)

    # -- agents ------------------------------------------------------------------------------
    def submit(self, via: int, txn: Transaction) -> Any:
        """An agent hands ``txn`` to shard member ``via`` (which orders or forwards it)."""
        nid = NodeId(via)
        outcome = self.hosts[nid].propose(self.deployment.shard_of(nid), encode_command(ClientTxn(txn)), self.now)
        self._drive(nid)
        return outcome

    def transaction(self, tag: str, home: int, ops: list[TxnOp], *, client: int = 1, seq: int = 1) -> Transaction:
        return Transaction(txn_id(tag), client, seq, home, tuple(ops))

    def outcome(self, txn: Transaction) -> TxnOutcome | None:
        """What the home shard's members reported for ``txn`` (None: nothing yet)."""
        for node in self.deployment.shards[txn.home_shard]:
            for result in self.results[NodeId(node)]:
                if result.txn_id == txn.txn_id:
                    return result
        return None


class _Effects:
    """What one node's ``HostDriver`` turn does here: writes are durable at
    once (the harness keeps no disk), messages go onto the network on their
    group, rejections are recorded."""

    def __init__(self, net: SystemNet, node: NodeId) -> None:
        self.net = net
        self.node = node

    def persist(self, writes: list[GroupReady], sync: bool) -> bool:
        return True

    def send(self, group: HostedGroup, messages: list[tuple[NodeId, Any]]) -> None:
        for to, message in messages:
            self.net._send(self.node, to, group.id, message)

    def restore(self, group: HostedGroup, snapshot: Any) -> None:
        return None

    def apply(self, group: HostedGroup, entries: list[Entry]) -> None:
        return None

    def read_ready(self, group: HostedGroup, read: ReadState) -> None:
        return None

    def rejected(self, group: HostedGroup, rejection: Rejection) -> None:
        self.net.rejections.append((self.node, group.id, rejection))
