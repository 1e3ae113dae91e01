"""HRB on real nodes: what one node of an HRB deployment hosts, built the
same way on every node from the cluster's configuration (``docs/hrb.md``
section 8, ``docs/node-config.md``). Sans-IO: the real runtime reaches it
only through the ``hrb`` binding (``BINDING``, registered in
``quorate.protocols``) and its ``hosting`` role.

Theory of operation.

- **One deployment, derived everywhere.** A node is given every node id of
  the cluster and the ``[options]`` of ``HrbSettings`` (shard size, core
  size, the shards' quorum mode, the BFT protocol of the core, the genesis
  seed, timings). ``deployment`` derives the genesis from them — the shards
  dealt by the genesis beacon, epoch 0's core chosen by reputation (all
  equal at genesis, so by the beacon), the core's threshold BLS key dealt
  from the seed — so every node computes the same deployment with no
  exchange. The dealt key is the trusted setup ``docs/hrb.md`` section 1
  describes: whoever knows the genesis seed can compute every share, as
  with the shared test key seed of the other protocols; a deployment that
  must not trust its operator keys its cores by the distributed key
  generation of an epoch change.
- **Groups.** A node hosts its shard's watched-Raft group (group id = the
  shard, 1..S) as a ``ShardMember`` — whose ``take_outbound`` hands the
  runtime what the shard queued for the core — with a ``NodeDesk`` as the
  group's state, and, on epoch 0's core members, the core group (group id
  ``CORE_GROUP_BASE``), a ``CoreReplica`` whose certificates to shards are
  its own cross-group output. Both recover from what the node's store holds
  of them (``HostingContext.recover``).
- **Epochs.** Epochs are long (``EPOCH_LENGTH`` decisions), so the core
  changes when it must: after the eviction of a core member. The old core
  then runs a key generation among the next members through its log and
  hands the core over; a node asked by a member of epoch e - 1 (as its
  shard learned that epoch) to take part in epoch e joins that epoch's core
  group at run time (``join_group``, the binding's ``joining`` role),
  building a joining ``CoreReplica`` with its X25519 key for the key
  generation; the shards route to the new epoch once they learn its
  certified ``EpochChange``. A restarted node resumes every later core it
  had joined from the start it persisted.
- **Agents.** An agent (``quorate.client.hrb``) sends an ``AgentTxn`` to
  every member of the transaction's home shard; each member's desk
  proposes it (the leader appends; the followers forward and watch that it
  is appended) and answers with an ``AgentOutcome`` once it applied the
  outcome. The agent needs ``reply_quorum`` matching outcomes: one in a
  ``majority`` shard (followers are trusted), f + 1 in a ``byzantine`` one.
  ``LayoutRequest`` answers the deployment (shards, core, quorum mode), so
  an agent needs only the nodes' addresses.
- **Checkpoints.** With ``checkpoint_interval_entries`` > 0 a node also
  hosts its shard's checkpoint group (``CHECKPOINT_GROUP_BASE + shard``, a
  ``quorate.hrb.checkpoint.keeper.ShardCheckpointer``): every that many
  applied entries the members cut, co-sign and keep erasure-coded fragments
  of the shard's state, and a member whose shard log is gone (a fresh or
  deleted data directory) rebuilds its state from its peers' fragments
  before it applies the log after them. Its counters show in the shard's
  status (``hrb.checkpoint.*``).
- **Fault injection.** With ``fault_injection = true`` a node takes
  ``TurnByzantine``: its shard replica is wrapped, from then on, in
  ``ByzantineShardReplica`` with the behaviour named (the wrapper keeps the
  honest replica's bookkeeping, so it can start mid-run); and
  ``CorruptFragment``: one byte of its stored checkpoint fragment is
  flipped (in memory and on disk). Without the option both are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quorate.core.binding import BftSettings, Binding, ClusterContext, GroupStatus, HostingContext
from quorate.core.host import GroupMessage, HostedGroup
from quorate.core.protocol import ProtocolCore, Refused
from quorate.core.wire import WireMessage
from quorate.crypto.erasure import CODECS, CheckpointFragment, CheckpointManifest
from quorate.errors import ConfigError
from quorate.hrb.checkpoint.keeper import (
    CHECKPOINT_GROUP_BASE,
    CheckpointCosign,
    CheckpointWake,
    NoCheckpoint,
    ShardCheckpointer,
    StoredCheckpoint,
    checkpoint_config,
)
from quorate.hrb.checkpoint.recovery import FragmentRequest, ManifestRequest
from quorate.hrb.core.binding import BFT_BINDINGS
from quorate.hrb.core.binding import binding as core_binding
from quorate.hrb.core.config import CoreConfig, CoreRules
from quorate.hrb.core.genesis import genesis
from quorate.hrb.core.replica import CoreReplica
from quorate.hrb.core.threshold import ThresholdSuite
from quorate.hrb.desk import AgentDesk
from quorate.hrb.messages import CORE_GROUP_BASE, Transaction
from quorate.hrb.shard.binding import BINDING as SHARD_BINDING
from quorate.hrb.shard.byzantine import BEHAVIOURS, ByzantineShardReplica
from quorate.hrb.shard.config import ShardConfig
from quorate.hrb.shard.replica import ShardReplica
from quorate.hrb.shard.state import ClientTxn, TxnOutcome, encode_command
from quorate.hrb.system import Deployment, ShardMember, build_core_member, build_shard_member
from quorate.ids import NodeId
from quorate.raft.config import RaftConfig

__all__ = [
    "BINDING",
    "EPOCH_LENGTH",
    "AgentOutcome",
    "AgentTxn",
    "CheckpointedMember",
    "CorruptFragment",
    "CorruptFragmentReply",
    "HrbSettings",
    "LayoutReply",
    "LayoutRequest",
    "NodeDesk",
    "TurnByzantine",
    "TurnByzantineReply",
    "deployment",
    "hosted_groups",
    "reply_quorum",
    "txn_id_of",
]

EPOCH_LENGTH = 1 << 40
"""Core decisions per epoch on real nodes: in effect, epoch 0's core stays."""
QUORUM_MODES = ("majority", "byzantine")
MAX_NODES = 1024
"""Most nodes a real deployment is derived for (the genesis deals them all)."""


