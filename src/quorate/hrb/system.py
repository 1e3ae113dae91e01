"""HRB composed: what joins the shard tier (``hrb/shard/``) to the core tier
(``hrb/core/``) so that real shard groups and a real core run as one system
(``docs/hrb.md`` sections 1, 4 and 8).

Theory of operation. The two tiers never import each other's internals; they
meet only through ``quorate.hrb.messages``. Four things must agree between
them, and this module is the one place that makes them agree:

- **who owns a key**: the core computes a transaction's involved shards with
  ``quorate.hrb.txn.shard_of_key`` (rendezvous hashing); a shard validates
  entries and prepares operations with an injected ``KeyShard``. Both must be
  the same map, or a shard would refuse (or ignore) operations the core
  sends it: ``key_shard`` is that map for the shard tier.
- **the first core**: a shard checks core certificates against the epoch
  keys it knows, starting from a genesis ``EpochChange``; ``genesis_epoch``
  derives it from the core's ``CoreGenesis`` (epoch 0's members, threshold
  and group public key), and ``certificate_check`` is the threshold suite's
  group verification, the shard's ``CertificateCheck``.
- **what shard evidence means**: the core judges a ``SignedMessageEvidence``
  (two disagreeing chain proofs, a forged commit, an invalid entry) through
  an injected ``SignedMessageChecker``; ``ShardEvidenceChecker`` is the shard
  tier's verification (``verify_shard_evidence``) with the shard's commit
  quorum and its stateless entry validation, so every core member reaches
  the same verdict from public keys and the evidence alone.
- **where a shard's messages to the core go**: a shard member queues
  ``TxnRequest``, ``ShardVote`` and ``RemovalProposal`` with
  ``take_core_messages``; ``route_to_core`` addresses them to every member
  of the core epoch the shard's store last learned (group
  ``CORE_GROUP_BASE + epoch``), in the ``(to, group, message)`` form the core
  replica's own ``take_outbound`` uses. Every member receives a copy: the
  core's members propose what they receive, and duplicates are refused as
  such, so one faulty member cannot drop a shard's request.

``build_shard_member`` and ``build_core_member`` construct one node's
replicas for a ``Deployment`` (the genesis, the threshold suite and the
settings every node is given), so a test harness and the simulator build
them the same way. ``ShardMember`` is a shard replica as a node host hosts
it: the same core, plus the host's optional ``CrossGroupOutput`` role
(``quorate.core.host``), whose ``take_outbound`` is ``route_to_core`` of
what the replica queued for the core; the core replica offers that role
itself.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from quorate.core.binding import CoreBuilder
from quorate.core.protocol import ProposeOutcome
from quorate.core.quorum import bft_quorum
from quorate.core.ready import Ready
from quorate.core.signing import Signer, Verifier
from quorate.hrb.core.config import CoreConfig
from quorate.hrb.core.genesis import CoreGenesis
from quorate.hrb.core.replica import CoreReplica, GroupMessage
from quorate.hrb.core.threshold import ThresholdSuite
from quorate.hrb.messages import CORE_GROUP_BASE, EpochChange, SignedMessageEvidence
from quorate.hrb.reshard import ShardHandoff
from quorate.hrb.shard.config import ShardConfig
from quorate.hrb.shard.evidence import EVIDENCE_KINDS, verify_shard_evidence
from quorate.hrb.shard.proofs import FollowerMajorityQuorum
from quorate.hrb.shard.replica import CoreMessage, ShardReplica
from quorate.hrb.shard.state import CertificateCheck, EntryRules, KeyShard, ShardStore, TxnOutcome
from quorate.hrb.txn import shard_of_key
from quorate.ids import NodeId

__all__ = [
    "Deployment",
    "ShardEvidenceChecker",
    "ShardMember",
    "build_core_member",
    "build_shard_member",
    "certificate_check",
    "genesis_epoch",
    "key_shard",
    "route_to_core",
]


_DEFAULT_SHARD = ShardConfig()


def key_shard(shards: int) -> KeyShard:
    """The core's key -> shard map (``shard_of_key``), for the shard tier."""
    if shards < 1:
        raise ValueError(f"there is at least one shard, got {shards}")

    def owner(key: str) -> int:
        return shard_of_key(key, shards)

    return owner


def genesis_epoch(genesis: CoreGenesis) -> EpochChange:
    """Epoch 0's core as a shard learns it at genesis."""
    snapshot = genesis.snapshot
    return EpochChange(snapshot.epoch, tuple(snapshot.members), snapshot.threshold, genesis.group_public_key)


def certificate_check(suite: ThresholdSuite) -> CertificateCheck:
    """The shard's check of a core threshold signature, by ``suite``."""
    return suite.verify_group


def shard_commit_quorum(members: int, shard_quorum: str) -> int:
    """Signed acknowledgements a commit certificate of a shard of ``members`` needs."""
    if shard_quorum == "byzantine":
        return bft_quorum(members)
    return FollowerMajorityQuorum().commit_quorum(members)


