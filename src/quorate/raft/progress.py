"""What a leader knows about each follower's log (§5.3, after etcd's tracker).

Theory of operation: for every peer the leader keeps ``match`` (highest index
known replicated there) and ``next`` (the next index to send), plus a flow-control
state:

- ``PROBE``: the leader does not know where the logs diverge. It sends one
  AppendEntries (the *repair*, covering ``[repair_from, repair_end]``) and
  waits for its answer, backing ``next`` off with the follower's hint on a
  rejection. It sends the probe again only when a heartbeat round sent at
  least ``LOSS_ROUNDS`` rounds after it came back unanswered by the probe
  (the probe was lost), never on every heartbeat response.
- ``REPLICATE``: the logs matched. The leader pipelines: it sends only new
  entries, moving ``next`` past them at once, with at most ``max_inflight``
  unacknowledged batches (``inflight`` holds each batch's last index, oldest
  first). A probe still in flight when its follower's first acknowledgement
  arrives counts as one of those batches, so it is not sent again.
- ``SNAPSHOT``: the entries the follower needs were compacted; an
  InstallSnapshot is on its way and nothing else is sent until it is answered.

Messages may be reordered, so a follower often rejects a batch that overtook
an earlier one. One repair answers all of those rejections: a rejection is
*stale* (ignored) when it predates what the leader already knows (its hint is
below ``match``: within a term a follower's log never loses entries it
acknowledged) or when an unacknowledged repair already covers the gap it
reports. Loss is detected by heartbeat rounds: when a follower answers a round
sent ``LOSS_ROUNDS`` rounds after its oldest unacknowledged batch without
acknowledging that batch, the batch was lost and the leader probes again.

Invariants: ``match < next``; in ``REPLICATE`` the inflight indices increase
and are all >= ``match``.
"""

from __future__ import annotations

import enum
from collections import deque

LOSS_ROUNDS = 2
"""Heartbeat rounds sent after a batch that a follower must answer, without
acknowledging the batch, before the leader treats the batch as lost. Two, not
one: a round sent right after a batch can overtake it by the link's jitter."""


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


# Module constants for the members: on CPython 3.11 ``ProgressState.PROBE``
# goes through the enum metaclass's ``__getattr__`` (~50 ns, against ~5 ns for a
# global), and the leader checks states on every acknowledgement.
_PROBE = ProgressState.PROBE
_REPLICATE = ProgressState.REPLICATE
_SNAPSHOT = ProgressState.SNAPSHOT


NO_ROUND = -(1 << 62)
"""``Progress.replied_round`` of a peer that acknowledged nothing yet."""


class Progress:
    """Replication state of one peer, kept by the leader."""

    __slots__ = (
        "commit_sent",
        "heartbeat_round",
        "inflight",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "repair_end",
        "repair_from",
        "repair_round",
        "replied_round",
        "snapshot_sent_at",
        "stall_round",
        "state",
    )

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = _PROBE
        self.probe_sent = False
        self.inflight: deque[int] = deque()
        self.pending_snapshot = 0
        self.snapshot_sent_at = 0.0
        self.recent_active = False
        self.replied_round = NO_ROUND
        """The leader's heartbeat round when this peer last acknowledged an
        AppendEntries (``RaftConfig.elide_heartbeats``)."""
        self.heartbeat_round = 0
        """Highest heartbeat round this peer acknowledged in the current term."""
        self.commit_sent = 0
        """Highest commit index sent in an AppendEntries to this peer."""
        self.repair_from = 0
        self.repair_end = 0
        """The latest probe carried ``[repair_from, repair_end]``; it is
        outstanding while ``match < repair_end``."""
        self.repair_round = 0
        """The leader's heartbeat round when the latest probe left."""
        self.stall_round = 0
        """The leader's heartbeat round when the oldest unacknowledged batch
        left (or when ``match`` last moved, whichever is later)."""

    def become_probe(self, next_index: int = 0) -> None:
        """Probe from ``next_index`` (at least ``match + 1``; by default from
        ``match + 1``, or after a snapshot the follower has installed)."""
        if self.state is _SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = max(self.match + 1, next_index)
        self.state = _PROBE
        self.probe_sent = False
        self.inflight.clear()
        self.pending_snapshot = 0

    def become_replicate(self, round_: int) -> None:
        """The logs match through ``match``. A probe still on its way carried
        entries up to ``repair_end``: count it as in flight instead of sending
        those entries again."""
        self.state = _REPLICATE
        self.probe_sent = False
        self.inflight.clear()
        self.stall_round = round_
        if self.repair_end > self.match and self.repair_from <= self.match + 1:
            self.next = self.repair_end + 1
            self.inflight.append(self.repair_end)
        else:
            self.next = self.match + 1

    def sent_probe(self, first: int, last: int, round_: int) -> None:
        """A probe carrying entries ``first..last`` (``last = first - 1`` if
        empty) left during heartbeat round ``round_``."""
        self.probe_sent = True
        self.repair_from = first
        self.repair_end = last
        self.repair_round = round_

    def sent_batch(self, last: int, round_: int) -> None:
        """A pipelined batch ending at ``last`` left (``REPLICATE``)."""
        if not self.inflight:
            self.stall_round = round_
        self.next = last + 1
        self.inflight.append(last)

    def repair_covers(self, hint: int) -> bool:
        """True if an unacknowledged probe, accepted where the follower's log
        still matches ours, would fill the gap after ``hint``."""
        return self.match < self.repair_end and self.repair_from - 1 <= hint < self.repair_end

    def lost_in_flight(self, answered_round: int) -> bool:
        """The follower answered a heartbeat round sent ``LOSS_ROUNDS`` after
        the oldest unacknowledged message, which must then be lost."""
        if self.state is _REPLICATE:
            return bool(self.inflight) and answered_round >= self.stall_round + LOSS_ROUNDS
        if self.state is _PROBE:
            return self.probe_sent and answered_round >= self.repair_round + LOSS_ROUNDS
        return False

    def become_snapshot(self, index: int, now: float) -> None:
        self.state = _SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_sent_at = now
        self.inflight.clear()

    def is_paused(self, max_inflight: int) -> bool:
        state = self.state
        if state is _REPLICATE:
            return len(self.inflight) >= max_inflight
        if state is _PROBE:
            return self.probe_sent
        return True

    def maybe_update(self, index: int, round_: int) -> bool:
        """An acknowledgement up to ``index`` during heartbeat round
        ``round_``. True if ``match`` moved."""
        updated = False
        if index > self.match:
            self.match = index
            updated = True
            self.probe_sent = False
            self.stall_round = round_
        if self.next < index + 1:
            self.next = index + 1
        inflight = self.inflight
        while inflight and inflight[0] <= index:
            inflight.popleft()
        return updated

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the AppendEntries whose ``prev_log_index`` was
        ``rejected``; ``match_hint`` is where the leader will probe next.
        False if the rejection is stale (answers an older message)."""
        if self.state is _REPLICATE:
            if rejected <= self.match:
                return False
            # The pipeline is wrong after the hint; the caller drops to PROBE.
            self.next = max(min(rejected, match_hint + 1), self.match + 1)
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True
