"""What a leader knows about each follower's log (§5.3, after etcd's tracker).

Theory of operation: for every peer the leader keeps ``match`` (highest index
known replicated there) and ``next`` (the next index to send), plus a flow-control
state:

- ``PROBE``: the leader does not know where the logs diverge. It sends one
  AppendEntries and waits for the answer (or the next heartbeat response)
  before sending another, backing ``next`` off with the follower's hint.
- ``REPLICATE``: the logs matched. The leader pipelines: it sends batches
  optimistically, moving ``next`` past them at once, with at most
  ``max_inflight`` unacknowledged batches (``inflight`` holds each batch's last
  index, oldest first). A rejection drops back to ``PROBE``.
- ``SNAPSHOT``: the entries the follower needs were compacted; an
  InstallSnapshot is on its way and nothing else is sent until it is answered.

Invariants: ``match < next``; in ``REPLICATE`` the inflight indices increase
and are all >= ``match``.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    """Replication state of one peer, kept by the leader."""

    __slots__ = (
        "heartbeat_round",
        "inflight",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "snapshot_sent_at",
        "state",
    )

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight: deque[int] = deque()
        self.pending_snapshot = 0
        self.snapshot_sent_at = 0.0
        self.recent_active = False
        self.heartbeat_round = 0
        """Highest heartbeat round this peer acknowledged in the current term."""

    def become_probe(self) -> None:
        # After a snapshot the follower holds at least the snapshot's index.
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight.clear()
        self.pending_snapshot = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, index: int, now: float) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_sent_at = now
        self.inflight.clear()

    def is_paused(self, max_inflight: int) -> bool:
        state = self.state
        if state is ProgressState.REPLICATE:
            return len(self.inflight) >= max_inflight
        if state is ProgressState.PROBE:
            return self.probe_sent
        return True

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement up to ``index``. True if ``match`` moved."""
        updated = False
        if index > self.match:
            self.match = index
            updated = True
            self.probe_sent = False
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
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            # The pipeline is wrong from match on; the caller drops to PROBE.
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True