@dataclass(frozen=True, slots=True)
class ShardEvidenceChecker:
    """The shard tier's judgement of signed-message evidence, for the core
    (a ``quorate.hrb.core.SignedMessageChecker``; deterministic, never raises).

    ``shards``: how many shards exist; ``max_txn_ops`` / ``max_txn_bytes``:
    the shards' entry limits (``ShardConfig``), which an invalid entry is
    judged against."""

    shards: int
    max_txn_ops: int = _DEFAULT_SHARD.max_txn_ops
    max_txn_bytes: int = _DEFAULT_SHARD.max_txn_bytes
    dynamic: bool = False
    """Dynamic sharding: an entry's keys are judged when it is applied, so no
    key ownership makes an entry invalid (``EntryRules.dynamic``)."""

    def __call__(
        self,
        evidence: SignedMessageEvidence,
        members: tuple[int, ...],
        shard_quorum: str,
        verifier: Verifier,
    ) -> bool | None:
        if evidence.kind not in EVIDENCE_KINDS:
            return None
        if not 1 <= evidence.shard <= self.shards or not members:
            return False
        rules = EntryRules(
            evidence.shard, self.shards, key_shard(self.shards), self.max_txn_ops, self.max_txn_bytes,
            dynamic=self.dynamic,
        )
        reason = verify_shard_evidence(
            evidence,
            shard=evidence.shard,
            voters=frozenset(NodeId(m) for m in members),
            commit_quorum=shard_commit_quorum(len(members), shard_quorum),
            verifier=verifier,
            entry_refusal=rules.entry_refusal,
        )
        return reason is None


def route_to_core(messages: Iterable[CoreMessage], store: ShardStore) -> list[GroupMessage]:
    """Address a shard member's messages for the core to every member of the
    core epoch ``store`` knows (see the module docstring)."""
    group = CORE_GROUP_BASE + store.epoch
    members = store.epoch_members()
    return [(NodeId(member), group, message) for message in messages for member in members]


class ShardMember:
    """A shard replica (or its Byzantine wrapper) with the node host's
    ``CrossGroupOutput`` role (see the module docstring); every other call
    goes to ``member`` unchanged."""

    __slots__ = ("_store", "member")

    def __init__(self, member: Any, store: ShardStore) -> None:
        self.member = member
        self._store = store

    @property
    def id(self) -> NodeId:
        node: NodeId = self.member.id
        return node

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self.member.step(sender, message, now)

    def tick(self, now: float) -> None:
        self.member.tick(now)

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        outcome: ProposeOutcome = self.member.propose(command, now)
        return outcome

    def has_ready(self) -> bool:
        return bool(self.member.has_ready())

    def ready(self) -> Ready:
        ready: Ready = self.member.ready()
        return ready

    def advance(self, ready: Ready) -> None:
        self.member.advance(ready)

    def wake_at(self) -> float | None:
        wake: float | None = self.member.wake_at()
        return wake

    def take_outbound(self) -> list[GroupMessage]:
        messages = self.member.take_core_messages()
        return route_to_core(messages, self._store) if messages else []

    def take_results(self) -> list[TxnOutcome]:
        """Transaction outcomes for this shard's agents (see ``ShardReplica``)."""
        results: list[TxnOutcome] = self.member.take_results()
        return results


@dataclass(frozen=True)
class Deployment:
    """What every node of one HRB deployment is given: the genesis, the
    threshold suite, the shard settings (``shard`` is set per member) and the
    core's settings."""

    genesis: CoreGenesis
    suite: ThresholdSuite
    shard_config: ShardConfig = field(default_factory=ShardConfig)
    core_config: CoreConfig = field(default_factory=CoreConfig)
    shard_map: Any = None
    """Dynamic sharding: the genesis ``quorate.hrb.reshard.ShardMap`` (None: the
    fixed rendezvous map)."""

    @property
    def shards(self) -> dict[int, tuple[int, ...]]:
        return self.genesis.shards

    @property
    def core_members(self) -> tuple[int, ...]:
        return self.genesis.members

    def shard_of(self, node: int) -> int:
        for shard, members in self.shards.items():
            if node in members:
                return shard
        raise KeyError(f"node {node} is in no shard")

    def checker(self) -> ShardEvidenceChecker:
        c = self.shard_config
        return ShardEvidenceChecker(len(self.shards), c.max_txn_ops, c.max_txn_bytes, self.shard_map is not None)


def build_shard_member(
    deployment: Deployment,
    node: NodeId,
    *,
    signer: Signer,
    verifier: Verifier,
    rng: random.Random,
    now: float,
    recovered: Any = None,
) -> ShardReplica:
    """``node``'s replica of its shard (the group whose id is the shard's)."""
    shard = deployment.shard_of(node)
    config = dataclasses.replace(deployment.shard_config, shard=shard, shards=len(deployment.shards))
    handoff = None
    owner = key_shard(len(deployment.shards))
    if deployment.shard_map is not None:
        handoff = owner = ShardHandoff(shard, deployment.shard_map)
    replica = ShardReplica(
        node,
        tuple(NodeId(m) for m in deployment.shards[shard]),
        config=config,
        signer=signer,
        verifier=verifier,
        rng=rng,
        now=now,
        key_shard=owner,
        check_certificate=certificate_check(deployment.suite),
        genesis=genesis_epoch(deployment.genesis),
        recovered=recovered,
    )
    replica.store.handoff = handoff
    return replica


def build_core_member(
    deployment: Deployment,
    node: NodeId,
    *,
    bft: CoreBuilder,
    signer: Signer,
    verifier: Verifier,
    rng: random.Random,
    now: float,
    recovered: Any = None,
    bft_name: str = "hotstuff",
) -> CoreReplica:
    """Epoch 0's core replica of genesis member ``node``."""
    return CoreReplica(
        node,
        0,
        bft=bft,
        suite=deployment.suite,
        signer=signer,
        verifier=verifier,
        rng=rng,
        now=now,
        config=deployment.core_config,
        checker=deployment.checker(),
        start=deployment.genesis.start_for(node),
        recovered=recovered,
        bft_name=bft_name,
    )
