"""An in-memory, deterministic network of HRB core replicas and stub shards.

Nodes 1..N are dealt into shards by ``genesis``; the core's replicas run
chained HotStuff (built through its binding) and certify decisions with a
threshold suite (the cost model by default, BLS when asked). Messages travel
through one heap ordered by (delivery time, sequence number) with a seeded
latency; ``drop_rate`` loses core-group messages at random; nodes crash and
restart from what they persisted (``MemoryStorage``-like dicts per group).

A ``StubShard`` stands for a whole shard: it receives the certificates its
members are sent, checks them with a ``CoreKeyChain`` as a shard would, and
answers a ``TxnBegin`` with a ``ShardVote`` signed by its leader (and by 2f + 1
members in byzantine mode) according to a policy the test sets: ``yes``,
``no``, ``silent`` (never votes) or ``late`` (votes after ``late_s``). It
records every decision it applies, so a test can check atomicity across
shards.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from quorate.core.binding import BftSettings, ClusterContext
from quorate.core.ready import Entry, Rejection
from quorate.crypto.dkg import encryption_keypair
from quorate.crypto.keyring import CostModelKeyring
from quorate.hotstuff.binding import BINDING as HOTSTUFF
from quorate.hotstuff.config import HotStuffConfig
from quorate.hrb.core.certify import CoreKeyChain
from quorate.hrb.core.config import CoreConfig, CoreRules
from quorate.hrb.core.genesis import CoreGenesis, genesis
from quorate.hrb.core.replica import CoreReplica, ReplicaPhase
from quorate.hrb.core.threshold import CostModelSuite, ThresholdSuite
from quorate.hrb.messages import (
    CORE_GROUP_BASE,
    CoreCertificate,
    Decision,
    EpochChange,
    Evict,
    ShardProof,
    ShardVote,
    Transaction,
    TxnBegin,
    TxnDecision,
    TxnOp,
    TxnRequest,
    shard_vote_bytes,
    txn_request_bytes,
)
from quorate.hrb.txn import involved_shards, shard_of_key
from quorate.ids import NodeId
from quorate.pbft.binding import BINDING as PBFT
from quorate.pbft.config import PbftConfig
from quorate.storage.base import Recovered

FAST_HOTSTUFF = HotStuffConfig(view_timeout_s=0.2, max_view_timeout_s=1.6, batch_max=32)
FAST_PBFT = PbftConfig(view_change_timeout_s=0.3, retransmit_interval_s=0.1, batch_timeout_s=0.002)
SPIN_LIMIT = 1000
"""Wake-ups of one replica at one instant that count as a livelock."""
FAST_CORE = CoreConfig(certificate_timeout_s=0.3, max_certificate_timeout_s=2.0, dkg_phase_timeout_s=0.5, join_retry_s=0.5)


def txn_id(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()[:16]


@dataclass
class Disk:
    """What one (node, group) persisted."""

    hard_state: Any = None
    snapshot: Any = None
    entries: list[Entry] = field(default_factory=list)


class StubShard:
    """A whole shard, as the core sees it (see the module docstring)."""

    def __init__(self, net: CoreNetwork, shard: int, members: tuple[int, ...]) -> None:
        self.net = net
        self.shard = shard
        self.members = members
        # The shard's leader is a member outside the genesis core, when there is one.
        self.leader = next((m for m in members if m not in net.genesis.members), members[0])
        self.term = 1
        self.policy: dict[bytes, str] = {}
        self.default_policy = "yes"
        self.late_s = 1.0
        self.chain = CoreKeyChain(net.suite.verify_group, 0, net.genesis.group_public_key, net.genesis.members)
        self.applied: dict[bytes, bool] = {}
        """txn id -> the decision this shard applied (first certificate seen)."""
        self.decision_counts: Counter[bytes] = Counter()
        self.begun: set[bytes] = set()
        self.evicted: list[int] = []
        self.epochs: list[int] = []
        self.refused: list[str] = []
        self.index = 0
        self.sent_votes: dict[bytes, bool] = {}
        self.decided_at: dict[bytes, set[tuple[int, int]]] = {}
        """txn id -> the (epoch, index) of every decision certificate seen for it."""

    def receive(self, node: NodeId, certificate: CoreCertificate) -> None:
        decision, reason = self.chain.accept(certificate)
        if decision is None:
            self.refused.append(reason)
            return
        if isinstance(decision, TxnDecision):
            self.decided_at.setdefault(decision.txn_id, set()).add((certificate.epoch, certificate.index))
        self.apply(decision, certificate.epoch)

    def apply(self, decision: Decision, epoch: int) -> None:
        if isinstance(decision, TxnBegin):
            if self.shard in decision.shards and decision.txn.txn_id not in self.begun:
                self.begun.add(decision.txn.txn_id)
                self._vote_on(decision.txn)
        elif isinstance(decision, TxnDecision):
            if decision.txn_id not in self.applied:
                self.applied[decision.txn_id] = decision.commit
            else:
                assert self.applied[decision.txn_id] == decision.commit, "two decisions for one transaction"
            self.decision_counts[decision.txn_id] += 1
        elif isinstance(decision, Evict):
            if decision.node not in self.evicted:
                self.evicted.append(decision.node)
                self.members = tuple(m for m in self.members if m != decision.node)
                if self.leader == decision.node:
                    self.leader = self.members[0]
                    self.term += 1
        elif isinstance(decision, EpochChange) and decision.epoch not in self.epochs:
            self.epochs.append(decision.epoch)
            self.resend_votes()

    def _vote_on(self, txn: Transaction) -> None:
        policy = self.policy.get(txn.txn_id, self.default_policy)
        if policy == "silent":
            return
        if policy == "late":
            self.net.later(self.late_s, lambda: self.send_vote(txn.txn_id, True))
            return
        self.send_vote(txn.txn_id, policy == "yes")

    def vote(self, txn_id_: bytes, yes: bool, *, leader: int | None = None, acks: int | None = None) -> ShardVote:
        leader = self.leader if leader is None else leader
        self.index += 1
        reason = "" if yes else "condition failed"
        data = shard_vote_bytes(txn_id_, self.shard, yes, reason, self.term, self.index, b"digest")
        keyring = self.net.keyring
        ack_sigs: dict[int, bytes] = {}
        if self.net.rules.shard_quorum == "byzantine":
            count = (2 * ((len(self.members) - 1) // 3) + 1) if acks is None else acks
            for m in self.members[:count]:
                ack_sigs[m] = keyring.signer(NodeId(m)).sign(data)
        proof = ShardProof(self.term, self.index, b"digest", leader, keyring.signer(NodeId(leader)).sign(data), ack_sigs)
        return ShardVote(txn_id_, self.shard, yes, reason, proof)

    def send_vote(self, txn_id_: bytes, yes: bool) -> None:
        self.sent_votes.setdefault(txn_id_, yes)
        yes = self.sent_votes[txn_id_]
        self.net.to_core(self.leader, self.vote(txn_id_, yes))

    def resend_votes(self) -> None:
        """After an epoch change: votes not yet decided go to the new core."""
        for tid, yes in self.sent_votes.items():
            if tid not in self.applied:
                self.net.to_core(self.leader, self.vote(tid, yes))

    def request(self, txn: Transaction, *, leader: int | None = None, term: int | None = None) -> TxnRequest:
        leader = self.leader if leader is None else leader
        term = self.term if term is None else term
        data = txn_request_bytes(self.shard, leader, term, txn)
        return TxnRequest(self.shard, leader, term, txn, self.net.keyring.signer(NodeId(leader)).sign(data))


class CoreNetwork:
    """``nodes`` nodes in shards of ``shard_size`` with a core of ``core_size``."""

    def __init__(
        self,
        nodes: int = 12,
        *,
        shard_size: int = 4,
        core_size: int = 4,
        seed: int = 1,
        rules: CoreRules | None = None,
        suite: ThresholdSuite | None = None,
        hotstuff: HotStuffConfig = FAST_HOTSTUFF,
        bft: str = "hotstuff",
        config: CoreConfig = FAST_CORE,
        latency_s: tuple[float, float] = (0.001, 0.01),
        drop_rate: float = 0.0,
        byzantine: dict[int, str] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.rules = rules or CoreRules(core_size=core_size, epoch_length=10**9, txn_timeout_s=2.0, tick_interval_s=0.1)
        self.suite: ThresholdSuite = suite or CostModelSuite(b"net-%d" % seed)
        self.keyring = CostModelKeyring(seed)
        self.config = config
        self.latency_s = latency_s
        self.drop_rate = drop_rate
        self.encryption = {NodeId(n): encryption_keypair(b"node %d" % n) for n in range(1, nodes + 1)}
        self.genesis: CoreGenesis = genesis(
            {n: pub for n, (_, pub) in self.encryption.items()},
            shard_size=shard_size,
            seed=b"genesis-%d" % seed,
            suite=self.suite,
            rules=self.rules,
        )
        self.nodes = [NodeId(n) for n in range(1, nodes + 1)]
        context = ClusterContext(self.keyring, dict(byzantine or {}))
        if bft == "pbft":
            self.bft = PBFT.builder(BftSettings(FAST_PBFT), context)
        else:
            self.bft = HOTSTUFF.builder(BftSettings(hotstuff), context)
        self.bft_name = bft
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._spins = 0
        self.hosted: dict[tuple[NodeId, int], CoreReplica] = {}
        self.disk: dict[tuple[NodeId, int], Disk] = {}
        self.wake: dict[tuple[NodeId, int], float] = {}
        self.crashed: set[NodeId] = set()
        self.rejections: list[tuple[NodeId, int, Rejection]] = []
        self.sent: Counter[str] = Counter()
        """Messages sent among core members (same group), by type name."""
        self.outbound_sent: Counter[str] = Counter()
        self.members_of: dict[int, tuple[int, ...]] = {0: self.genesis.members}
        self.shards = {k: StubShard(self, k, m) for k, m in self.genesis.shards.items()}
        self.decisions: dict[tuple[NodeId, int], list[tuple[int, bytes]]] = {}
        for node in self.genesis.members:
            self._host(node, 0, start=True)

    # -- building replicas ------------------------------------------------------------------
    def _replica(self, node: NodeId, epoch: int, *, start: bool = False, recovered: Any = None) -> CoreReplica:
        return CoreReplica(
            node,
            epoch,
            bft=self.bft,
            suite=self.suite,
            signer=self.keyring.signer(node),
            verifier=self.keyring.verifier(node),
            rng=random.Random(f"{self.seed}:{node}:{epoch}"),
            now=self.now,
            config=self.config,
            start=self.genesis.start_for(node) if start else None,
            recovered=recovered,
            previous_members=tuple(NodeId(m) for m in self.members_of.get(epoch - 1, ())),
            encryption_secret=self.encryption[node][0],
            bft_name=self.bft_name,
        )

    def _host(self, node: NodeId, epoch: int, *, start: bool = False, recovered: Any = None) -> CoreReplica:
        replica = self._replica(node, epoch, start=start, recovered=recovered)
        key = (node, CORE_GROUP_BASE + epoch)
        self.hosted[key] = replica
        self.disk.setdefault(key, Disk())
        self._drive(key)
        return replica

    def replica(self, node: int, epoch: int = 0) -> CoreReplica:
        return self.hosted[(NodeId(node), CORE_GROUP_BASE + epoch)]

    def replicas(self, epoch: int = 0) -> list[CoreReplica]:
        group = CORE_GROUP_BASE + epoch
        return [r for (n, g), r in sorted(self.hosted.items()) if g == group and n not in self.crashed]

    # -- sending ------------------------------------------------------------------------------------
    def _send(self, src: NodeId, dst: NodeId, group: int, message: Any) -> None:
        if src in self.crashed:
            return
        if group >= CORE_GROUP_BASE and self.drop_rate and self.rng.random() < self.drop_rate:
            return
        lo, hi = self.latency_s
        self._seq += 1
        heapq.heappush(self._heap, (self.now + self.rng.uniform(lo, hi), self._seq, 0, (src, dst, group, message)))

    def later(self, delay_s: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay_s, self._seq, 1, action))

    def current_epoch(self) -> int:
        return max(self.members_of)

    def to_core(self, src: int, message: Any, *, epoch: int | None = None, members: Iterable[int] | None = None) -> None:
        """A shard node sends ``message`` to the core (every member, by default)."""
        epoch = self.current_epoch() if epoch is None else epoch
        targets = self.members_of[epoch] if members is None else tuple(members)
        for member in targets:
            self._send(NodeId(src), NodeId(member), CORE_GROUP_BASE + epoch, message)

    def _drive(self, key: tuple[NodeId, int]) -> None:
        node, group = key
        replica = self.hosted.get(key)
        if replica is None or node in self.crashed:
            return
        disk = self.disk[key]
        while True:
            ready = replica.ready()
            if ready.snapshot is not None:
                disk.snapshot = ready.snapshot
            if ready.hard_state is not None:
                disk.hard_state = ready.hard_state
            disk.entries.extend(ready.entries)
            for to, message in ready.messages:
                self.sent[type(message).__name__] += 1
                self._send(node, to, group, message)
            for to, to_group, message in replica.take_outbound():
                self.outbound_sent[type(message).__name__] += 1
                self._send(node, to, to_group, message)
            self.rejections.extend((node, group, r) for r in ready.rejected)
            replica.advance(ready)
            if ready.wake_at is None:
                self.wake.pop(key, None)
            else:
                self.wake[key] = ready.wake_at
            if not replica.has_ready():
                break
        self._after(key, replica)

    def _after(self, key: tuple[NodeId, int], replica: CoreReplica) -> None:
        state = replica.state
        if state is not None and replica.phase is ReplicaPhase.CLOSED:
            transition = state.s.transition
            if transition is not None and transition.epoch not in self.members_of:
                self.members_of[transition.epoch] = transition.members

    def _deliver(self, src: NodeId, dst: NodeId, group: int, message: Any) -> None:
        if dst in self.crashed:
            return
        if group < CORE_GROUP_BASE:
            if isinstance(message, CoreCertificate):
                self.shards[group].receive(dst, message)
            return
        key = (dst, group)
        replica = self.hosted.get(key)
        if replica is None:
            epoch = group - CORE_GROUP_BASE
            if epoch - 1 not in self.members_of:
                return
            replica = self._host(dst, epoch)
        replica.step(src, message, self.now)
        self._drive(key)

    # -- running ------------------------------------------------------------------------------------
    def run_until(self, t_end: float, *, until: Callable[[], bool] | None = None) -> None:
        while True:
            if until is not None and until():
                return
            t_msg = self._heap[0][0] if self._heap else float("inf")
            live = [(t, k) for k, t in self.wake.items() if k[0] not in self.crashed]
            t_timer, key = min(live, default=(float("inf"), None))
            t = min(t_msg, t_timer)
            if t > t_end:
                self.now = max(self.now, t_end)
                return
            self.now = max(self.now, t)
            if t_msg <= t_timer:
                _, _, kind, payload = heapq.heappop(self._heap)
                if kind == 1:
                    payload()
                else:
                    self._deliver(*payload)
            else:
                assert key is not None
                del self.wake[key]
                self.hosted[key].tick(self.now)
                self._drive(key)
                # A replica woken at a deadline must move it: the same wake-up
                # again and again at one instant is a livelock.
                same = self.wake.get(key) == self.now
                self._spins = self._spins + 1 if same else 0
                assert self._spins < SPIN_LIMIT, f"seed={self.seed}: {key} wakes at {self.now} forever"

    def run_for(self, seconds: float, **kw: Any) -> None:
        self.run_until(self.now + seconds, **kw)

    # -- faults ---------------------------------------------------------------------------------------
    def crash(self, node: int) -> None:
        self.crashed.add(NodeId(node))
        for key in [k for k in self.wake if k[0] == node]:
            del self.wake[key]

    def restart(self, node: int) -> None:
        node = NodeId(node)
        self.crashed.discard(node)
        for key in [k for k in self.hosted if k[0] == node]:
            disk = self.disk[key]
            recovered = Recovered(hard_state=disk.hard_state, snapshot=disk.snapshot, entries=list(disk.entries))
            epoch = key[1] - CORE_GROUP_BASE
            if disk.snapshot is None:
                del self.hosted[key]  # it was still joining: it will be asked again
                continue
            self.hosted[key] = self._replica(node, epoch, recovered=recovered)
            self._drive(key)

    # -- workload --------------------------------------------------------------------------------------
    def transaction(self, tag: str, home: int, keys: Iterable[str]) -> Transaction:
        return Transaction(txn_id(tag), 1, self._next_seq(), home, tuple(TxnOp(k, "put", tag) for k in keys))

    _client_seq = 0

    def _next_seq(self) -> int:
        self._client_seq += 1
        return self._client_seq

    def submit(self, txn: Transaction, **kw: Any) -> TxnRequest:
        shard = self.shards[txn.home_shard]
        request = shard.request(txn, **kw)
        self.to_core(shard.leader if kw.get("leader") is None else kw["leader"], request)
        return request

    def keys_for(self, shard: int, count: int, prefix: str = "k") -> list[str]:
        """``count`` keys owned by ``shard``."""
        out, i = [], 0
        while len(out) < count:
            key = f"{prefix}{i}"
            if shard_of_key(key, len(self.shards)) == shard:
                out.append(key)
            i += 1
        return out

    # -- checks ---------------------------------------------------------------------------------------
    def honest_states(self, epoch: int) -> list[Any]:
        return [r.state for r in self.replicas(epoch) if r.state is not None]

    def check_agreement(self, epoch: int) -> None:
        """Every live replica of ``epoch`` applied the same decisions (a
        prefix of the longest) and its invariants hold."""
        chains = []
        for replica in self.replicas(epoch):
            if replica.state is None:
                continue
            replica.check()
            chains.append((replica.state.s.decisions, replica.state.s.chain, replica.id))
        by_count: dict[int, set[bytes]] = {}
        for count, chain, _ in chains:
            by_count.setdefault(count, set()).add(chain)
        for count, found in by_count.items():
            assert len(found) == 1, f"seed={self.seed}: replicas disagree after {count} decisions"

    def check_atomicity(self, txns: Iterable[Transaction]) -> dict[bytes, bool | None]:
        """Every transaction is decided at most once (one certificate index),
        every shard that applied it applied the same outcome, and a commit
        had a yes vote from every involved shard. Returns txn id -> outcome
        (None: undecided)."""
        out: dict[bytes, bool | None] = {}
        for txn in txns:
            involved = set(involved_shards(txn, len(self.shards)))
            tell = involved | {txn.home_shard}
            where = set()
            for k in tell:
                where |= self.shards[k].decided_at.get(txn.txn_id, set())
            assert len(where) <= 1, f"seed={self.seed}: transaction decided at {sorted(where)}"
            applied = {k: self.shards[k].applied[txn.txn_id] for k in tell if txn.txn_id in self.shards[k].applied}
            assert len(set(applied.values())) <= 1, f"seed={self.seed}: shards applied different outcomes {applied}"
            outcome = next(iter(applied.values()), None)
            if outcome:
                assert all(self.shards[k].sent_votes.get(txn.txn_id) is True for k in involved), (
                    f"seed={self.seed}: commit without a yes vote from every involved shard"
                )
            out[txn.txn_id] = outcome
        return out
