"""Token buckets, per peer, so a flooding peer cannot cost an honest node
more than a bounded share of its CPU.

Theory of operation: each peer has a bucket of ``burst`` tokens refilled at
``rate_per_s``; a message costs one token (or a weight, e.g. a signature
verification costs more than a heartbeat). A message arriving at an empty
bucket is dropped *before* it is decoded or verified — that is what bounds
the cost. Time is passed in (sans-IO), so the simulator and the asyncio
runtime share this code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorate.errors import ConfigError
from quorate.ids import NodeId


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float = -1.0
    updated_s: float = 0.0

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ConfigError(
                f"rate limit needs rate_per_s > 0 and burst >= 1 (got {self.rate_per_s}, {self.burst})"
            )
        if self.tokens < 0:
            self.tokens = self.burst

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if available at time ``now``."""
        elapsed = now - self.updated_s
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_s)
            self.updated_s = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


@dataclass(slots=True)
class PeerRateLimiter:
    """One ``TokenBucket`` per peer, created on first contact."""

    rate_per_s: float
    burst: float
    buckets: dict[NodeId, TokenBucket] = field(default_factory=dict)
    dropped: dict[NodeId, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        TokenBucket(self.rate_per_s, self.burst)  # validates the settings once

    def allow(self, peer: NodeId, now: float, cost: float = 1.0) -> bool:
        bucket = self.buckets.get(peer)
        if bucket is None:
            bucket = self.buckets[peer] = TokenBucket(self.rate_per_s, self.burst, updated_s=now)
        if bucket.allow(now, cost):
            return True
        self.dropped[peer] = self.dropped.get(peer, 0) + 1
        return False
