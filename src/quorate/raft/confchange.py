"""Membership changes (Raft thesis §4.1–§4.2): what ``RaftNode`` does with
configurations, after etcd-io/raft's ``confchange``.

Theory of operation
-------------------
Changes are **single-server**: one voter or learner added, promoted or removed
at a time, so every majority of the old configuration overlaps every majority
of the new one and no joint consensus is needed (thesis §4.1).

- A configuration entry (``EntryKind.CONFIG``) holds the whole new
  ``ConfState``, never a delta. It takes effect as soon as it is *appended*
  (not committed), at the leader and at every follower, and reverts if the
  entry is truncated away; ``_confs`` keeps the configuration each
  configuration entry set, the first element being the base (initial or
  snapshot) configuration.
- The leader refuses a new change until the previous one committed, and until
  it has committed an entry of its own term (a new leader does not know
  whether an older, uncommitted change is still pending).
- Learners receive the log but neither vote nor count for commitment; they can
  be promoted. A leader that removed itself keeps replicating without counting
  itself and steps down once the change commits (thesis §4.2.2).
- Whenever the voters change, the quorum sizes are recomputed from the node's
  ``QuorumRule`` (``quorate.raft.hooks``) and checked to intersect (an election
  quorum and a commit quorum always share a voter), so counting stays O(1).

The functions taking ``self: RaftNode`` are ``RaftNode`` methods, attached in
``quorate.raft.node``; a subclass may override any of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from quorate.core.protocol import Accepted, ProposeOutcome, Refused
from quorate.core.ready import Entry
from quorate.errors import LocalProtocolError, invariant
from quorate.ids import NodeId
from quorate.raft.messages import ConfChange, ConfChangeKind, ConfState, EntryKind
from quorate.raft.progress import Progress
from quorate.raft.roles import FOLLOWER, LEADER, LEARNER

if TYPE_CHECKING:
    from quorate.raft.node import RaftNode

_CONFIG = EntryKind.CONFIG
_conf_encoder = msgspec.msgpack.Encoder()
_conf_decoder = msgspec.msgpack.Decoder(ConfState)


def encode_conf_state(
    voters: Iterable[NodeId], learners: Iterable[NodeId] = (), context: bytes = b""
) -> bytes:
    """The data of a ``EntryKind.CONFIG`` entry."""
    return _conf_encoder.encode(
        ConfState(tuple(sorted(voters)), tuple(sorted(learners)), bytes(context))
    )


def decode_conf_state(data: bytes) -> ConfState:
    """Parse a configuration entry; ``msgspec.DecodeError``/``ValidationError`` if malformed."""
    return _conf_decoder.decode(data)


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


def propose_conf_change(self: RaftNode, change: ConfChange, now: float) -> ProposeOutcome:
    """Single-server membership change (thesis §4.1). One at a time."""
    self._now = now
    refusal = self._refuse_proposal()
    if refusal is not None:
        return refusal
    if not self._committed_in_term():
        return Refused("the leader has not committed an entry of its term yet; retry shortly")
    if self._pending_conf_index > self._log.committed:
        return Refused(
            "a configuration change is still being committed; retry after it commits"
        )
    voters = set(self._voters)
    learners = set(self._learners)
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
    try:
        quorum_sizes(self._quorum_rule, len(voters))
    except ValueError as exc:
        return Refused(str(exc))
    entry = self._append_local(_CONFIG, encode_conf_state(voters, learners, change.context))
    self._pending_conf_index = entry.index
    self._leader_input(now)
    return Accepted(entry.index, entry.term)


def _record_conf(self: RaftNode, entry: Entry) -> None:
    try:
        conf = decode_conf_state(entry.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # _check_append validated peers' entries; a local one is always valid.
        raise LocalProtocolError(f"malformed configuration entry at {entry.index}") from None
    self._confs.append(
        (
            entry.index,
            frozenset(map(NodeId, conf.voters)),
            frozenset(map(NodeId, conf.learners)),
        )
    )


def _conf_at(self: RaftNode, index: int) -> tuple[frozenset[NodeId], frozenset[NodeId]]:
    for conf_index, voters, learners in reversed(self._confs):
        if conf_index <= index:
            return voters, learners
    _, voters, learners = self._confs[0]
    return voters, learners


def _set_members(self: RaftNode, voters: frozenset[NodeId], learners: frozenset[NodeId]) -> None:
    """Adopt a configuration and the quorum sizes that go with it."""
    if len(voters) != len(self._voters) or not self._commit_quorum:
        try:
            self._commit_quorum, self._election_quorum = quorum_sizes(
                self._quorum_rule, len(voters)
            )
        except ValueError as exc:
            invariant(False, str(exc))
    self._voters = voters
    self._learners = learners


def _apply_conf(self: RaftNode, now: float) -> None:
    """Switch to the newest known configuration (thesis §4.1: on append)."""
    _, voters, learners = self._confs[-1]
    if voters == self._voters and learners == self._learners:
        return
    self._set_members(voters, learners)
    role = self._role
    if role is LEADER:
        progress = self._progress
        next_index = self._log.last_index() + 1
        for peer in voters | learners:
            if peer != self._id and peer not in progress:
                progress[peer] = Progress(next_index)
                progress[peer].recent_active = True
        for peer in [p for p in progress if p not in voters and p not in learners]:
            del progress[peer]
        if self._transfer_target is not None and self._transfer_target not in voters:
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
