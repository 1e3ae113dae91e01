from __future__ import annotations

import pytest

from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.security import PeerRateLimiter, TokenBucket


def test_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=5.0)
    assert sum(bucket.allow(0.0) for _ in range(20)) == 5
    # One second later, ten more tokens (capped by the burst of five).
    assert sum(bucket.allow(1.0) for _ in range(20)) == 5
    assert sum(bucket.allow(1.3) for _ in range(20)) == 3


def test_a_flooding_peer_is_limited_without_touching_others() -> None:
    limiter = PeerRateLimiter(rate_per_s=100.0, burst=10.0)
    flooder, honest = NodeId(6), NodeId(1)
    admitted = sum(limiter.allow(flooder, t / 1000) for t in range(10_000))  # 10k msgs in 10 s
    assert admitted <= 10 + 100 * 10
    assert limiter.dropped[flooder] >= 10_000 - admitted
    assert all(limiter.allow(honest, 10.0 + i / 10) for i in range(20))
    assert honest not in limiter.dropped


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        PeerRateLimiter(rate_per_s=0, burst=1)
    with pytest.raises(ConfigError):
        TokenBucket(rate_per_s=1, burst=0.5)
