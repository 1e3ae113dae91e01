"""Byzantine PBFT replicas, for fault-injection tests and simulations.

Theory of operation: ``ByzantineReplica`` wraps an honest ``PbftReplica`` and
rewrites what it says (its ``Ready.messages``), so every behaviour keeps the
honest core's bookkeeping and misbehaves only on the wire — the strongest
position for an attacker that still holds just its own keys (its signing key
and, with ``authentication="macs"``, its session keys, which it takes from
the core it wraps):

- ``equivocate``: as primary, a conflicting pre-prepare to each half of the
  peers; as a voter, conflicting prepares and commits to each half. With a
  shared ``Coalition`` the members vote, to each half, for the batch the
  colluding primary showed it — f + 1 colluders can then break safety, which
  is what the tests use to show the safety check fires. With MACs the
  conflicting messages carry valid authenticators and prove nothing to a
  third party: they cannot convict, only cost a view change.
- ``silent``: says nothing. ``withhold_votes``: sends no prepares or commits.
- ``slow``: holds its pre-prepares and new-views until 0.9 of the view-change
  timeout after it made them (via ``wake_at``), just short of suspicion.
- ``bad_signatures``: corrupts every signature it sends, and every MAC of the
  authenticators it sends with MACs.
- ``replay``: re-sends messages it received earlier, later.
- ``forge``: sends messages claiming another replica's identity (the runtime
  delivers them with the true sender, so the receiver must compare).
- ``flood``: many valid-looking (signed, or MAC'd with MACs) messages per
  input, for future views and out-of-window sequence numbers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from quorate.core.evidence import Evidence, sign_statement
from quorate.core.protocol import ProposeOutcome
from quorate.core.ready import Ready
from quorate.core.signing import Signer
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.pbft.messages import (
    DIGEST_BYTES,
    KIND_COMMIT,
    KIND_PRE_PREPARE,
    KIND_PREPARE,
    Checkpoint,
    Commit,
    Macs,
    NewView,
    Prepare,
    PrePrepare,
    ViewChange,
    batch_digest,
)
from quorate.pbft.replica import PbftReplica

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
"""``slow`` releases a proposal this far into the view-change timeout."""
REPLAY_MEMORY = 256
"""Messages a ``replay`` replica remembers to re-send."""
REPLAY_PER_INPUT = 2
FLOOD_PER_TICK = 16
"""Junk messages a ``flood`` replica sends each time it is woken."""
FLOOD_INTERVAL_S = 0.01
"""A ``flood`` replica asks to be woken this often."""


@dataclass(slots=True)
class Coalition:
    """Colluding replicas sharing what the equivocating primary sent each half."""

    members: frozenset[NodeId]
    replicas: tuple[NodeId, ...]
    splits: dict[tuple[int, int], tuple[PrePrepare, PrePrepare]] = field(default_factory=dict)

    def halves(self) -> tuple[tuple[NodeId, ...], tuple[NodeId, ...]]:
        honest = [r for r in self.replicas if r not in self.members]
        mid = (len(honest) + 1) // 2
        return tuple(honest[:mid]), tuple(honest[mid:])


def conflicting_batch(batch: tuple[bytes, ...], seq: int) -> tuple[bytes, ...]:
    """A different batch for the same slot (differing from its first entry on)."""
    return (b"equivocation:" + str(seq).encode(), *batch)


class ByzantineReplica:
    """An honest core made to misbehave in one of ``BEHAVIOURS``."""

    def __init__(
        self,
        inner: PbftReplica,
        behaviour: str,
        *,
        rng: random.Random,
        signer: Signer,
        peers: Sequence[NodeId],
        coalition: Coalition | None = None,
    ) -> None:
        if behaviour not in BEHAVIOURS:
            raise ConfigError(f"unknown Byzantine behaviour {behaviour!r}; choose one of {BEHAVIOURS}")
        self.inner = inner
        self.behaviour = behaviour
        self._rng = rng
        self._signer = signer
        self._peers = tuple(p for p in peers if p != inner.id)
        self._coalition = coalition
        self._now = 0.0
        self._held: list[tuple[float, NodeId, Any]] = []
        self._extra: list[tuple[NodeId, Any]] = []
        self._seen: list[Any] = []
        self._voted: set[tuple[int, int]] = set()
        self._timeout_s = inner.config.view_change_timeout_s
        self._authenticator = inner.authenticator

    @property
    def id(self) -> NodeId:
        return self.inner.id

    @property
    def detections(self) -> list[tuple[NodeId, str, int, int]]:
        return self.inner.detections

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self._now = now
        if self.behaviour == "replay" or self.behaviour == "forge":
            seen = self._seen
            if len(seen) < REPLAY_MEMORY:
                seen.append(message)
            else:
                seen[self._rng.randrange(REPLAY_MEMORY)] = message
        self.inner.step(sender, message, now)
        self._after_input()

    def tick(self, now: float) -> None:
        self._now = now
        self.inner.tick(now)
        self._after_input()
        if self.behaviour == "flood":
            self._flood()

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        self._now = now
        outcome = self.inner.propose(command, now)
        self._after_input()
        return outcome

    def has_ready(self) -> bool:
        return bool(self._extra) or self._due() or self.inner.has_ready()

    def ready(self) -> Ready:
        ready = self.inner.ready()
        out: list[tuple[NodeId, Any]] = []
        for to, message in ready.messages:
            out.extend(self._rewrite(to, message))
        if self._coalition is not None and self.behaviour == "equivocate":
            out.extend(self._coalition_votes())
        out.extend(self._extra)
        self._extra = []
        if self._held:
            due = [h for h in self._held if h[0] <= self._now]
            self._held = [h for h in self._held if h[0] > self._now]
            out.extend((to, m) for _, to, m in due)
        ready.messages = out
        wake = [h[0] for h in self._held]
        if self.behaviour == "flood":
            wake.append(self._now + FLOOD_INTERVAL_S)
        if wake:
            release = min(wake)
            ready.wake_at = release if ready.wake_at is None else min(ready.wake_at, release)
        return ready

    def advance(self, ready: Ready) -> None:
        self.inner.advance(ready)

    # ----------------------------------------------------------- behaviour

    def _due(self) -> bool:
        return any(h[0] <= self._now for h in self._held)

    def _after_input(self) -> None:
        if self.behaviour == "replay" and self._seen:
            for _ in range(REPLAY_PER_INPUT):
                self._extra.append((self._rng.choice(self._peers), self._rng.choice(self._seen)))
        elif self.behaviour == "forge" and self._seen:
            # Pass a message another replica sent us off as our own.
            self._extra.append((self._rng.choice(self._peers), self._rng.choice(self._seen)))

    def _halves(self) -> tuple[tuple[NodeId, ...], tuple[NodeId, ...]]:
        if self._coalition is not None:
            return self._coalition.halves()
        mid = (len(self._peers) + 1) // 2
        return self._peers[:mid], self._peers[mid:]

    def _sign(self, kind: str, seq: int, view: int, digest: bytes) -> bytes:
        return sign_statement(self._signer, kind, seq, view, digest).signature

    def _macs(self, data: bytes, receivers: Sequence[NodeId]) -> Macs:
        assert self._authenticator is not None
        return tuple(sorted(self._authenticator.macs(data, receivers).items()))

    def _pre_prepare(self, view: int, seq: int, batch: tuple[bytes, ...]) -> PrePrepare:
        """A pre-prepare of ours, authenticated as the mode asks."""
        digest = batch_digest(view, batch)
        if self._authenticator is not None:
            unauthenticated = PrePrepare(view, seq, view, batch, b"")
            return msgspec.structs.replace(
                unauthenticated, macs=self._macs(unauthenticated.authenticated_bytes(digest), self._peers)
            )
        return PrePrepare(view, seq, view, batch, self._sign(KIND_PRE_PREPARE, seq, view, digest))

    def _prepare(self, view: int, seq: int, digest: bytes, receivers: Sequence[NodeId],
                 primary_signature: bytes = b"") -> Prepare:
        me = int(self.inner.id)
        if self._authenticator is not None:
            unauthenticated = Prepare(view, seq, digest, me, b"")
            macs = self._macs(unauthenticated.authenticated_bytes(), receivers)
            return msgspec.structs.replace(unauthenticated, macs=macs)
        return Prepare(view, seq, digest, me, self._sign(KIND_PREPARE, seq, view, digest), primary_signature)

    def _commit(self, view: int, seq: int, digest: bytes, receivers: Sequence[NodeId]) -> Commit:
        me = int(self.inner.id)
        if self._authenticator is not None:
            unauthenticated = Commit(view, seq, digest, me, b"")
            macs = self._macs(unauthenticated.authenticated_bytes(), receivers)
            return msgspec.structs.replace(unauthenticated, macs=macs)
        return Commit(view, seq, digest, me, self._sign(KIND_COMMIT, seq, view, digest))

    def _rewrite(self, to: NodeId, message: Any) -> list[tuple[NodeId, Any]]:
        b = self.behaviour
        if b == "silent":
            return []
        if isinstance(message, Evidence) and (
            message.offender == self.inner.id
            or (self._coalition is not None and message.offender in self._coalition.members)
        ):
            return []  # the honest core caught its own side: keep quiet
        if b == "withhold_votes" and isinstance(message, Prepare | Commit):
            return []
        if b == "slow" and isinstance(message, PrePrepare | NewView):
            self._held.append((self._now + SLOW_FRACTION * self._timeout_s, to, message))
            return []
        if b == "bad_signatures" and hasattr(message, "signature"):
            if getattr(message, "macs", ()):  # MAC-authenticated normal case
                macs = tuple((r, bytes(x ^ 0x5A for x in mac)) for r, mac in message.macs)
                return [(to, msgspec.structs.replace(message, macs=macs))]
            corrupt = bytes(x ^ 0x5A for x in message.signature) or b"\x00"
            return [(to, msgspec.structs.replace(message, signature=corrupt))]
        if b == "forge" and isinstance(message, Prepare | Commit | Checkpoint | ViewChange):
            other = self._rng.choice(self._peers)
            return [(to, message), (to, msgspec.structs.replace(message, replica=int(other)))]
        if b == "equivocate":
            return self._equivocate(to, message)
        return [(to, message)]

    def _equivocate(self, to: NodeId, message: Any) -> list[tuple[NodeId, Any]]:
        _, second = self._halves()
        if isinstance(message, PrePrepare) and message.origin_view == message.view:
            key = (message.view, message.seq)
            pair = self._coalition.splits.get(key) if self._coalition is not None else None
            if pair is None:
                alt = self._pre_prepare(message.view, message.seq, conflicting_batch(message.batch, message.seq))
                pair = (message, alt)
                if self._coalition is not None:
                    self._coalition.splits[key] = pair
            return [(to, pair[1] if to in second else pair[0])]
        if self._coalition is not None:
            if isinstance(message, Prepare | Commit) and (message.view, message.seq) in self._coalition.splits:
                return []  # the coalition votes for both halves itself
            return [(to, message)]
        if isinstance(message, Prepare | Commit) and to in second:
            digest = bytes(self._rng.getrandbits(8) for _ in range(DIGEST_BYTES))
            if isinstance(message, Prepare):
                return [(to, self._prepare(message.view, message.seq, digest, [to], message.primary_signature))]
            return [(to, self._commit(message.view, message.seq, digest, [to]))]
        return [(to, message)]

    def _coalition_votes(self) -> list[tuple[NodeId, Any]]:
        assert self._coalition is not None
        out: list[tuple[NodeId, Any]] = []
        for key, pair in self._coalition.splits.items():
            if key in self._voted:
                continue
            self._voted.add(key)
            view, seq = key
            primary = self.inner.primary_of(view)
            for half, pp in zip(self._coalition.halves(), pair):
                if not half:
                    continue
                digest = pp.digest()
                votes: list[Any] = []
                if primary != self.inner.id:
                    votes.append(self._prepare(view, seq, digest, half, pp.signature))
                votes.append(self._commit(view, seq, digest, half))
                out.extend((to, v) for to in half for v in votes)
        return out

    def _flood(self) -> None:
        inner = self.inner
        high = inner.stable_seq + inner.config.window
        for _ in range(FLOOD_PER_TICK):
            to = self._rng.choice(self._peers)
            digest = bytes(self._rng.getrandbits(8) for _ in range(DIGEST_BYTES))
            if self._rng.random() < 0.5:
                view = inner.view + self._rng.randint(1, 3)
                seq = self._rng.randint(1, high)
            else:
                view = inner.view
                seq = high + self._rng.randint(1, 1000)
            self._extra.append((to, self._prepare(view, seq, digest, [to])))
