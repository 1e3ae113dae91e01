"""An in-memory, deterministic network of a whole HRB deployment: real
watched-Raft shard groups (``hrb.shard.ShardReplica``) and the real core
(``hrb.core.CoreReplica`` on chained HotStuff), composed by
``quorate.hrb.system``.

Every node hosts its shard's group (group id = shard id) and, if it is in
epoch 0's core, the core group (``CORE_GROUP_BASE``). Messages carry their
group and travel through one heap ordered by (delivery time, sequence
number) with a seeded latency, first in first out on each link (as over TCP); a replica is woken only at the deadline it
asked for. Each (node, group) is driven as the node host drives it: its
Ready's messages go out on its own group, and what it has for other groups
(the core's ``take_outbound``, a shard member's ``take_core_messages``
routed by ``route_to_core``) goes out on theirs.

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
from quorate.core.ready import Rejection
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
from quorate.hrb.system import Deployment, build_core_member, build_shard_member, route_to_core
from quorate.hrb.txn import shard_of_key
from quorate.ids import NodeId
from quorate.raft import RaftConfig

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
        self.hosted: dict[tuple[NodeId, int], Any] = {}
        self.wake: dict[tuple[NodeId, int], float] = {}
        self.rejections: list[tuple[NodeId, int, Rejection]] = []
        self.results: dict[NodeId, list[TxnOutcome]] = {n: [] for n in self.nodes}
        self.monitors = {k: ShardSafetyMonitor() for k in self.deployment.shards}
        for node in self.nodes:
            self.hosted[(node, self.deployment.shard_of(node))] = self._shard_member(node)
        for node in self.deployment.core_members:
            nid = NodeId(node)
            self.hosted[(nid, CORE_GROUP_BASE)] = build_core_member(
                self.deployment,
                nid,
                bft=self.bft,
                signer=self.keyring.signer(nid),
                verifier=self.keyring.verifier(nid),
                rng=random.Random(f"{seed}:core:{node}"),
                now=self.now,
            )
        for key in sorted(self.hosted):
            self._drive(key)

    def _shard_member(self, node: NodeId) -> Any:
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
            return replica
        return ByzantineShardReplica(replica, behaviour, rng=random.Random(f"{self.seed}:byz:{node}"))

    # -- views ---------------------------------------------------------------------------------
    def shard_replica(self, node: int) -> ShardReplica:
        """The honest core of ``node``'s shard member (inside its Byzantine wrapper, if any)."""
        nid = NodeId(node)
        member = self.hosted[(nid, self.deployment.shard_of(nid))]
        return member.inner if isinstance(member, ByzantineShardReplica) else member

    def honest_shard(self, shard: int) -> list[ShardReplica]:
        return [self.shard_replica(n) for n in self.deployment.shards[shard] if NodeId(n) not in self.byzantine]

    def core(self) -> list[CoreReplica]:
        return [r for (_, g), r in sorted(self.hosted.items()) if g == CORE_GROUP_BASE]

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

    def _drive(self, key: tuple[NodeId, int]) -> None:
        node, group = key
        member = self.hosted[key]
        while True:
            ready = member.ready()
            for to, message in ready.early_messages:
                self._send(node, to, group, message)
            for to, message in ready.messages:
                self._send(node, to, group, message)
            self.rejections.extend((node, group, r) for r in ready.rejected)
            member.advance(ready)
            if isinstance(member, CoreReplica):
                outbound = member.take_outbound()
            else:
                store = self.shard_replica(node).store
                outbound = route_to_core(member.take_core_messages(), store)
                self.results[node].extend(member.take_results())
            for to, to_group, message in outbound:
                if to == node:
                    self._deliver(node, to, to_group, message)
                else:
                    self._send(node, to, to_group, message)
            if ready.wake_at is None:
                self.wake.pop(key, None)
            else:
                self.wake[key] = ready.wake_at
            if not member.has_ready():
                break
        if group < CORE_GROUP_BASE and node not in self.byzantine:
            self.monitors[group].check(self.shard_replica(node), self.now)

    def _deliver(self, src: NodeId, dst: NodeId, group: int, message: Any) -> None:
        key = (dst, group)
        member = self.hosted.get(key)
        if member is None:
            return  # a group this node does not host (a later core epoch)
        member.step(src, message, self.now)
        self._drive(key)

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
                self.hosted[key].tick(self.now)
                self._drive(key)
                same = self.wake.get(key) == self.now
                self._spins = self._spins + 1 if same else 0
                assert self._spins < SPIN_LIMIT, f"seed={self.seed}: {key} wakes at {self.now} forever"

    def run_for(self, seconds: float, **kw: Any) -> None:
        self.run_until(self.now + seconds, **kw)

    def campaign(self, node: int) -> None:
        """Make ``node`` stand for election in its shard now."""
        nid = NodeId(node)
        key = (nid, self.deployment.shard_of(nid))
        self.shard_replica(nid).raft.campaign(self.now)
        self.hosted[key].tick(self.now)
        self._drive(key)

    # -- agents ------------------------------------------------------------------------------
    def submit(self, via: int, txn: Transaction) -> Any:
        """An agent hands ``txn`` to shard member ``via`` (which orders or forwards it)."""
        nid = NodeId(via)
        key = (nid, self.deployment.shard_of(nid))
        outcome = self.hosted[key].propose(encode_command(ClientTxn(txn)), self.now)
        self._drive(key)
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