# ---------------------------------------------------------------- agents' wire messages
class AgentTxn(WireMessage, tag="hrb.AgentTxn", frozen=True):
    """An agent's transaction, sent to every member of its home shard (on the shard's group)."""

    txn: Transaction


class AgentOutcome(WireMessage, tag="hrb.AgentOutcome", frozen=True):
    """A shard member's answer: the transaction's outcome as it applied it."""

    txn_id: bytes
    client: int
    seq: int
    committed: bool
    node: int
    reason: str = ""
    reads: tuple[tuple[str, str | None], ...] = ()

    def verdict(self) -> tuple[bool, str, tuple[tuple[str, str | None], ...]]:
        """What matching answers must agree on (not who sent them)."""
        return self.committed, self.reason, self.reads


class LayoutRequest(WireMessage, tag="hrb.LayoutRequest", frozen=True):
    seq: int


class LayoutReply(WireMessage, tag="hrb.LayoutReply", frozen=True):
    """The deployment as this node derived it."""

    seq: int
    node: int
    shards: dict[int, tuple[int, ...]]
    core: tuple[int, ...]
    quorum: str
    shard: int
    """The answering node's shard."""
    voters: tuple[int, ...] = ()
    """Its shard's voters now (evicted members removed)."""
    epoch: int = 0
    """The core epoch its shard last learned (a certified ``EpochChange``)."""
    epoch_members: tuple[int, ...] = ()
    """That epoch's core members."""


class TurnByzantine(WireMessage, tag="hrb.TurnByzantine", frozen=True):
    """Fault injection: the receiving node's shard member misbehaves from now on."""

    seq: int
    behaviour: str


class TurnByzantineReply(WireMessage, tag="hrb.TurnByzantineReply", frozen=True):
    seq: int
    ok: bool
    error: str = ""


class CorruptFragment(WireMessage, tag="hrb.CorruptFragment", frozen=True):
    """Fault injection: flip one byte of the receiving node's stored checkpoint fragment."""

    seq: int


