"""SWIM settings, validated once at the edge.

Theory of operation: ``SwimConfig`` is a frozen value; ``SwimNode`` calls
``validate()`` in its constructor, so a bad setting fails at start with a
message naming the field and the fix.

Timing follows SWIM (Das, Gupta, Motivala 2002, §3): one member is probed per
*protocol period*; a direct ``Ping`` must be acknowledged within the *probe
timeout*, which must leave room in the period for the indirect ``PingReq``
round through ``indirect_probes`` (k) helpers. Suspicion timeouts follow
Lifeguard (Dadgar et al. 2018, §IV-B): between ``alpha * log10(n) * period``
and ``beta`` times that, shrinking as ``suspicion_k`` independent accusers
confirm the suspicion. Every membership update is retransmitted at most
``ceil(retransmit_mult * log10(n + 1))`` times (SWIM §4.1's λ·log n).

All members of one cluster must share ``merkle_depth`` (the shape of the
anti-entropy tree) and should share the timing settings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from quorate.errors import ConfigError


class GossipMode(enum.Enum):
    """How application rumours travel (``SwimNode.broadcast``)."""

    PUSH = "push"
    """Senders piggyback and push rumours to ``fanout`` peers per gossip round."""
    PULL = "pull"
    """Every gossip round, ask ``fanout`` peers for what we have not seen."""
    PUSH_PULL = "push-pull"
    """Both: pushes spread a rumour fast, pulls catch the last few members."""


@dataclass(frozen=True, slots=True)
class SwimConfig:
    """Tunables of one SWIM member. All durations in seconds."""

    protocol_period_s: float = 1.0
    """SWIM's protocol period T': one probe is started per period."""
    probe_timeout_s: float = 0.5
    """How long a direct Ping waits for its Ack before the indirect round."""
    indirect_probes: int = 3
    """k: helpers asked to ping a target that missed its direct Ack."""
    suspicion_alpha: float = 5.0
    """Lifeguard α: minimum suspicion timeout = α · log10(n) · period."""
    suspicion_beta: float = 6.0
    """Lifeguard β: maximum suspicion timeout = β · minimum."""
    suspicion_k: int = 3
    """Lifeguard K: independent confirmations that shrink the timeout to the minimum."""
    retransmit_mult: float = 4.0
    """λ: each update is piggybacked at most ceil(λ · log10(n + 1)) times."""
    lifeguard: bool = True
    """Local health multiplier, dynamic suspicion, Nacks and the buddy system."""
    lhm_max: int = 8
    """Lifeguard S: the local health multiplier saturates here."""
    gossip_mode: GossipMode = GossipMode.PUSH
    fanout: int = 3
    """Peers contacted per gossip round (before adaptation)."""
    gossip_interval_s: float = 0.2
    """How often rumours and membership updates are pushed (or pulled)."""
    anti_entropy_interval_s: float = 10.0
    """How often a random peer is synced: membership snapshot and Merkle state."""
    reconnect_interval_s: float = 5.0
    """How often a random Dead member is offered a membership sync, so the two
    sides of a healed partition find each other again."""
    shuffle_interval_s: float = 2.0
    """Cyclon: how often the partial view is shuffled with its oldest peer."""
    view_size: int = 16
    """Cyclon: the size of the partial view of peers used as gossip targets."""
    shuffle_length: int = 6
    """Cyclon: view entries exchanged per shuffle."""
    view_max_share: float = 0.5
    """Eclipse resistance: at most this share of the Cyclon view from one
    locality (subnet or region), when members span several and the node
    knows its peers' localities."""
    view_entropy_min: float = 0.5
    """Eclipse resistance: when the entropy of the view's localities falls
    below this fraction of the up members', the view is refreshed from the
    trusted seeds (0 = never)."""
    adaptive: bool = True
    """Raise fanout and retransmissions when the missed-Ack ratio is high."""
    max_message_bytes: int = 1400
    """Budget of one probe or gossip message, piggybacked updates included
    (a UDP datagram under a typical MTU). Snapshots and Merkle entries may be
    larger: they are sent in chunks of at most this size where possible."""
    merkle_depth: int = 2
    """Levels of the 16-way anti-entropy tree: 16**depth leaf buckets."""
    rumour_retention: int = 1024
    """Rumours kept to answer pulls; the oldest are forgotten first."""
    max_rumour_bytes: int = 1024
    """Largest application payload ``broadcast`` accepts."""

    def validate(self) -> SwimConfig:
        """Raise ``ConfigError`` naming the first bad field; return self."""
        if not self.protocol_period_s > 0:
            raise ConfigError(
                f"protocol_period_s must be > 0 seconds, got {self.protocol_period_s}"
            )
        if not 0 < self.probe_timeout_s < self.protocol_period_s:
            raise ConfigError(
                f"probe_timeout_s must be > 0 and below protocol_period_s ({self.protocol_period_s}) "
                f"so the indirect round fits in the period; got {self.probe_timeout_s}. "
                "Half the period is typical."
            )
        for name in (
            "gossip_interval_s",
            "anti_entropy_interval_s",
            "reconnect_interval_s",
            "shuffle_interval_s",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {value}")
        for name in ("indirect_probes", "suspicion_k", "lhm_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        for name in (
            "fanout",
            "view_size",
            "shuffle_length",
            "rumour_retention",
            "max_rumour_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.shuffle_length > self.view_size:
            raise ConfigError(
                f"shuffle_length ({self.shuffle_length}) must not exceed view_size ({self.view_size})"
            )
        if not 0 < self.view_max_share <= 1:
            raise ConfigError(f"view_max_share must be in (0, 1], got {self.view_max_share}")
        if not 0 <= self.view_entropy_min <= 1:
            raise ConfigError(f"view_entropy_min must be in [0, 1], got {self.view_entropy_min}")
        if not self.suspicion_alpha > 0:
            raise ConfigError(f"suspicion_alpha must be > 0, got {self.suspicion_alpha}")
        if not self.suspicion_beta >= 1:
            raise ConfigError(
                f"suspicion_beta must be >= 1 (the maximum timeout is beta times the minimum), "
                f"got {self.suspicion_beta}"
            )
        if not self.retransmit_mult > 0:
            raise ConfigError(f"retransmit_mult must be > 0, got {self.retransmit_mult}")
        if not isinstance(self.gossip_mode, GossipMode):
            raise ConfigError(
                f"gossip_mode must be a GossipMode ({', '.join(m.value for m in GossipMode)}), "
                f"got {self.gossip_mode!r}"
            )
        if not isinstance(self.merkle_depth, int) or not 1 <= self.merkle_depth <= 4:
            raise ConfigError(f"merkle_depth must be an integer in 1..4, got {self.merkle_depth!r}")
        if self.max_message_bytes < 256:
            raise ConfigError(
                f"max_message_bytes must be >= 256 to fit a probe and a few updates, "
                f"got {self.max_message_bytes}"
            )
        if self.max_rumour_bytes > self.max_message_bytes - 64:
            raise ConfigError(
                f"max_rumour_bytes ({self.max_rumour_bytes}) must leave 64 bytes of headroom "
                f"below max_message_bytes ({self.max_message_bytes})"
            )
        return self
