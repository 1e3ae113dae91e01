"""Raft settings, validated once at the edge.

Theory of operation: ``RaftConfig`` is a frozen value; ``RaftNode`` calls
``validate()`` in its constructor so a bad setting fails at start with a message
that names the field and the fix, never as odd behaviour later.

Timing (§5.2, §9.3): a follower waits a randomized election timeout drawn
uniformly from ``[election_timeout_s, 2 * election_timeout_s)``; a leader sends
heartbeats every ``heartbeat_interval_s``, which must be well below the election
timeout or followers would start elections against a healthy leader.

Lease reads (thesis §6.4.1) are only safe with ``check_quorum`` (which also turns
on leader stickiness, the property the lease relies on), so ``validate`` insists
on it; see ``RaftNode`` for the lease argument and ``lease_duration_s``.

Quiescence (``quiesce_after_s`` > 0, off by default): a leader idle that long
with every follower caught up stops heartbeating, and its followers stop their
election timers (``quorate.raft.quiescence``).

Lazy commit (``lazy_commit``, off by default): the leader does not send an
empty AppendEntries to tell followers a new commit index; the next
AppendEntries or heartbeat carries it.

Elided heartbeats (``elide_heartbeats``, off by default): a follower that
acknowledged an AppendEntries within the last few heartbeat intervals gets
no periodic heartbeat. Multi-Raft nodes turn both on for their groups:
with many groups each carrying a few writes, the per-group messages are
the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from quorate.errors import ConfigError

READ_MODES = ("read_index", "lease")
MAX_SUPPORTED_CLOCK_DRIFT = 0.5
"""Above this the lease would be shorter than half an election timeout; a
cluster whose clocks disagree that much should use ``read_mode='read_index'``."""


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Tunables of one Raft node. All durations in seconds."""

    election_timeout_s: float = 1.0
    """Minimum election timeout T; the actual timeout is uniform in [T, 2T)."""
    heartbeat_interval_s: float = 0.1
    pre_vote: bool = True
    """Thesis §9.6: poll a quorum before bumping the term."""
    check_quorum: bool = True
    """A leader that heard from no quorum within T steps down; followers that
    heard from a leader within T ignore votes (leader stickiness)."""
    max_batch_entries: int = 64
    """Most entries in one AppendEntries."""
    max_batch_bytes: int = 1 << 20
    """Most payload bytes in one AppendEntries (one oversize entry still goes alone)."""
    max_inflight: int = 64
    """Most unacknowledged AppendEntries per follower while pipelining."""
    max_command_bytes: int = 4 << 20
    """Larger proposals are refused."""
    read_mode: str = "read_index"
    """``"read_index"`` (a heartbeat round per read batch) or ``"lease"``."""
    max_clock_drift: float = 0.01
    """Bound on how far apart two nodes' clock *rates* may be (0.01 = 1%)."""
    lease_margin_s: float = 0.0
    """Extra safety subtracted from the lease for clock-reading jitter."""
    join: bool = False
    """The node joins a running cluster: it starts outside the configuration
    (never campaigns, counts for nothing) and becomes a learner or a voter
    when the leader's configuration entry naming it reaches its log (thesis
    §4.2.1). It only shapes the base configuration: entries in the log override it."""
    quiesce_after_s: float = 0.0
    """A leader with nothing pending and every follower caught up for this
    long goes quiet (no heartbeats, no timers; CockroachDB's quiesced ranges)
    until a proposal, a read or a peer's message wakes it. 0 never quiesces."""
    lazy_commit: bool = False
    """Followers learn a new commit index from the next AppendEntries or
    heartbeat (hashicorp/raft's way) instead of from an empty AppendEntries
    sent to each of them the moment it advances (etcd's way). A write then
    costs two messages per follower instead of up to four, which counts when
    many groups each carry a write or two at a time (multi-Raft); followers
    apply up to one heartbeat interval later. Safety does not depend on it:
    followers need the commit index only to apply."""
    elide_heartbeats: bool = False
    """At a heartbeat deadline the leader skips the heartbeat to a follower
    that acknowledged an AppendEntries within the last three intervals (at
    most a third of the election timeout): that follower heard from the
    leader that recently, and its answer already counted for check-quorum.
    A group busy with writes then sends no heartbeats; an idle or lagging follower still gets every one, and a
    round that reads wait for goes to every follower. Not used with
    ``read_mode='lease'`` (its lease is renewed by heartbeat rounds).
    Safety does not depend on it (``quorate.raft.read_only``)."""
    unsafe_commit_without_quorum: bool = False
    """TEST ONLY: the leader commits what it appends, breaking Raft on purpose
    so tests can show the safety monitor and checkers catch it."""

    @property
    def lease_duration_s(self) -> float:
        """How long after *sending* a quorum-acknowledged heartbeat round the
        leader may answer reads alone: T * (1 - drift) - margin."""
        return self.election_timeout_s * (1.0 - self.max_clock_drift) - self.lease_margin_s

    def validate(self) -> RaftConfig:
        """Raise ``ConfigError`` naming the first bad field; return self."""
        if not self.election_timeout_s > 0:
            raise ConfigError(
                f"election_timeout_s must be > 0 seconds, got {self.election_timeout_s}"
            )
        if not 0 < self.heartbeat_interval_s < self.election_timeout_s:
            raise ConfigError(
                f"heartbeat_interval_s must be > 0 and below election_timeout_s "
                f"({self.election_timeout_s}); got {self.heartbeat_interval_s}. "
                "A tenth of the election timeout is typical."
            )
        for name in ("max_batch_entries", "max_batch_bytes", "max_inflight", "max_command_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.read_mode not in READ_MODES:
            raise ConfigError(f"read_mode must be one of {READ_MODES}, got {self.read_mode!r}")
        if not 0 <= self.max_clock_drift < MAX_SUPPORTED_CLOCK_DRIFT:
            raise ConfigError(
                f"max_clock_drift must be in [0, {MAX_SUPPORTED_CLOCK_DRIFT}), got "
                f"{self.max_clock_drift}; with clocks this unreliable use read_mode='read_index'"
            )
        if not (math.isfinite(self.quiesce_after_s) and self.quiesce_after_s >= 0):
            raise ConfigError(
                f"quiesce_after_s must be >= 0 seconds (0 never quiesces), got {self.quiesce_after_s}"
            )
        if self.lease_margin_s < 0:
            raise ConfigError(f"lease_margin_s must be >= 0, got {self.lease_margin_s}")
        if self.read_mode == "lease":
            if not self.check_quorum:
                raise ConfigError(
                    "read_mode='lease' needs check_quorum=True: the lease relies on followers "
                    "refusing votes while they hear from the leader"
                )
            if self.lease_duration_s <= self.heartbeat_interval_s:
                raise ConfigError(
                    f"the read lease ({self.lease_duration_s:.3f} s) must outlast "
                    f"heartbeat_interval_s ({self.heartbeat_interval_s} s); lower "
                    "lease_margin_s or max_clock_drift, or raise election_timeout_s"
                )
        return self