class CorruptFragmentReply(WireMessage, tag="hrb.CorruptFragmentReply", frozen=True):
    seq: int
    ok: bool
    error: str = ""
    log_index: int = 0
    """The checkpoint whose fragment was corrupted."""


CLIENT_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (AgentTxn, LayoutRequest, TurnByzantine, CorruptFragment)
REPLY_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (AgentOutcome, LayoutReply, TurnByzantineReply, CorruptFragmentReply)
CHECKPOINT_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (
    CheckpointCosign, NoCheckpoint, CheckpointWake, ManifestRequest, FragmentRequest, CheckpointManifest,
    CheckpointFragment,
)


def txn_id_of(client: int, seq: int) -> bytes:
    """The 16-byte id of an agent's ``seq``-th transaction."""
    return hashlib.sha256(b"quorate/hrb/agent-txn/v1" + client.to_bytes(8, "big") + seq.to_bytes(8, "big")).digest()[:16]


def reply_quorum(shard_size: int, quorum: str) -> int:
    """Matching outcomes an agent needs from a shard of ``shard_size``."""
    return (shard_size - 1) // 3 + 1 if quorum == "byzantine" else 1


# ---------------------------------------------------------------- settings
@dataclass(frozen=True, slots=True)
class HrbSettings:
    """A node's ``[options]`` for ``protocol = "hrb"`` (see ``docs/node-config.md``)."""

    shard_size: int = 4
    """Nodes per shard; the shards are ⌈nodes / shard_size⌉."""
    shards: int = 0
    """If set, the number of shards the cluster must make (a check, 0: no check)."""
    core_size: int = 4
    """Epoch 0's core members (at most ⌈core_size / shards⌉ per shard)."""
    quorum: str = "byzantine"
    """The shards' commit rule: ``byzantine`` (2f + 1 signed acks) or ``majority``."""
    bft: str = "hotstuff"
    """The core's BFT protocol: ``hotstuff`` or ``pbft``."""
    genesis_seed: str = "quorate-hrb-genesis"
    """Fixes the shard deal, the first core and its dealt threshold key."""
    election_timeout_s: float = 1.0
    """The shards' Raft election timeout."""
    heartbeat_interval_s: float = 0.1
    """The shard leaders' heartbeat interval (below the election timeout)."""
    view_timeout_s: float = 0.5
    """HotStuff's first view timeout in the core (``bft = "hotstuff"``)."""
    txn_timeout_s: float = 5.0
    """A cross-shard transaction not decided in this much core log time aborts."""
    tick_interval_s: float = 0.25
    """One tick of the core's log clock (members propose ticks this often while something waits for time)."""
    inclusion_bound_s: float = 2.0
    """A request a shard follower forwarded must be in the log within this, else it suspects censorship."""
    challenge_interval_s: float = 1.0
    """How often a shard follower challenges its leader for its signed head."""
    response_bound_s: float = 0.5
    """A challenge answered later than this raises a suspicion (below challenge_interval_s)."""
    certificate_timeout_s: float = 0.5
    """A core member waiting this long for a decision's certificate sends its partial to the next collector."""
    fault_injection: bool = False
    """Accept ``TurnByzantine`` and ``CorruptFragment`` requests (tests and ``quorate demo hrb`` only)."""
    checkpoint_interval_entries: int = 0
    """Cut an erasure-coded checkpoint of the shard every this many applied entries (0: none)."""
    checkpoint_codec: str = "pyeclib"
    """The Reed-Solomon library of the checkpoints (``pyeclib`` or ``zfec``; the same on every node)."""
    checkpoint_request_timeout_s: float = 1.0
    """A rebuilding member asks another peer when one does not answer within this."""
    checkpoint_rebuild_timeout_s: float = 15.0
    """A rebuild not finished within this gives up; the member replays the whole log instead."""

    def validate(self) -> HrbSettings:
        for name in ("shard_size", "core_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.shards, bool) or not isinstance(self.shards, int) or self.shards < 0:
            raise ConfigError(f"shards must be an integer >= 0 (0: as the nodes make), got {self.shards!r}")
        if self.quorum not in QUORUM_MODES:
            raise ConfigError(f"quorum must be one of {', '.join(QUORUM_MODES)}, got {self.quorum!r}")
        if self.bft not in BFT_BINDINGS:
            raise ConfigError(f"bft must be one of {', '.join(BFT_BINDINGS)}, got {self.bft!r}")
        if not isinstance(self.genesis_seed, str) or not self.genesis_seed:
            raise ConfigError("genesis_seed must be a non-empty string")
        if not isinstance(self.fault_injection, bool):
            raise ConfigError(f"fault_injection must be true or false, got {self.fault_injection!r}")
        interval = self.checkpoint_interval_entries
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
            raise ConfigError(f"checkpoint_interval_entries must be an integer >= 0 (0: no checkpoints), got {interval!r}")
        if self.checkpoint_codec not in CODECS:
            raise ConfigError(f"checkpoint_codec must be one of {', '.join(CODECS)}, got {self.checkpoint_codec!r}")
        for name in (
            "election_timeout_s", "heartbeat_interval_s", "view_timeout_s", "txn_timeout_s",
            "tick_interval_s", "inclusion_bound_s", "challenge_interval_s", "response_bound_s",
            "certificate_timeout_s", "checkpoint_request_timeout_s", "checkpoint_rebuild_timeout_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {value!r}")
        if self.heartbeat_interval_s >= self.election_timeout_s:
            raise ConfigError("heartbeat_interval_s must be below election_timeout_s")
        self.shard_config(1, 1)  # the shard's own checks
        return self

    def shard_config(self, shard: int, shards: int) -> ShardConfig:
        raft = RaftConfig(
            election_timeout_s=float(self.election_timeout_s),
            heartbeat_interval_s=float(self.heartbeat_interval_s),
            pre_vote=True,
            check_quorum=True,
        )
        return ShardConfig(
            shard=shard,
            shards=shards,
            quorum=self.quorum,
            inclusion_bound_s=float(self.inclusion_bound_s),
            challenge_interval_s=float(self.challenge_interval_s),
            response_bound_s=float(self.response_bound_s),
            raft=raft,
        ).validate()

    def core_config(self) -> CoreConfig:
        timeout = float(self.certificate_timeout_s)
        return CoreConfig(certificate_timeout_s=timeout, max_certificate_timeout_s=max(timeout, 8.0)).validate()

    def bft_settings(self) -> BftSettings:
        options: dict[str, Any] = {}
        if self.bft == "hotstuff":
            options = {"view_timeout_s": float(self.view_timeout_s), "max_view_timeout_s": 8 * float(self.view_timeout_s)}
        settings: BftSettings = BFT_BINDINGS[self.bft].parse_config(options)
        return settings


def _parse(options: Mapping[str, Any]) -> HrbSettings:
    known = {f.name for f in dataclasses.fields(HrbSettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown HRB option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return HrbSettings(**dict(options)).validate()
    except TypeError as exc:
        raise ConfigError(f"bad HRB option: {exc}") from None


_DEPLOYMENTS: dict[tuple[HrbSettings, tuple[NodeId, ...], str], Deployment] = {}


def encryption_seed(settings: HrbSettings, node: int) -> bytes:
    """Seed of ``node``'s X25519 key for the core's key generations."""
    return hashlib.sha256(b"quorate/hrb/encryption/v1" + settings.genesis_seed.encode() + node.to_bytes(8, "big")).digest()


def deployment(settings: HrbSettings, nodes: tuple[NodeId, ...], suite: ThresholdSuite | None = None) -> Deployment:
    """The deployment every node of ``nodes`` derives from ``settings`` (see
    the module docstring); ``suite``: BLS threshold signatures by default."""
    from quorate.crypto.dkg import encryption_keypair  # PyNaCl only when a node runs
    from quorate.hrb.core.threshold_bls import BlsSuite

    if not nodes or len(nodes) > MAX_NODES:
        raise ConfigError(f"an HRB deployment has 1..{MAX_NODES} nodes, got {len(nodes)}")
    chosen: ThresholdSuite = suite if suite is not None else BlsSuite()
    key = (settings, tuple(sorted(nodes)), chosen.name)
    found = _DEPLOYMENTS.get(key)
    if found is not None:
        return found
    shards = -(-len(nodes) // settings.shard_size)
    if settings.shards and settings.shards != shards:
        raise ConfigError(
            f"{len(nodes)} nodes in shards of {settings.shard_size} make {shards} shards, not {settings.shards}"
        )
    rules = CoreRules(
        core_size=min(settings.core_size, len(nodes)),
        epoch_length=EPOCH_LENGTH,
        tick_interval_s=float(settings.tick_interval_s),
        txn_timeout_s=float(settings.txn_timeout_s),
        shard_quorum=settings.quorum,
    )
    keys = {NodeId(n): encryption_keypair(encryption_seed(settings, int(n)))[1] for n in nodes}
    made = genesis(keys, shard_size=settings.shard_size, seed=settings.genesis_seed.encode(), suite=chosen, rules=rules)
    found = Deployment(made, chosen, settings.shard_config(1, len(made.shards)), settings.core_config())
    _DEPLOYMENTS[key] = found
    return found


# ---------------------------------------------------------------- the desk
class NodeDesk(AgentDesk):
    """``AgentDesk`` on a real node: agents' requests arrive as wire
    messages and outcomes leave as ``AgentOutcome``; it also answers
    ``LayoutRequest`` and, with fault injection on, ``TurnByzantine``."""

    def __init__(self, member: ShardMember, deployment: Deployment, settings: HrbSettings, rng: random.Random) -> None:
        super().__init__(member)
        self.deployment = deployment
        self.settings = settings
        self.rng = rng
        self.direct: list[tuple[NodeId, Any]] = []
        """Answers that need no log (layout, fault injection)."""
        self.behaviour: str | None = None
        self.checkpointer: ShardCheckpointer | None = None
        """The shard's checkpoints on this node, when they are on."""

    @property
    def replica(self) -> ShardReplica:
        return honest_replica(self.member.member)

    @property
    def applied(self) -> int:
        """The shard log index applied here (``StatusReply.applied_index``)."""
        return self.replica.applied_index

    def on_client_request(self, src: NodeId, message: Any, now: float) -> None:
        if type(message) is AgentTxn:
            self._propose(src, message.txn, now)
        elif type(message) is LayoutRequest:
            self.direct.append((src, self.layout(message.seq)))
        elif type(message) is TurnByzantine:
            self.direct.append((src, self._turn(message)))
        elif type(message) is CorruptFragment:
            self.direct.append((src, self._corrupt(message)))

    def _propose(self, src: NodeId, txn: Transaction, now: float) -> None:
        """Propose ``txn``; a transaction the shard's validation refuses (too
        many operations, a malformed key...) is answered at once: every
        honest member refuses it alike, and it never reaches the log."""
        metrics = self.replica.metrics
        refused_before = metrics.get("refused_proposals", 0)
        self.waiting[txn.txn_id] = src
        outcome = self.member.propose(encode_command(ClientTxn(txn)), now)
        if isinstance(outcome, Refused) and metrics.get("refused_proposals", 0) > refused_before:
            self.waiting.pop(txn.txn_id, None)
            answer = AgentOutcome(txn.txn_id, txn.client, txn.seq, False, int(self.member.id), f"refused: {outcome.reason}")
            self.direct.append((src, answer))

    def layout(self, seq: int) -> LayoutReply:
        d = self.deployment
        replica = self.replica
        return LayoutReply(
            seq,
            int(replica.id),
            {k: tuple(int(m) for m in ms) for k, ms in d.shards.items()},
            tuple(int(m) for m in d.core_members),
            self.settings.quorum,
            replica.shard,
            tuple(sorted(int(v) for v in replica.raft.voters)),
            replica.store.epoch,
            tuple(int(m) for m in replica.store.epoch_members()),
        )

    def _turn(self, request: TurnByzantine) -> TurnByzantineReply:
        if not self.settings.fault_injection:
            return TurnByzantineReply(request.seq, False, "fault injection is off on this node (option fault_injection)")
        if request.behaviour not in BEHAVIOURS:
            return TurnByzantineReply(request.seq, False, f"unknown behaviour {request.behaviour!r}; one of {', '.join(BEHAVIOURS)}")
        if self.behaviour is not None:
            return TurnByzantineReply(request.seq, False, f"already {self.behaviour}")
        self.member.member = ByzantineShardReplica(self.replica, request.behaviour, rng=self.rng)
        self.behaviour = request.behaviour
        return TurnByzantineReply(request.seq, True)

    def _corrupt(self, request: CorruptFragment) -> CorruptFragmentReply:
        if not self.settings.fault_injection:
            return CorruptFragmentReply(request.seq, False, "fault injection is off on this node (option fault_injection)")
        keeper = self.checkpointer
        if keeper is None:
            return CorruptFragmentReply(request.seq, False, "checkpoints are off on this node (option checkpoint_interval_entries)")
        error = keeper.corrupt_fragment()
        if error is not None:
            return CorruptFragmentReply(request.seq, False, error)
        assert keeper.manifest is not None
        return CorruptFragmentReply(request.seq, True, log_index=keeper.manifest.log_index)

    def has_replies(self) -> bool:
        return bool(self.direct) or super().has_replies()

    def take_replies(self) -> list[tuple[NodeId, Any]]:
        out, self.direct = self.direct, []
        me = int(self.member.id)
        for client, outcome in super().take_replies():
            assert isinstance(outcome, TxnOutcome)
            out.append(
                (
                    client,
                    AgentOutcome(
                        outcome.txn_id, outcome.client, outcome.seq, outcome.committed, me, outcome.reason,
                        tuple(outcome.reads),
                    ),
                )
            )
        return out

    def abandon_pending(self) -> None:
        """Leadership moved: nothing to do (every member answers what it applies)."""


def honest_replica(core: Any) -> ShardReplica:
    """The honest replica inside a shard member (wrapped or not)."""
    inner = core.inner if isinstance(core, ByzantineShardReplica) else core
    assert isinstance(inner, ShardReplica)
    return inner


# ---------------------------------------------------------------- groups of a node
class CheckpointedMember(ShardMember):
    """A shard member whose checkpoints a ``ShardCheckpointer`` takes: after
    a turn in which it cut one (or its fragment changed), it wakes the
    checkpoint group with a local ``CheckpointWake``."""

    __slots__ = ("checkpointer",)

    def __init__(self, member: Any, store: Any, checkpointer: ShardCheckpointer) -> None:
        super().__init__(member, store)
        self.checkpointer = checkpointer

    def take_outbound(self) -> list[GroupMessage]:
        out = super().take_outbound()
        keeper = self.checkpointer
        if keeper.has_output():
            out.append((self.id, CHECKPOINT_GROUP_BASE + keeper.shard, CheckpointWake()))
        return out


def _checkpoint_status(core: ProtocolCore) -> GroupStatus:
    assert isinstance(core, ShardCheckpointer)
    return GroupStatus(role="checkpoints", term=0, leader=None, metrics=core.status_metrics())


CHECKPOINT_GROUP = Binding(
    name="hrb-checkpoint",
    message_types=CHECKPOINT_MESSAGE_TYPES,
    hard_state_type=StoredCheckpoint,
    snapshot_type=None,
    parse_config=lambda options: _parse(options),
    builder=lambda settings, cluster: _no_builder(settings, cluster),
    leadership=lambda core: (None, 0),
    status=_checkpoint_status,
    fault_model="byzantine",
)
"""A shard's checkpoint group on a real node (its hard state: the member's
newest checkpoint manifest and fragment)."""


def _shard_status(core: ProtocolCore) -> GroupStatus:
    assert isinstance(core, ShardMember)
    replica = honest_replica(core.member)
    status = SHARD_BINDING.status(replica)
    metrics = dict(status.metrics)
    if isinstance(core, CheckpointedMember):
        metrics.update(core.checkpointer.status_metrics())
        # Members at one applied index hold the same state: tests compare this.
        metrics["hrb.state_digest"] = int.from_bytes(replica.store.fingerprint()[:6], "big")
    for offender in replica.convicted:
        metrics[f"hrb.convicted.n{int(offender)}"] = 1
    for leader in replica.deposed:
        metrics[f"hrb.deposed.n{int(leader)}"] = 1
    for evicted in replica.store.evicted:
        metrics[f"hrb.evicted.n{evicted}"] = 1
    if isinstance(core.member, ByzantineShardReplica):
        metrics["hrb.byzantine"] = 1
    return dataclasses.replace(status, metrics=metrics)


def _shard_leadership(core: ProtocolCore) -> tuple[NodeId | None, int]:
    assert isinstance(core, ShardMember)
    replica = honest_replica(core.member)
    return replica.leader_id, replica.term


def _shard_leading_term(core: ProtocolCore) -> int | None:
    assert isinstance(core, ShardMember)
    replica = honest_replica(core.member)
    return replica.term if replica.is_leader else None


SHARD_GROUP = dataclasses.replace(
    SHARD_BINDING,
    status=_shard_status,
    leadership=_shard_leadership,
    leading_term=_shard_leading_term,
    membership=None,
    safety_monitor=None,
)
"""The shard group as a real node hosts it (a ``ShardMember``; membership
changes only by the core's certified evictions)."""


def hosted_groups(settings: HrbSettings, context: HostingContext) -> list[HostedGroup]:
    """``context.node``'s groups: its shard and, in epoch 0's core, the core."""
    d = deployment(settings, context.nodes)
    node = context.node
    signer, verifier = context.keyring.signer(node), context.keyring.verifier(node)
    shard = d.shard_of(node)
    recovered_shard = context.recover(shard, SHARD_GROUP)
    replica = build_shard_member(
        d, node, signer=signer, verifier=verifier, rng=random.Random(context.rng.random()), now=context.now,
        recovered=recovered_shard,
    )
    # A member that lost its disk needs the leader's proof of election again.
    replica.proof_refresh_s = float(settings.election_timeout_s)
    replica.rejoin_lost_logs = True
    keeper = _checkpointer(settings, context, d, shard, replica, rebuild=recovered_shard is None)
    member = ShardMember(replica, replica.store) if keeper is None else CheckpointedMember(replica, replica.store, keeper)
    desk = NodeDesk(member, d, settings, random.Random(context.rng.random()))
    desk.checkpointer = keeper
    groups = [HostedGroup(shard, member, SHARD_GROUP, state=desk)]
    if keeper is not None:
        groups.append(HostedGroup(CHECKPOINT_GROUP_BASE + shard, keeper, CHECKPOINT_GROUP))
    if node in d.core_members:
        core_group = core_binding(settings.bft)
        bft = BFT_BINDINGS[settings.bft].builder(settings.bft_settings(), ClusterContext(context.keyring, {}))
        core = build_core_member(
            d, node, bft=bft, signer=signer, verifier=verifier, rng=random.Random(context.rng.random()),
            now=context.now, recovered=context.recover(CORE_GROUP_BASE, core_group), bft_name=settings.bft,
        )
        groups.append(HostedGroup(CORE_GROUP_BASE, core, core_group))
    # Later epochs' cores this node joined before a restart: each resumes
    # from the start it persisted when it joined (a join that never got that
    # far starts again when the old core asks).
    for group in context.registered:
        if group > CORE_GROUP_BASE:
            recovered = context.recover(group, core_binding(settings.bft))
            if recovered is not None and recovered.snapshot is not None:
                groups.append(_next_core(settings, context, group - CORE_GROUP_BASE, (), recovered))
    return groups


def _checkpointer(
    settings: HrbSettings, context: HostingContext, d: Deployment, shard: int, replica: ShardReplica, *, rebuild: bool
) -> ShardCheckpointer | None:
    """This node's checkpoints of ``shard`` (None when they are off, or the
    shard has no peer to keep fragments)."""
    members = d.shards[shard]
    config = checkpoint_config(
        len(members),
        settings.checkpoint_interval_entries,
        reply_quorum(len(members), settings.quorum),
        float(settings.checkpoint_request_timeout_s),
    )
    if config is None:
        return None
    recovered = context.recover(CHECKPOINT_GROUP_BASE + shard, CHECKPOINT_GROUP)
    stored = recovered.hard_state if recovered is not None else None
    node = context.node
    return ShardCheckpointer(
        node,
        shard,
        members,
        replica=replica,
        signer=context.keyring.signer(node),
        verifier=context.keyring.verifier(node),
        config=config,
        codec_name=settings.checkpoint_codec,
        now=context.now,
        stored=stored if isinstance(stored, StoredCheckpoint) else None,
        rebuild=rebuild,
        rebuild_timeout_s=float(settings.checkpoint_rebuild_timeout_s),
    )


def _next_core(
    settings: HrbSettings, context: HostingContext, epoch: int, previous: tuple[int, ...], recovered: Any
) -> HostedGroup:
    """This node's replica of epoch ``epoch``'s core, joining (``previous``:
    epoch - 1's members, who hand it over) or resumed from ``recovered``."""
    from quorate.crypto.dkg import encryption_keypair

    d = deployment(settings, context.nodes)
    node = context.node
    core_group = core_binding(settings.bft)
    bft = BFT_BINDINGS[settings.bft].builder(settings.bft_settings(), ClusterContext(context.keyring, {}))
    core = CoreReplica(
        node,
        epoch,
        bft=bft,
        suite=d.suite,
        signer=context.keyring.signer(node),
        verifier=context.keyring.verifier(node),
        rng=random.Random(context.rng.random()),
        now=context.now,
        config=d.core_config,
        checker=d.checker(),
        recovered=recovered,
        previous_members=tuple(NodeId(m) for m in previous),
        encryption_secret=encryption_keypair(encryption_seed(settings, int(node)))[0],
        bft_name=settings.bft,
    )
    return HostedGroup(CORE_GROUP_BASE + epoch, core, core_group)


def join_group(
    settings: HrbSettings, context: HostingContext, hosted: list[HostedGroup], sender: NodeId, group: int, message: Any
) -> HostedGroup | None:
    """A message of a core group this node does not host: join it when it is
    a later epoch's core and ``sender`` was a member of the epoch before (the
    members who run the key generation and hand the core over), as this
    node's shard learned that epoch from a certified decision."""
    if group <= CORE_GROUP_BASE:
        return None  # a shard's or a checkpoint group this node is not in
    epoch = group - CORE_GROUP_BASE
    desk = next((g.state for g in hosted if isinstance(g.state, NodeDesk)), None)
    if desk is None:
        return None
    previous = desk.replica.store.epoch_members(epoch - 1)
    if int(sender) not in previous:
        return None
    return _next_core(settings, context, epoch, previous, context.recover(group, core_binding(settings.bft)))


def _hosting(settings: Any, context: HostingContext) -> list[Any]:
    assert isinstance(settings, HrbSettings)
    return list(hosted_groups(settings, context))


def _joining(settings: Any, context: HostingContext, hosted: list[Any], sender: NodeId, group: int, message: Any) -> Any:
    assert isinstance(settings, HrbSettings)
    return join_group(settings, context, hosted, sender, group, message)


def _no_builder(settings: Any, cluster: ClusterContext) -> Any:
    raise ConfigError("an HRB node hosts its shard and core groups (Binding.hosting), not one group")


def _no_leadership(core: ProtocolCore) -> tuple[NodeId | None, int]:
    return None, 0


def _no_status(core: ProtocolCore) -> GroupStatus:
    return GroupStatus(role="absent", term=0, leader=None)


def _message_types() -> tuple[type, ...]:
    core_types = core_binding("hotstuff").message_types + core_binding("pbft").message_types
    return tuple(dict.fromkeys((*SHARD_BINDING.message_types, *core_types, *CHECKPOINT_MESSAGE_TYPES)))


BINDING = Binding(
    name="hrb",
    message_types=_message_types(),
    hard_state_type=None,
    snapshot_type=None,
    parse_config=_parse,
    builder=_no_builder,
    leadership=_no_leadership,
    status=_no_status,
    fault_model="byzantine",
    behaviours=BEHAVIOURS,
    hosting=_hosting,
    joining=_joining,
    client_message_types=CLIENT_MESSAGE_TYPES,
)
"""HRB as a real node runs it (registered as ``hrb`` in ``quorate.protocols``)."""
