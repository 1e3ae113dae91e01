"""Byzantine validators for tests and simulations: an honest core made to misbehave.

Theory of operation: ``ByzantineValidator`` wraps a Casper core and keeps the
``ProtocolCore`` contract, so a runtime cannot tell it apart. The inner core
runs honestly; the wrapper rewrites what it sends and adds messages signed
with the validator's own key, one behaviour per validator:

- ``double_vote``: with every vote, a second signed vote for another
  target in the same epoch (slashing condition I), sent to every peer.
- ``surround_vote``: after each vote (s, t) with s above genesis, a signed
  vote from genesis to a checkpoint of epoch t + 1, whose link surrounds
  the first (slashing condition II).
- ``equivocate``: as proposer, shows one block to half of its peers and a
  conflicting one (same slot, signed) to the other half (not slashable in
  FFG; the fork choice settles it).
- ``silent``: sends nothing. ``withhold_votes``: never sends its votes.
- ``bad_signatures``: corrupts the signature of every proposal and vote.

What the honest validators must show: safety with up to f such validators,
both slashing conditions detected with evidence that verifies from public
keys alone, the offenders excluded, and finality again once they are.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

import msgspec

from quorate.casper.messages import (
    GENESIS,
    Checkpoint,
    Proposal,
    Vote,
    block_bytes,
    block_hash,
    vote_bytes,
)
from quorate.core.protocol import ProposeOutcome, ProtocolCore
from quorate.core.ready import Ready
from quorate.core.signing import Signer
from quorate.errors import ConfigError
from quorate.ids import NodeId

__all__ = ["BEHAVIOURS", "ByzantineValidator"]

BEHAVIOURS = (
    "double_vote",
    "surround_vote",
    "equivocate",
    "silent",
    "withhold_votes",
    "bad_signatures",
)


def _corrupt(signature: bytes) -> bytes:
    if not signature:
        return b"\x00"
    return bytes([signature[0] ^ 0xFF]) + signature[1:]


def _fake_hash(seed: bytes) -> bytes:
    return hashlib.sha256(b"quorate.casper.byzantine:" + seed).digest()


class ByzantineValidator:
    """A ``ProtocolCore`` that runs ``inner`` but misbehaves as ``behaviour``."""

    def __init__(
        self,
        inner: ProtocolCore,
        behaviour: str,
        *,
        rng: random.Random,
        signer: Signer,
        peers: Sequence[NodeId],
    ) -> None:
        if behaviour not in BEHAVIOURS:
            raise ConfigError(f"unknown Byzantine behaviour {behaviour!r}; choose one of {', '.join(BEHAVIOURS)}")
        self.inner = inner
        self.behaviour = behaviour
        self.rng = rng
        self.signer = signer
        self.peers = tuple(p for p in peers if p != inner.id)
        self._inner_ready: Ready | None = None
        self._twins: dict[int, Proposal] = {}
        self._extra_votes: dict[tuple[int, int], Vote] = {}

    @property
    def id(self) -> NodeId:
        return self.inner.id

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self.inner.step(sender, message, now)

    def tick(self, now: float) -> None:
        self.inner.tick(now)

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        return self.inner.propose(command, now)

    def has_ready(self) -> bool:
        return self.inner.has_ready()

    def ready(self) -> Ready:
        inner = self.inner.ready()
        self._inner_ready = inner
        return Ready(
            messages=self._rewrite(inner.messages),
            hard_state=inner.hard_state,
            entries=inner.entries,
            snapshot=inner.snapshot,
            committed=inner.committed,
            reads=inner.reads,
            wake_at=inner.wake_at,
            rejected=inner.rejected,
        )

    def advance(self, ready: Ready) -> None:
        if self._inner_ready is not None:
            self.inner.advance(self._inner_ready)
            self._inner_ready = None

    # ------------------------------------------------------------------ behaviours

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
                if isinstance(m, Proposal | Vote):
                    m = msgspec.structs.replace(m, signature=_corrupt(m.signature))
                out.append((to, m))
            elif behaviour == "equivocate" and isinstance(m, Proposal):
                half = self.peers[len(self.peers) // 2 :]
                out.append((to, self._twin(m) if to in half else m))
            elif behaviour in ("double_vote", "surround_vote") and isinstance(m, Vote):
                out.append((to, m))
                extra = self._extra_vote(m)
                if extra is not None:
                    out.append((to, extra))
            else:
                out.append((to, m))
        return out

    def _extra_vote(self, vote: Vote) -> Vote | None:
        """The slashable companion of ``vote`` (the same one for every peer)."""
        key = (vote.source.epoch, vote.target.epoch)
        extra = self._extra_votes.get(key)
        if extra is not None:
            return extra
        if self.behaviour == "double_vote":
            source = vote.source
            target = Checkpoint(vote.target.epoch, _fake_hash(vote.target.hash))
        else:
            if vote.source.epoch < 1:
                return None
            source = GENESIS
            target = Checkpoint(vote.target.epoch + 1, _fake_hash(vote.target.hash))
        extra = Vote(vote.validator, source, target, self.signer.sign(vote_bytes(source, target)))
        self._extra_votes = {key: extra}
        return extra

    def _twin(self, p: Proposal) -> Proposal:
        """A conflicting, correctly signed block for the same slot."""
        twin = self._twins.get(p.block.slot)
        if twin is None:
            block = msgspec.structs.replace(p.block, commands=(*p.block.commands, b"equivocation:%d" % p.block.slot))
            twin = Proposal(block, self.signer.sign(block_bytes(block.slot, block_hash(block))))
            self._twins = {p.block.slot: twin}
        return twin
