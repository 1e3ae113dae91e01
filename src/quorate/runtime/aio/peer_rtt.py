"""Round-trip time and loss to each connected peer, as a real node sees them.

Theory of operation.

The transport (``quorate.runtime.aio.transport``) sends every connected peer
that said it answers pings a ``Ping`` every ``PING_INTERVAL_S``, on the peer
connection itself, and answers a peer's ``Ping`` with a ``Pong`` at once.
Neither reaches a protocol core: the round trip is the network's plus the
two event loops', which is what a consensus message between the two nodes
pays too.

``PeerRtt`` keeps the bookkeeping, with the time passed in (no clock here):

- ``sent(peer, now)`` numbers a ping and remembers when it left;
- ``answered(peer, seq, now)`` takes the round trip of a ping still in flight
  into the smoothed estimate, an exponentially weighted moving average with
  gain ``RTT_GAIN`` (RFC 6298's SRTT: new = old + gain x (sample - old); the
  first sample sets it);
- ``expire(now)`` counts a ping unanswered for ``PING_LOSS_AFTER_S`` as lost
  and forgets it (an answer arriving later is ignored), so memory stays
  bounded by the pings of one loss window.

``rtt_ms()`` gives the smoothed RTT in milliseconds of every peer that
answered at least once; ``loss()`` per peer pinged, lost / (answered +
lost), the share of pings whose fate is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorate.errors import ConfigError
from quorate.ids import NodeId

PING_INTERVAL_S = 2.0
"""How often each connected peer is pinged."""
PING_LOSS_AFTER_S = 5.0
"""A ping not answered within this long counts as lost."""
RTT_GAIN = 0.125
"""Weight of a new sample in the smoothed RTT (RFC 6298's alpha)."""


@dataclass(slots=True)
class PeerRttEstimate:
    """What is known of the round trip to one peer (times in seconds)."""

    smoothed_s: float | None = None
    last_s: float | None = None
    sent: int = 0
    answered: int = 0
    lost: int = 0
    in_flight: dict[int, float] = field(default_factory=dict)
    """Ping sequence number -> when it was sent."""

    @property
    def loss(self) -> float:
        """Share of pings known lost among those whose fate is known."""
        settled = self.answered + self.lost
        return self.lost / settled if settled else 0.0


class PeerRtt:
    """Per-peer smoothed round-trip times and ping loss (see the module docstring)."""

    def __init__(self, gain: float = RTT_GAIN, loss_after_s: float = PING_LOSS_AFTER_S) -> None:
        if not 0.0 < gain <= 1.0:
            raise ConfigError(f"the RTT gain must be in (0, 1], got {gain}")
        if not loss_after_s > 0:
            raise ConfigError(f"a ping's loss timeout must be > 0 s, got {loss_after_s}")
        self.gain = gain
        self.loss_after_s = loss_after_s
        self.peers: dict[NodeId, PeerRttEstimate] = {}
        self._next_seq = 1

    def sent(self, peer: NodeId, now: float) -> int:
        """Number a ping to ``peer`` leaving at ``now``; its sequence number."""
        seq = self._next_seq
        self._next_seq += 1
        estimate = self.peers.setdefault(peer, PeerRttEstimate())
        estimate.sent += 1
        estimate.in_flight[seq] = now
        return seq

    def answered(self, peer: NodeId, seq: int, now: float) -> float | None:
        """A pong for ping ``seq`` came back from ``peer`` at ``now``: the
        round trip in seconds, or ``None`` for a pong of no ping in flight
        (already counted lost, never sent, or answered twice)."""
        estimate = self.peers.get(peer)
        if estimate is None:
            return None
        sent_at = estimate.in_flight.pop(seq, None)
        if sent_at is None:
            return None
        sample_s = max(0.0, now - sent_at)
        estimate.answered += 1
        estimate.last_s = sample_s
        if estimate.smoothed_s is None:
            estimate.smoothed_s = sample_s
        else:
            estimate.smoothed_s += self.gain * (sample_s - estimate.smoothed_s)
        return sample_s

    def expire(self, now: float) -> int:
        """Count every ping in flight for ``loss_after_s`` or more as lost; how many."""
        lost = 0
        for estimate in self.peers.values():
            late = [seq for seq, sent_at in estimate.in_flight.items() if now - sent_at >= self.loss_after_s]
            for seq in late:
                del estimate.in_flight[seq]
            estimate.lost += len(late)
            lost += len(late)
        return lost

    def rtt_ms(self) -> dict[NodeId, float]:
        """Peer -> smoothed round trip in ms, for every peer that answered."""
        return {
            peer: round(e.smoothed_s * 1e3, 3) for peer, e in sorted(self.peers.items()) if e.smoothed_s is not None
        }

    def loss(self) -> dict[NodeId, float]:
        """Peer -> share of its pings lost, for every peer pinged."""
        return {peer: round(e.loss, 4) for peer, e in sorted(self.peers.items()) if e.sent}
