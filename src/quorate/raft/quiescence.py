"""Quiescence: an idle Raft group that costs no messages and arms no timer
(CockroachDB's quiesced ranges), for nodes that host thousands of groups.

Theory of operation
-------------------
Off unless ``RaftConfig.quiesce_after_s`` > 0.

- **Going quiet.** At a heartbeat deadline, a leader that had no proposal,
  read, membership change or transfer for ``quiesce_after_s``, whose every
  follower and learner acknowledged its whole log (``match`` = last index =
  commit index, nothing in flight) and that has no read waiting, sends one
  last heartbeat round as ``QuiesceHeartbeat`` and arms no timer at all: no
  heartbeats, no check-quorum, its ``wake_at`` is ``None``. It also drops its
  read lease and the rounds it has not seen confirmed, so no lease read is
  served while it is quiet. A follower that receives the ``QuiesceHeartbeat``
  from its leader and whose log ends at the heartbeat's commit index, which is
  its own commit index, goes quiet too: no election timer. A quiet group
  costs zero events.
- **Waking.** A leader wakes on a proposal, a read, a membership change or a
  transfer, on ``unquiesce(now)``, and on any message from a member other
  than a heartbeat response (a restarted follower's pre-vote, a late
  acknowledgement). It then sends a heartbeat round at once, re-arms its
  timers, and starts a fresh check-quorum window in which no follower counts
  as heard from yet: its followers were silent because it was, so the window
  that spans the quiet time says nothing about them (judging it would make
  the leader step down spuriously). A follower wakes on any message from its
  leader, on a change of term or leader, on a proposal or read it is asked to
  redirect (a client could not reach the leader through it: if the leader is
  gone, this follower will campaign), on ``forget_leader`` and on
  ``unquiesce(now)`` — which its host calls when a node-level failure
  detector suspects the leader's node. A woken follower re-draws its
  randomized election timeout and campaigns when it passes, unless the
  leader speaks first; with check-quorum it refuses votes for T from waking,
  as if it had just heard from its leader.
- **Stickiness while quiet.** With check-quorum a quiet follower ignores
  (pre-)vote requests, as a follower that heard from its leader less than T
  ago does: its silence is the leader's, not a sign of failure. A vote request
  from its own leader (restarted, campaigning) wakes it first. A restarted
  follower that campaigns against a quiet group is refused by the quiet
  followers and wakes the leader, whose heartbeat makes it follow.

Safety does not depend on quiescence
------------------------------------
Raft's safety properties (election safety, log matching, leader completeness,
state-machine safety, §5.4) hold whatever the timing and whatever messages are
lost; only liveness needs timers. Quiescence changes only:

1. *When timers fire*: a quiet leader sends no heartbeats and runs no
   check-quorum, a quiet follower's election timeout does not run. Both are
   executions of Raft with slow timers.
2. *One message kind*: ``QuiesceHeartbeat`` changes a follower's state exactly
   as a ``Heartbeat`` does (commit index, leader, stickiness), plus (1).
3. *Votes ignored*: a quiet follower drops vote requests, which is the same as
   the requests being lost.
4. *Wake-up actions*: a heartbeat round and re-armed timers are things a
   leader or follower may do at any time.

So every execution with quiescence is an execution of Raft without it in which
some timers were slow and some messages were lost. The one property that does
lean on timing, the lease (``quorate.raft.read_only``), is switched off: a
quiet leader has no lease, its unconfirmed rounds are forgotten, and on waking
only a round sent afterwards can grant one; followers only ever refuse votes
for *longer* than the lease argument requires.

The functions taking ``self: RaftNode`` are ``RaftNode`` methods, attached in
``quorate.raft.node``; a subclass may override any of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quorate.ids import NodeId
from quorate.raft.messages import HeartbeatResponse, QuiesceHeartbeat
from quorate.raft.progress import ProgressState
from quorate.raft.roles import LEADER, NEVER

if TYPE_CHECKING:
    from quorate.raft.node import RaftNode

_REPLICATE = ProgressState.REPLICATE


def unquiesce(self: RaftNode, now: float) -> None:
    """Wake a quiet node (see the module docstring); no effect otherwise.
    A host calls it on a follower when it suspects the leader's node."""
    self._now = now
    if self._quiesced:
        self._wake(now)


# ------------------------------------------------------------ leader
def _leader_input(self: RaftNode, now: float) -> None:
    """A proposal, read, membership change or transfer reached the leader."""
    self._active_at = now
    if self._quiesced:
        self._wake(now)


def _quiesce_if_idle(self: RaftNode, now: float) -> bool:
    """At a heartbeat deadline: go quiet if idle long enough. True if so."""
    if now - self._active_at < self._config.quiesce_after_s:
        return False
    if (
        self._transfer_target is not None
        or self._append_pending
        or self._read_round_needed
        or self._reads_awaiting_round
        or self._reads_awaiting_commit
    ):
        return False
    log = self._log
    last = log.last_index()
    if log.committed != last:
        return False
    for pr in self._progress.values():
        if pr.match != last or pr.state is not _REPLICATE or pr.inflight:
            return False
    self._read_round_needed = False
    self._broadcast_heartbeat(now, quiesce=True)
    self._quiesced = True
    self._lease_expiry = NEVER
    self._round_sent_at = {}
    self._round_acks = {}
    return True


# ------------------------------------------------------------ follower
def _on_quiesce_heartbeat(self: RaftNode, sender: NodeId, m: QuiesceHeartbeat) -> None:
    self._on_heartbeat(sender, m)
    log = self._log
    if (
        self._leader == sender
        and log.committed == m.leader_commit
        and log.last_index() == m.leader_commit
    ):
        self._quiesced = True


# ------------------------------------------------------------ both
def _on_message_while_quiet(self: RaftNode, sender: NodeId, cls: type) -> None:
    if self._role is LEADER:
        if cls is not HeartbeatResponse and sender in self._progress:
            self._wake(self._now)
    elif sender == self._leader:
        self._wake(self._now)


def _wake(self: RaftNode, now: float) -> None:
    self._quiesced = False
    config = self._config
    if self._role is LEADER:
        self._active_at = now
        self._check_quorum_deadline = now + config.election_timeout_s
        for pr in self._progress.values():
            pr.recent_active = False
        self._heartbeat_deadline = now + config.heartbeat_interval_s
        self._read_round_needed = False
        self._broadcast_heartbeat(now)
    else:
        self._reset_election_timer(now)
        if config.check_quorum:
            ignore_until = now + config.election_timeout_s
            if ignore_until > self._vote_ignore_until:
                self._vote_ignore_until = ignore_until
