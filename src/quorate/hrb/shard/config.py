"""A shard's settings, validated once at the edge.

Theory of operation: ``ShardConfig`` is a frozen value holding the shard's
identity (its id among ``shards``), its commit rule (``quorum``), the
watcher's bounds, the transaction limits and the Raft settings underneath.
``validate()`` names the first bad field and how to fix it.

The Raft settings must keep ``check_quorum`` on: lazy voting rests on Raft's
leader stickiness (a follower that heard from its leader less than an
election timeout ago ignores vote requests), which check-quorum turns on.
The watcher's bounds must leave a healthy leader room: a challenge is
answered within a round trip, so ``response_bound_s`` is a few network
delays; ``inclusion_bound_s`` must exceed the time a request takes to reach
the log under load, or honest leaders get suspected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from quorate.errors import ConfigError
from quorate.raft.config import RaftConfig

__all__ = ["QUORUM_MODES", "ShardConfig", "default_raft_config"]

QUORUM_MODES = ("majority", "byzantine")
MAX_KEY_BYTES = 1024


def default_raft_config() -> RaftConfig:
    return RaftConfig(pre_vote=True, check_quorum=True)


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """Settings of one shard member. Durations in seconds."""

    shard: int = 1
    """This shard's id (Raft group id), 1..``shards``."""
    shards: int = 1
    """How many shards exist; a key mapped outside 1..shards names no shard."""
    quorum: str = "majority"
    """``"majority"``: Raft's majority commits, followers assumed crash-only
    (Byzantine leaders are detected, not tolerated by the commit rule);
    ``"byzantine"``: 2f + 1 of 3f + 1 for commits and elections, safe with
    up to f Byzantine members of any role."""
    inclusion_bound_s: float = 2.0
    """A request a follower forwarded must be in the log within this (else: censorship)."""
    challenge_interval_s: float = 1.0
    """How often a follower challenges its leader for its signed head."""
    response_bound_s: float = 0.5
    """A challenge answered later than this makes the leader suspect (slow)."""
    relay_fanout: int = 0
    """Members a follower relays each signed head to; 0 relays to all."""
    vote_resend_s: float = 1.0
    """How often a leader re-sends votes and requests the core has not decided."""
    max_txn_ops: int = 64
    """Most operations in one transaction."""
    max_txn_bytes: int = 64 * 1024
    """Largest encoded transaction (log entry) accepted."""
    max_watched: int = 4096
    """Most forwarded requests a follower watches at once (older ones are dropped)."""
    raft: RaftConfig = field(default_factory=default_raft_config)

    @property
    def byzantine(self) -> bool:
        return self.quorum == "byzantine"

    def validate(self) -> ShardConfig:
        """Raise ``ConfigError`` naming the first bad field; return self."""
        if not isinstance(self.shards, int) or self.shards < 1:
            raise ConfigError(f"shards must be a positive integer, got {self.shards!r}")
        if not isinstance(self.shard, int) or not 1 <= self.shard <= self.shards:
            raise ConfigError(f"shard must be an integer in 1..{self.shards} (shards), got {self.shard!r}")
        if self.quorum not in QUORUM_MODES:
            raise ConfigError(f"quorum must be one of {QUORUM_MODES}, got {self.quorum!r}")
        for name in ("inclusion_bound_s", "challenge_interval_s", "response_bound_s", "vote_resend_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.response_bound_s >= self.challenge_interval_s:
            raise ConfigError(
                f"response_bound_s ({self.response_bound_s}) must be below challenge_interval_s "
                f"({self.challenge_interval_s}): an answer is judged before the next challenge"
            )
        for name in ("max_txn_ops", "max_txn_bytes", "max_watched"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.relay_fanout, int) or self.relay_fanout < 0:
            raise ConfigError(f"relay_fanout must be >= 0 (0: every member), got {self.relay_fanout!r}")
        if not isinstance(self.raft, RaftConfig):
            raise ConfigError(f"raft must be a RaftConfig, got {type(self.raft).__name__}")
        self.raft.validate()
        if not self.raft.check_quorum:
            raise ConfigError(
                "a shard needs raft check_quorum=True: lazy voting rests on Raft's leader stickiness"
            )
        if self.max_txn_bytes > self.raft.max_command_bytes:
            raise ConfigError(
                f"max_txn_bytes ({self.max_txn_bytes}) must not exceed Raft's max_command_bytes "
                f"({self.raft.max_command_bytes})"
            )
        return self
