"""Linearizable reads without writing the log (Raft thesis §6.4), after
etcd-io/raft's ``read_only.go``: ReadIndex and lease reads, and the heartbeat
rounds that confirm leadership for both.

ReadIndex
---------
The leader records its commit index, confirms it is still leader by a
heartbeat round acknowledged by a commit quorum, then reports
``ReadState(index, context)``; the runtime serves the read once it applied
``index``. A new leader first commits its no-op (until then its commit index
may be stale). Reads that arrive within one input share one heartbeat round,
sent from ``ready()``; at most one confirmation round is in flight, and reads
that arrive meanwhile wait for the next single round.

Heartbeat rounds are numbered. A follower echoes the round it answers; the
leader counts, per round, the voters that acknowledged it or a later one, and
the highest round a quorum acknowledged confirms leadership *as of the time
that round was sent*.

Lease reads (``read_mode="lease"``)
-----------------------------------
A follower that receives a heartbeat refuses to vote for anyone else for T on
*its own* clock (stickiness). If clock rates differ by at most a factor ρ
(``max_clock_drift``), T follower-seconds last at least T(1 - ρ)
leader-seconds. The heartbeat arrived after the leader sent it at leader time
s, so every follower that acknowledged the round stays loyal until at least
s + T(1 - ρ) by the leader's clock; they form a quorum, any new leader needs a
vote from one of them (election and commit quorums intersect), so no other
leader exists before then and the leader's commit index is current. The lease
is therefore counted from the time the leader *sent* the round a quorum
acknowledged and lasts ``T * (1 - ρ) - lease_margin_s``
(``RaftConfig.lease_duration_s``). Things that end the lease early:

- a ``TimeoutNow`` waives stickiness, so once a transfer starts the leader
  serves no lease reads for the rest of its term;
- a restart (the restarted node refuses votes for its first T, ``RaftNode``);
- quiescence: a quiet leader drops its lease and forgets its unconfirmed
  rounds, so only a round sent after it wakes can grant a new one;
- ``forget_leader`` cannot end a lease early: with lease reads a follower that
  forgets its leader still refuses votes until its T has run out.

Elided heartbeats (``elide_heartbeats``)
----------------------------------------
A periodic round skips the followers that acknowledged an AppendEntries
within the last ``ELIDED_ROUNDS`` intervals (they heard from the leader that
recently, well within their election timeout; their answer set
``recent_active`` for check-quorum, whose window is the election timeout). Nothing above changes: a
follower's answer to a later round counts for every earlier round too, so a
skipped round is confirmed by answers to rounds sent after it, if at all.
Rounds that reads wait for go to every follower, and the lease mode never
elides (it would only let the lease lapse in busy groups).

Membership changes keep every quorum of two configurations in use at once
overlapping (one step when that holds, joint consensus otherwise;
``quorate.raft.confchange``), so a change does not break the argument; the
rounds counted under the old configuration are dropped and pending reads are
confirmed again. While joint, a round needs a commit quorum of each half.

The functions taking ``self: RaftNode`` are ``RaftNode`` methods, attached in
``quorate.raft.node``; a subclass may override any of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quorate.core.protocol import Accepted, ProposeOutcome
from quorate.core.quorum import quorum_index
from quorate.core.ready import ReadState
from quorate.raft.messages import Heartbeat, QuiesceHeartbeat
from quorate.raft.progress import ProgressState
from quorate.raft.roles import LEADER

if TYPE_CHECKING:
    from quorate.raft.node import RaftNode

_REPLICATE = ProgressState.REPLICATE

ELIDED_ROUNDS = 3
"""With ``elide_heartbeats``, a follower that acknowledged an AppendEntries
during the last this many heartbeat intervals (fewer when that would exceed
a third of the election timeout T; none when one interval does) gets no
periodic heartbeat: it heard from the leader at most T/3 and one interval
ago, and waits at least T before it campaigns."""
MAX_TRACKED_HEARTBEAT_ROUNDS = 64
"""Send times of unacknowledged heartbeat rounds kept for the lease; older rounds
are forgotten (they would only yield leases that already expired)."""


def read_index(self: RaftNode, context: bytes, now: float) -> ProposeOutcome:
    """Start a linearizable read (thesis §6.4). The answer comes later as a
    ``ReadState(index, context)`` in ``Ready.reads``; ``Accepted.index`` is
    the commit index when the read arrived (a lower bound of the answer)."""
    self._now = now
    refusal = self._refuse_proposal()
    if refusal is not None:
        return refusal
    ctx = bytes(context)
    commit = self._log.committed
    if not self._committed_in_term():
        self._reads_awaiting_commit.append(ctx)
    elif self._sole_voter() or (self._config.read_mode == "lease" and self.lease_valid(now)):
        # Nobody else can lead: a sole voter, or a quorum is bound by our lease.
        self._reads.append(ReadState(commit, ctx))
    else:
        self._reads_awaiting_round.append((self._heartbeat_round + 1, commit, ctx))
        self._read_round_needed = True
    self._leader_input(now)
    return Accepted(commit, self._term)


def lease_valid(self: RaftNode, now: float) -> bool:
    """True when a lease read may be answered without a heartbeat round."""
    return (
        self._role is LEADER
        and not self._lease_forfeited
        and now < self._lease_expiry
        and self._committed_in_term()
    )


def _sole_voter(self: RaftNode) -> bool:
    return len(self._voters) == 1 and self._id in self._voters


def _committed_in_term(self: RaftNode) -> bool:
    return self._log.term(self._log.committed) == self._term


def _release_reads_on_commit(self: RaftNode) -> None:
    """The leader's first commit in its term: reads that waited for it
    now wait for a heartbeat round (or are answered at once when alone)."""
    commit = self._log.committed
    waiting = self._reads_awaiting_commit
    self._reads_awaiting_commit = []
    if self._sole_voter():
        self._reads.extend(ReadState(commit, ctx) for ctx in waiting)
    else:
        round_ = self._heartbeat_round + 1
        self._reads_awaiting_round.extend((round_, commit, ctx) for ctx in waiting)
        self._read_round_needed = True


def _broadcast_heartbeat(self: RaftNode, now: float, quiesce: bool = False, periodic: bool = False) -> None:
    """Send heartbeat round ``_heartbeat_round + 1`` to every follower
    (``QuiesceHeartbeat`` when the leader goes quiet after it). A
    ``periodic`` round (the heartbeat deadline's) skips, with
    ``elide_heartbeats``, the followers that acknowledged an AppendEntries
    within the last ``ELIDED_ROUNDS`` rounds, unless reads wait for this round: a round
    counts as acknowledged by a follower once it acknowledges any later one
    (``_on_round_acknowledged``), so a round some followers never got is
    confirmed, if at all, by answers to rounds sent after it — later than
    otherwise, never wrongly."""
    self._heartbeat_round += 1
    round_ = self._heartbeat_round
    if self._reads_awaiting_round:
        self._read_round_sent = round_
    sent_at = self._round_sent_at
    acks = self._round_acks
    sent_at[round_] = now
    acks[round_] = 1 if self._id in self._voters else 0
    if len(sent_at) > MAX_TRACKED_HEARTBEAT_ROUNDS:
        oldest = next(iter(sent_at))
        del sent_at[oldest]
        acks.pop(oldest, None)
    commit = self._log.committed
    term = self._term
    msgs = self._msgs
    kind = QuiesceHeartbeat if quiesce else Heartbeat
    # One message per distinct commit hint, shared by the followers it fits
    # (all of them, once they have caught up).
    shared: dict[int, Heartbeat] = {}
    config = self._config
    elide = periodic and config.elide_heartbeats and not self._reads_awaiting_round and config.read_mode != "lease"
    if elide:
        elided = min(ELIDED_ROUNDS, int(config.election_timeout_s / (3 * config.heartbeat_interval_s)))
    for peer, pr in self._progress.items():
        if elide and round_ - pr.replied_round <= elided and pr.state is _REPLICATE:
            continue
        hint = min(pr.match, commit)
        heartbeat = shared.get(hint)
        if heartbeat is None:
            heartbeat = shared[hint] = kind(term, hint, round_)
        msgs.append((peer, heartbeat))
    if self._joint is not None:
        self._on_round_acknowledged(0, 0)
    elif acks[round_] >= self._commit_quorum:
        self._round_confirmed(round_)


def _on_round_acknowledged(self: RaftNode, previous: int, latest: int) -> None:
    """A voter acknowledged every round in (previous, latest]; when one of
    them reaches a quorum, leadership is confirmed as of its sending.

    While joint (thesis §4.3) a round is confirmed when a commit quorum of
    each half acknowledged it or a later one: the joint quorum of the
    voters' latest acknowledged rounds (the leader's own is the round it
    sent last)."""
    if self._joint is not None:
        values = {peer: pr.heartbeat_round for peer, pr in self._progress.items()}
        values[self._id] = self._heartbeat_round
        confirmed = min(
            quorum_index(values, voters, commit) for voters, commit, _ in self._joint
        )
        if confirmed > self._acked_round:
            self._round_confirmed(confirmed)
        return
    acks = self._round_acks
    quorum = self._commit_quorum
    confirmed = 0
    for round_ in range(max(previous + 1, self._acked_round + 1), latest + 1):
        count = acks.get(round_)
        if count is None:
            continue
        count += 1
        acks[round_] = count
        if count >= quorum:
            confirmed = round_
    if confirmed:
        self._round_confirmed(confirmed)


def _round_confirmed(self: RaftNode, acked: int) -> None:
    """Release reads waiting for round ``acked`` and extend the lease from
    the time that round was sent."""
    if acked <= self._acked_round:
        return
    self._acked_round = acked
    sent = self._round_sent_at.get(acked)
    if sent is not None:
        expiry = sent + self._config.lease_duration_s
        if expiry > self._lease_expiry:
            self._lease_expiry = expiry
    for old in [r for r in self._round_sent_at if r <= acked]:
        del self._round_sent_at[old]
        self._round_acks.pop(old, None)
    waiting = self._reads_awaiting_round
    if waiting and waiting[0][0] <= acked:
        keep: list[tuple[int, int, bytes]] = []
        for round_, index, ctx in waiting:
            if round_ <= acked:
                self._reads.append(ReadState(index, ctx))
            else:
                keep.append((round_, index, ctx))
        self._reads_awaiting_round = keep
        if keep:
            # Reads that arrived during the confirmed round need the next.
            self._read_round_needed = True


def _restart_read_rounds(self: RaftNode) -> None:
    """Forget the rounds in flight (their counts were made under another
    configuration) and confirm pending reads with a fresh round."""
    self._round_sent_at = {}
    self._round_acks = {}
    self._read_round_sent = 0
    if self._reads_awaiting_round:
        round_ = self._heartbeat_round + 1
        self._reads_awaiting_round = [(round_, i, c) for _, i, c in self._reads_awaiting_round]
        self._read_round_needed = True
