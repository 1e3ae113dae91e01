"""Defences at the node's edge: per-peer rate limits (flooding), and the
places later admission (Sybil) and peer-diversity (Eclipse) checks hook in."""

from quorate.security.ratelimit import PeerRateLimiter, TokenBucket

__all__ = ["PeerRateLimiter", "TokenBucket"]
