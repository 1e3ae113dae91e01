"""Membership changes and quorum sizes (Raft thesis §4.1–§4.3; flexible
quorums, Howard, Malkhi & Spiegelman 2016): what ``RaftNode`` does with
configurations, after etcd-io/raft's ``confchange``.

Theory of operation
-------------------
A ``Configuration`` says who votes, who only listens (learners) and how many
voters make a quorum: an election quorum Q1 (votes that win an election) and
a commit quorum Q2 (acknowledgements that commit an entry, confirm a read
round, keep a leader under check-quorum). Sizes of 0 mean "what the node's
``QuorumRule`` says for this many voters" (a majority by default); explicit
sizes are *flexible quorums*: any Q1, Q2 in 1..n with Q1 + Q2 > n, so every
election quorum holds a voter of every commit quorum (leader completeness).

- A configuration entry (``EntryKind.CONFIG``) holds the whole new
  configuration (``ConfState``), never a delta. It takes effect as soon as it
  is *appended* (not committed), at the leader and at every follower, and
  reverts if the entry is truncated away; ``_confs`` keeps the configuration
  each configuration entry set, the first element being the base (initial or
  snapshot) configuration.
- **One change at a time.** The leader refuses a change until the previous
  one committed, and until it has committed an entry of its own term (a new
  leader does not know whether an older, uncommitted change is pending).
  So at any moment at most two consecutive configurations are in use.
- **One step when it is safe** (``propose_conf_change``, thesis §4.1): two
  consecutive configurations C and C' may be used at once, so every election
  quorum of each must meet every commit quorum of the other:
  Q1(C') + Q2(C) > |C ∪ C'| and Q1(C) + Q2(C') > |C ∪ C'|
  (``quorate.core.quorum.quorums_intersect``). With majorities that is "at
  most one voter changes". A change that fails it is refused in one step.
- **Joint consensus** (``propose_conf_change_v2``, thesis §4.3, etcd's
  ConfChangeV2): any change of voters or quorum sizes goes through the joint
  configuration C_old,new: it is one entry holding both voter sets (and both
  pairs of sizes), and while it is in force an election needs Q1 of C_old
  *and* Q1 of C_new, a commit Q2 of each. Every decision taken under it is
  also a decision of C_old and of C_new, so both steps (C_old -> C_old,new
  and C_old,new -> C_new) are one-step safe. The leader leaves the joint
  configuration by appending C_new, automatically once C_old,new committed
  (``auto_leave``), or when asked (``JOINT_EXPLICIT``, then an empty
  change). A voter demoted to learner stays a voter of C_old while joint
  (``learners_next``) and becomes a learner in C_new.
- Learners receive the log but neither vote nor count for commitment; they can
  be promoted. A leader outside C_new keeps replicating without counting
  itself and steps down once C_new commits (thesis §4.2.2), after telling
  everyone the commit index and sending ``TimeoutNow`` to an up-to-date
  voter so the next leader is elected at once. A node outside its latest
  configuration still campaigns while that configuration is uncommitted
  and it was a voter of the one before (thesis §4.2.2: it may hold the only
  copy of C_new); its own vote does not count.
- While joint, the node's ``_voters`` are both voter sets together (every
  node that votes somewhere campaigns and is replicated to); ``_joint``
  holds the two ``VoterQuorum`` halves that counting must satisfy. When it is
  ``None`` (a simple configuration, the usual case) counting takes the O(1)
  path with ``_commit_quorum`` and ``_election_quorum``.

The functions taking ``self: RaftNode`` are ``RaftNode`` methods, attached in
``quorate.raft.node``; a subclass may override any of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from quorate.core.protocol import Accepted, ProposeOutcome, Refused
from quorate.core.quorum import quorum_size_problem, quorums_intersect
from quorate.core.ready import Entry
from quorate.errors import LocalProtocolError, invariant
from quorate.ids import NodeId
from quorate.raft.messages import (
    ConfChange,
    ConfChangeKind,
    ConfChangeTransition,
    ConfiguredSnapshot,
    ConfState,
    EntryKind,
    PlainConfState,
    Snapshot,
)
from quorate.raft.progress import Progress
from quorate.raft.roles import FOLLOWER, LEADER, LEARNER

if TYPE_CHECKING:
    from quorate.raft.node import RaftNode

_CONFIG = EntryKind.CONFIG
_conf_encoder = msgspec.msgpack.Encoder()
_conf_decoder = msgspec.msgpack.Decoder(ConfState)
_EMPTY: frozenset[NodeId] = frozenset()

KEEP_QUORUM = None
"""``quorum`` argument of ``propose_conf_change_v2``: keep the sizes in force."""
RULE_QUORUM = (0, 0)
"""``quorum`` argument of ``propose_conf_change_v2``: back to the ``QuorumRule``."""


class VoterQuorum(NamedTuple):
    """One voter set and its resolved quorum sizes."""

    voters: frozenset[NodeId]
    commit: int
    election: int


@dataclass(frozen=True, slots=True)
class Configuration:
    """Who votes, who listens, and the quorum sizes (see the module docstring).
    ``outgoing`` is non-empty exactly while the configuration is joint."""

    voters: frozenset[NodeId]
    learners: frozenset[NodeId] = _EMPTY
    outgoing: frozenset[NodeId] = _EMPTY
    learners_next: frozenset[NodeId] = _EMPTY
    auto_leave: bool = False
    election_quorum: int = 0
    commit_quorum: int = 0
    outgoing_election_quorum: int = 0
    outgoing_commit_quorum: int = 0

    @property
    def joint(self) -> bool:
        return bool(self.outgoing)

    @property
    def all_voters(self) -> frozenset[NodeId]:
        """Every node that votes in some half."""
        return self.voters | self.outgoing if self.outgoing else self.voters

    @property
    def members(self) -> frozenset[NodeId]:
        """Every node that receives the log."""
        return self.voters | self.outgoing | self.learners

    @classmethod
    def from_state(cls, state: ConfState | Snapshot) -> Configuration:
        """The configuration a ``ConfState`` or a ``Snapshot`` carries."""
        return cls(
            frozenset(map(NodeId, state.voters)),
            frozenset(map(NodeId, state.learners)),
            frozenset(map(NodeId, state.voters_outgoing)),
            frozenset(map(NodeId, state.learners_next)),
            state.auto_leave,
            state.election_quorum,
            state.commit_quorum,
            state.outgoing_election_quorum,
            state.outgoing_commit_quorum,
        )

    def has_extras(self) -> bool:
        """True when the configuration uses joint consensus or explicit sizes."""
        return bool(
            self.outgoing
            or self.learners_next
            or self.auto_leave
            or self.election_quorum
            or self.commit_quorum
            or self.outgoing_election_quorum
            or self.outgoing_commit_quorum
        )

    def encode(self, context: bytes = b"") -> bytes:
        """The data of an ``EntryKind.CONFIG`` entry setting this configuration."""
        voters = tuple(sorted(self.voters))
        learners = tuple(sorted(self.learners))
        if not self.has_extras():
            return _conf_encoder.encode(PlainConfState(voters, learners, bytes(context)))
        return _conf_encoder.encode(
            ConfState(voters, learners, bytes(context), **self._extra_fields())
        )

    def snapshot(self, index: int, term: int, data: bytes) -> Snapshot:
        """A snapshot at ``index``/``term`` of ``data`` in this configuration
        (a ``ConfiguredSnapshot`` when it has joint or flexible fields)."""
        voters = tuple(sorted(self.voters))
        learners = tuple(sorted(self.learners))
        if not self.has_extras():
            return Snapshot(index, term, voters, learners, bytes(data))
        return ConfiguredSnapshot(
            index, term, voters, learners, bytes(data), **self._extra_fields()
        )

    def _extra_fields(self) -> dict[str, Any]:
        return {
            "voters_outgoing": tuple(sorted(self.outgoing)),
            "learners_next": tuple(sorted(self.learners_next)),
            "auto_leave": self.auto_leave,
            "election_quorum": self.election_quorum,
            "commit_quorum": self.commit_quorum,
            "outgoing_election_quorum": self.outgoing_election_quorum,
            "outgoing_commit_quorum": self.outgoing_commit_quorum,
        }

    def problem(self) -> str | None:
        """Why this configuration is malformed (whatever the quorum rule), or ``None``."""
        if not self.voters:
            return "a configuration needs at least one voter"
        if self.voters & self.learners:
            return f"nodes {sorted(self.voters & self.learners)} are both voters and learners"
        if self.outgoing & self.learners:
            return f"nodes {sorted(self.outgoing & self.learners)} are outgoing voters and learners"
        if not self.learners_next <= self.outgoing - self.voters:
            return "learners_next must be outgoing voters that are not incoming voters"
        if not self.outgoing and (
            self.learners_next
            or self.auto_leave
            or self.outgoing_election_quorum
            or self.outgoing_commit_quorum
        ):
            return "joint fields are set in a configuration that is not joint"
        for voters, election, commit in (
            (self.voters, self.election_quorum, self.commit_quorum),
            (self.outgoing, self.outgoing_election_quorum, self.outgoing_commit_quorum),
        ):
            if election or commit:
                problem = quorum_size_problem(len(voters), election, commit)
                if problem is not None:
                    return problem
        return None

    def halves(self, rule: object) -> tuple[VoterQuorum, ...]:
        """The voter sets that must each reach a quorum, with resolved sizes:
        one, or two while joint (incoming first). ``ValueError`` if the rule
        or explicit sizes do not fit."""
        incoming = _resolve(rule, self.voters, self.election_quorum, self.commit_quorum)
        if not self.outgoing:
            return (incoming,)
        outgoing = _resolve(
            rule, self.outgoing, self.outgoing_election_quorum, self.outgoing_commit_quorum
        )
        return incoming, outgoing

    def left(self) -> Configuration:
        """The configuration that leaving this joint one enters (C_new)."""
        return Configuration(
            self.voters,
            self.learners | self.learners_next,
            election_quorum=self.election_quorum,
            commit_quorum=self.commit_quorum,
        )


def _resolve(rule: object, voters: frozenset[NodeId], election: int, commit: int) -> VoterQuorum:
    if election == 0 and commit == 0:
        commit_size, election_size = quorum_sizes(rule, len(voters))
        return VoterQuorum(voters, commit_size, election_size)
    problem = quorum_size_problem(len(voters), election, commit)
    if problem is not None:
        raise ValueError(problem)
    return VoterQuorum(voters, commit, election)


def one_step_safe(old: Sequence[VoterQuorum], new: Sequence[VoterQuorum]) -> bool:
    """True when configurations ``old`` and ``new`` may be in use at once:
    some half of each has election quorums meeting the commit quorums of some
    half of the other, both ways (always true from a configuration to the
    joint one that holds it, and from a joint one to either of its halves)."""
    return _covers(new, old) and _covers(old, new)


def _covers(electing: Sequence[VoterQuorum], committing: Sequence[VoterQuorum]) -> bool:
    return any(
        quorums_intersect(e.voters, e.election, c.voters, c.commit)
        for e in electing
        for c in committing
    )


def encode_conf_state(
    voters: Iterable[NodeId], learners: Iterable[NodeId] = (), context: bytes = b""
) -> bytes:
    """The data of a ``EntryKind.CONFIG`` entry for a simple configuration."""
    return Configuration(frozenset(voters), frozenset(learners)).encode(context)


def decode_conf_state(data: bytes) -> ConfState:
    """Parse a configuration entry; ``msgspec.DecodeError``/``ValidationError`` if malformed."""
    return _conf_decoder.decode(data)


def conf_entry_problem(data: bytes) -> str | None:
    """Why a configuration entry's data is malformed, or ``None``."""
    try:
        conf = decode_conf_state(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "a malformed configuration"
    problem = Configuration.from_state(conf).problem()
    return None if problem is None else f"an invalid configuration ({problem})"


def quorum_sizes(rule: object, voters: int) -> tuple[int, int]:
    """(commit quorum, election quorum) of ``rule`` for ``voters`` voters, or a
    ``ValueError`` naming what is wrong with them. No voters: (1, 1), which
    nobody reaches (a node outside the configuration counts for nothing)."""
    if voters == 0:
        return 1, 1
    commit = rule.commit_quorum(voters)  # type: ignore[attr-defined]
    election = rule.election_quorum(voters)  # type: ignore[attr-defined]
    if not (isinstance(commit, int) and isinstance(election, int)):
        raise ValueError(f"quorum rule {rule!r} must return integers for {voters} voters")
    if not (1 <= commit <= voters and 1 <= election <= voters):
        raise ValueError(
            f"quorum rule {rule!r} gives commit {commit} and election {election} for "
            f"{voters} voters; both must be in 1..{voters}"
        )
    if commit + election <= voters:
        raise ValueError(
            f"quorum rule {rule!r} gives commit {commit} + election {election} <= "
            f"{voters} voters: a leader could be elected without any voter holding a "
            "committed entry (the two quorums must intersect)"
        )
    return commit, election


# ------------------------------------------------------------ proposals
def _conf_change_refusal(self: RaftNode) -> ProposeOutcome | None:
    refusal = self._refuse_proposal()
    if refusal is not None:
        return refusal
    if not self._committed_in_term():
        return Refused("the leader has not committed an entry of its term yet; retry shortly")
    if self._pending_conf_index > self._log.committed:
        return Refused(
            "a configuration change is still being committed; retry after it commits"
        )
    if self._conf.joint and self._conf.auto_leave:
        return Refused("the joint configuration is being left; retry after it is")
    return None


def propose_conf_change(self: RaftNode, change: ConfChange, now: float) -> ProposeOutcome:
    """Single-server membership change (thesis §4.1). One at a time; refused
    when the old and new quorums would not intersect (see the module docstring)."""
    self._now = now
    refusal = self._conf_change_refusal()
    if refusal is not None:
        return refusal
    conf = self._conf
    if conf.joint:
        return Refused(
            "the configuration is joint: leave it first (propose_conf_change_v2 with no changes)"
        )
    voters = set(conf.voters)
    learners = set(conf.learners)
    node = change.node
    kind = change.kind
    if kind is ConfChangeKind.ADD_VOTER:
        if node in voters:
            return Refused(f"node {node} is already a voter")
        learners.discard(node)
        voters.add(node)
    elif kind is ConfChangeKind.PROMOTE_LEARNER:
        if node not in learners:
            return Refused(f"node {node} is not a learner")
        learners.discard(node)
        voters.add(node)
    elif kind is ConfChangeKind.ADD_LEARNER:
        if node in voters or node in learners:
            return Refused(f"node {node} is already a member")
        learners.add(node)
    elif kind is ConfChangeKind.REMOVE_NODE:
        if node not in voters and node not in learners:
            return Refused(f"node {node} is not a member")
        if voters == {node}:
            return Refused("cannot remove the last voter")
        voters.discard(node)
        learners.discard(node)
    else:  # pragma: no cover - the enum is closed
        return Refused(f"unknown change {kind!r}")
    new = replace(conf, voters=frozenset(voters), learners=frozenset(learners))
    try:
        halves = new.halves(self._quorum_rule)
    except ValueError as exc:
        return Refused(f"{exc}; propose the change with quorum sizes for {len(voters)} voters")
    if not one_step_safe(self._voter_quorums, halves):
        return Refused(
            "the old and new quorums would not intersect in one step; "
            "propose the change through joint consensus (propose_conf_change_v2)"
        )
    self._append_conf(new, change.context)
    return Accepted(self._log.last_index(), self._term)


def propose_conf_change_v2(
    self: RaftNode,
    changes: Sequence[ConfChange],
    now: float,
    *,
    transition: ConfChangeTransition = ConfChangeTransition.AUTO,
    quorum: tuple[int, int] | None = KEEP_QUORUM,
    context: bytes = b"",
) -> ProposeOutcome:
    """Change several members and/or the quorum sizes at once (thesis §4.3,
    etcd's ConfChangeV2). ``quorum`` is (Q1 election, Q2 commit) for the new
    voters, ``RULE_QUORUM`` for the node's rule, ``KEEP_QUORUM`` to keep
    the sizes in force (explicit sizes must then still fit). With no changes
    and no quorum, leaves the joint configuration. Refusals name the reason;
    nothing is appended then."""
    self._now = now
    refusal = self._conf_change_refusal()
    if refusal is not None:
        return refusal
    conf = self._conf
    if conf.joint:
        if changes or quorum is not None:
            return Refused(
                "the configuration is joint: leave it first (a change with no changes)"
            )
        self._append_conf(conf.left(), context or self._confs[-1][2])
        return Accepted(self._log.last_index(), self._term)
    if not changes and quorum is None:
        return Refused("the change changes nothing (the configuration is not joint)")
    voters = set(conf.voters)
    learners = set(conf.learners)
    demoted: set[NodeId] = set()
    seen: set[NodeId] = set()
    for change in changes:
        node = change.node
        if node in seen:
            return Refused(f"node {node} appears in more than one change")
        seen.add(node)
        kind = change.kind
        if kind is ConfChangeKind.ADD_VOTER:
            if node in voters:
                return Refused(f"node {node} is already a voter")
            learners.discard(node)
            voters.add(node)
        elif kind is ConfChangeKind.PROMOTE_LEARNER:
            if node not in learners:
                return Refused(f"node {node} is not a learner")
            learners.discard(node)
            voters.add(node)
        elif kind is ConfChangeKind.ADD_LEARNER:
            if node in learners:
                return Refused(f"node {node} is already a learner")
            if node in voters:
                voters.discard(node)
                demoted.add(node)
            else:
                learners.add(node)
        elif kind is ConfChangeKind.REMOVE_NODE:
            if node not in voters and node not in learners:
                return Refused(f"node {node} is not a member")
            voters.discard(node)
            learners.discard(node)
        else:  # pragma: no cover - the enum is closed
            return Refused(f"unknown change {kind!r}")
    if not voters:
        return Refused("the change leaves no voter (an empty voter set)")
    if quorum is None:
        election, commit = conf.election_quorum, conf.commit_quorum
    else:
        election, commit = quorum
    incoming = Configuration(
        frozenset(voters), frozenset(learners), election_quorum=election, commit_quorum=commit
    )
    try:
        new_halves = incoming.halves(self._quorum_rule)
    except ValueError as exc:
        return Refused(str(exc))
    old_halves = self._voter_quorums
    if (
        incoming.voters == conf.voters
        and incoming.learners | demoted == conf.learners
        and new_halves == old_halves
    ):
        return Refused("the change changes nothing")
    if transition is ConfChangeTransition.AUTO and one_step_safe(old_halves, new_halves):
        new = replace(incoming, learners=incoming.learners | demoted)
    else:
        new = replace(
            incoming,
            outgoing=conf.voters,
            learners_next=frozenset(demoted),
            auto_leave=transition is not ConfChangeTransition.JOINT_EXPLICIT,
            outgoing_election_quorum=conf.election_quorum,
            outgoing_commit_quorum=conf.commit_quorum,
        )
    self._append_conf(new, context)
    return Accepted(self._log.last_index(), self._term)


def _append_conf(self: RaftNode, conf: Configuration, context: bytes) -> Entry:
    """Append the configuration entry of ``conf`` (the leader, checks done)."""
    entry = self._append_local(_CONFIG, conf.encode(context))
    self._pending_conf_index = entry.index
    self._leader_input(self._now)
    return entry


def _leave_joint_if_due(self: RaftNode) -> None:
    """Leader: append C_new once the auto-leave joint configuration committed."""
    self._leave_due = False
    if self._role is not LEADER:
        return
    index, conf, context = self._confs[-1]
    if conf.joint and conf.auto_leave and self._log.committed >= index:
        self._append_conf(conf.left(), context)


# ------------------------------------------------------------ configurations in force
def _record_conf(self: RaftNode, entry: Entry) -> None:
    try:
        conf = decode_conf_state(entry.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # _check_append validated peers' entries; a local one is always valid.
        raise LocalProtocolError(f"malformed configuration entry at {entry.index}") from None
    self._confs.append((entry.index, Configuration.from_state(conf), conf.context))


def _conf_at(self: RaftNode, index: int) -> Configuration:
    for conf_index, conf, _ in reversed(self._confs):
        if conf_index <= index:
            return conf
    return self._confs[0][1]


def _set_configuration(self: RaftNode, conf: Configuration) -> None:
    """Adopt a configuration and the quorum sizes that go with it."""
    try:
        halves = conf.halves(self._quorum_rule)
    except ValueError as exc:
        invariant(False, str(exc))
        raise  # pragma: no cover - invariant raised
    self._conf = conf
    self._voter_quorums = halves
    self._joint = halves if conf.outgoing else None
    self._commit_quorum = halves[0].commit
    self._election_quorum = halves[0].election
    self._voters = conf.all_voters
    self._learners = conf.learners


def _apply_conf(self: RaftNode, now: float) -> None:
    """Switch to the newest known configuration (thesis §4.1: on append)."""
    conf = self._confs[-1][1]
    if conf == self._conf:
        return
    self._set_configuration(conf)
    role = self._role
    if role is LEADER:
        progress = self._progress
        members = conf.members
        next_index = self._log.last_index() + 1
        for peer in members:
            if peer != self._id and peer not in progress:
                pr = progress[peer] = Progress(next_index)
                pr.recent_active = True
                if conf.outgoing and peer in conf.voters:
                    # A joint configuration commits nothing until a quorum of
                    # the new voters holds it: find where their logs end now
                    # rather than at the next heartbeat round.
                    self._send_append(peer, pr, now, True)
        for peer in [p for p in progress if p not in members]:
            del progress[peer]
        if self._transfer_target is not None and self._transfer_target not in self._voters:
            self._transfer_target = None
        # Acknowledgement counts were made under the old configuration:
        # start over, and re-confirm pending reads with a fresh round.
        self._restart_read_rounds()
        self._recount_above_commit()
        if self._maybe_commit():
            self._append_pending = True
    elif role is FOLLOWER or role is LEARNER:
        self._role = self._follower_role()
    elif not self._promotable():
        self._become_follower(self._term, None, now)
