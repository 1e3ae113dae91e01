"""Byzantine replicas for tests and simulations: an honest core made to misbehave.

Theory of operation: ``ByzantineReplica`` wraps any HotStuff core and keeps
the ``ProtocolCore`` contract, so a runtime cannot tell it apart. It lets the
inner core run honestly and rewrites what it sends (and may add messages of
its own), one behaviour per replica:

- ``equivocate``: as leader, shows one block to half of its peers and a
  conflicting one (same view, signed) to the other half; as voter, sends the
  collector a second signed vote for another block in the same view.
- ``silent``: sends nothing (a crashed replica that still receives).
- ``slow``: holds its proposals until just under the view timeout
  (``SLOW_FRACTION`` of it) before releasing them.
- ``bad_signatures``: corrupts the signature of every proposal, vote and NewView.
- ``withhold_votes``: never sends its votes.
- ``replay``: later re-sends messages it received earlier to random peers.
- ``forge``: also sends copies claiming to come from another replica.
- ``flood``: after an input, sends ``flood_per_input`` extra valid-looking
  messages (repeats of its own, signed NewViews for random views, block
  requests), at most once per ``FLOOD_INTERVAL_FRACTION`` of a view timeout so
  that two flooders answering each other do not grow without bound.

What the honest replicas must show: safety with up to f such replicas, the
equivocators detected and excluded, everything else dropped with a
``Rejection``, and progress once the misbehaving leaders' views time out.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import msgspec

from quorate.core.evidence import statement_bytes
from quorate.core.protocol import ProposeOutcome, ProtocolCore
from quorate.core.ready import Ready
from quorate.core.signing import Signer
from quorate.errors import ConfigError
from quorate.hotstuff.messages import (
    GENESIS_QC,
    PROPOSAL_KIND,
    BlockRequest,
    NewView,
    Proposal,
    Vote,
    block_hash,
    newview_bytes,
    vote_bytes,
)
from quorate.ids import NodeId

__all__ = ["BEHAVIOURS", "ByzantineReplica"]

BEHAVIOURS = (
    "equivocate",
    "silent",
    "slow",
    "bad_signatures",
    "withhold_votes",
    "replay",
    "forge",
    "flood",
)

SLOW_FRACTION = 0.9
"""A slow leader releases a proposal this fraction of the view timeout late."""
REPLAY_MEMORY = 256
"""Messages a replaying replica remembers."""
REPLAY_PROBABILITY = 0.3
"""Chance, per input, that a replaying replica re-sends one old message."""
FLOOD_VIEW_SPREAD = 64
"""A flooding replica signs NewViews for views up to this far ahead."""
FLOOD_INTERVAL_FRACTION = 0.05
"""A flooding replica sends one burst per this fraction of the view timeout at most."""


def _corrupt(signature: bytes) -> bytes:
    if not signature:
        return b"\x00"
    return bytes([signature[0] ^ 0xFF]) + signature[1:]


class ByzantineReplica:
    """A ``ProtocolCore`` that runs ``inner`` but misbehaves as ``behaviour``."""

    def __init__(
        self,
        inner: ProtocolCore,
        behaviour: str,
        *,
        rng: random.Random,
        signer: Signer,
        peers: Sequence[NodeId],
        view_timeout_s: float = 1.0,
        flood_per_input: int = 8,
    ) -> None:
        if behaviour not in BEHAVIOURS:
            raise ConfigError(f"unknown Byzantine behaviour {behaviour!r}; choose one of {BEHAVIOURS}")
        if view_timeout_s <= 0 or flood_per_input < 1:
            raise ConfigError("view_timeout_s must be > 0 and flood_per_input >= 1")
        self.inner = inner
        self.behaviour = behaviour
        self.rng = rng
        self.signer = signer
        self.peers = tuple(p for p in peers if p != inner.id)
        self.view_timeout_s = view_timeout_s
        self.flood_per_input = flood_per_input
        self._now = 0.0
        self._inner_ready: Ready | None = None
        self._extra: list[tuple[NodeId, Any]] = []
        self._held: list[tuple[float, NodeId, Any]] = []
        self._seen: deque[Any] = deque(maxlen=REPLAY_MEMORY)
        self._recent: deque[tuple[NodeId, Any]] = deque(maxlen=REPLAY_MEMORY)
        self._twins: dict[int, Proposal] = {}
        self._next_flood_at = 0.0

    @property
    def id(self) -> NodeId:
        return self.inner.id

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self._now = max(self._now, now)
        if self.behaviour == "replay":
            self._seen.append(message)
        self.inner.step(sender, message, now)
        self._after_input()

    def tick(self, now: float) -> None:
        self._now = max(self._now, now)
        if self._held:
            due = [h for h in self._held if h[0] <= self._now]
            self._held = [h for h in self._held if h[0] > self._now]
            self._extra.extend((to, m) for _, to, m in due)
        self.inner.tick(now)
        self._after_input()

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        self._now = max(self._now, now)
        return self.inner.propose(command, now)

    def has_ready(self) -> bool:
        return bool(self._extra) or self.inner.has_ready()

    def ready(self) -> Ready:
        inner = self.inner.ready()
        self._inner_ready = inner
        messages = self._rewrite(inner.messages)
        messages.extend(self._extra)
        self._extra = []
        self._recent.extend(messages)
        wake_at = inner.wake_at
        if self._held:
            first = min(h[0] for h in self._held)
            wake_at = first if wake_at is None else min(wake_at, first)
        return Ready(
            messages=messages,
            hard_state=inner.hard_state,
            entries=inner.entries,
            snapshot=inner.snapshot,
            committed=inner.committed,
            reads=inner.reads,
            wake_at=wake_at,
            rejected=inner.rejected,
        )

    def advance(self, ready: Ready) -> None:
        if self._inner_ready is not None:
            self.inner.advance(self._inner_ready)
            self._inner_ready = None

    # ------------------------------------------------------------------ behaviours

    def _after_input(self) -> None:
        if self.behaviour == "replay" and self._seen and self.rng.random() < REPLAY_PROBABILITY:
            old = self._seen[self.rng.randrange(len(self._seen))]
            self._extra.append((self.rng.choice(self.peers), old))
        elif self.behaviour == "flood" and self.peers and self._now >= self._next_flood_at:
            self._next_flood_at = self._now + FLOOD_INTERVAL_FRACTION * self.view_timeout_s
            self._extra.extend(self._flood())

    def _flood(self) -> list[tuple[NodeId, Any]]:
        out: list[tuple[NodeId, Any]] = []
        for _ in range(self.flood_per_input):
            to = self.rng.choice(self.peers)
            pick = self.rng.randrange(3)
            if pick == 0 and self._recent:
                out.append((to, self._recent[self.rng.randrange(len(self._recent))][1]))
            elif pick == 1:
                view = self.rng.randrange(1, FLOOD_VIEW_SPREAD + 1)
                signature = self.signer.sign(newview_bytes(view))
                out.append((to, NewView(view, int(self.id), signature, GENESIS_QC)))
            else:
                missing = hashlib.sha256(self.rng.randbytes(8)).digest()
                out.append((to, BlockRequest(missing, 1 << 20)))
        return out

    def _rewrite(self, messages: list[tuple[NodeId, Any]]) -> list[tuple[NodeId, Any]]:
        behaviour = self.behaviour
        if behaviour == "silent":
            return []
        out: list[tuple[NodeId, Any]] = []
        for to, m in messages:
            if behaviour == "withhold_votes":
                if not isinstance(m, Vote):
                    out.append((to, m))
            elif behaviour == "bad_signatures":
                if isinstance(m, Proposal | Vote | NewView):
                    m = msgspec.structs.replace(m, signature=_corrupt(m.signature))
                out.append((to, m))
            elif behaviour == "equivocate":
                out.extend(self._equivocate(to, m))
            elif behaviour == "slow" and isinstance(m, Proposal):
                self._held.append((self._now + SLOW_FRACTION * self.view_timeout_s, to, m))
            elif behaviour == "forge":
                out.append((to, m))
                forged = self._forge(m)
                if forged is not None:
                    out.append((to, forged))
            else:
                out.append((to, m))
        return out

    def _equivocate(self, to: NodeId, m: Any) -> list[tuple[NodeId, Any]]:
        if isinstance(m, Proposal):
            half = self.peers[len(self.peers) // 2 :]
            if to in half:
                return [(to, self._twin(m))]
            return [(to, m)]
        if isinstance(m, Vote):
            other = hashlib.sha256(m.block_hash + b"equivocation").digest()
            signature = self.signer.sign(vote_bytes(m.view, other))
            return [(to, m), (to, Vote(m.view, other, m.voter, signature, m.proposer_signature))]
        return [(to, m)]

    def _twin(self, p: Proposal) -> Proposal:
        """A conflicting, correctly signed proposal for the same view."""
        twin = self._twins.get(p.block.view)
        if twin is None:
            block = msgspec.structs.replace(
                p.block, commands=(*p.block.commands, b"equivocation:%d" % p.block.view)
            )
            h = block_hash(block)
            signature = self.signer.sign(statement_bytes(PROPOSAL_KIND, block.view, 0, h))
            twin = Proposal(block, signature, p.tc)
            self._twins = {p.block.view: twin}
        return twin

    def _forge(self, m: Any) -> Any:
        victim = self.rng.choice(self.peers)
        if isinstance(m, Vote):
            return msgspec.structs.replace(m, voter=int(victim))
        if isinstance(m, NewView):
            return msgspec.structs.replace(m, author=int(victim))
        if isinstance(m, Proposal):
            block = msgspec.structs.replace(m.block, proposer=int(victim))
            h = block_hash(block)
            return Proposal(block, self.signer.sign(statement_bytes(PROPOSAL_KIND, block.view, 0, h)), m.tc)
        return None
