"""A next epoch's member before its core starts: key generation through the
old core's log, then the handover (docs/hrb.md section 3, "Epochs").

Theory of operation. When the old core (epoch e) decides to change epochs,
its log orders the next members' key generation as numbered ``DkgItem``s
(start, messages, phase closes); each old member relays every item to every
next member (``DkgRelay``). A ``Joiner`` — the next member's side, inside its
epoch-(e + 1) core replica before that core runs —

- uses item ``seq`` once **f + 1 distinct old members** relayed the same
  item (f of the old core): at least one honest member ordered it, and all
  honest ones order the same items, so every next member feeds its key
  generation participant the same stream, in the same order;
- drives its ``KeyGeneration`` participant with it (a ``start`` item that
  names this node starts a run; ``message`` items are stepped; ``close``
  items close the named phase), and submits what the participant broadcasts
  (``DkgSubmission``), signed, to f + 1 old members (one is honest and
  proposes it to the old core's log);
- asks the old core to close a phase (``DkgTimeout``) when its participant
  has sat in it ``dkg_phase_timeout_s``, and reports how its run ended
  (``DkgOutcome``: the key's commitments and the qualified dealers, or the
  failure);
- once the epoch change is decided, takes the new core's starting state
  from the ``CoreHandover``s: the same bytes from f + 1 old members. The
  state names the key the core agreed on; this member keeps its share if
  its own run produced that key (otherwise it joins without a share: it
  orders and checks, but does not sign partials).

Choices the design left open, and why these: next members learn the key
generation's items from f + 1 matching relays rather than from one relay
with a proof, because the old core's log entries carry no certificate a
newcomer could check (the ordering core's quorum certificates are
protocol-specific); f + 1 matching copies cost a few more messages at an
event that happens once per epoch. The key generation runs through the
old core's log, not among the next members directly, so every participant
sees the same messages in the same order and a Byzantine dealer cannot
show different dealings to different members unnoticed.

While nothing arrives for ``join_retry_s`` it asks the old members again
(``JoinRequest``), so lost relays or handovers are fetched, not waited for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from quorate.core.ready import Rejection
from quorate.core.signing import Signer
from quorate.hrb.core.commands import (
    CoreHandover,
    DkgItem,
    DkgOutcome,
    DkgRelay,
    DkgSubmission,
    DkgTimeout,
    JoinRequest,
    dkg_outcome_bytes,
    dkg_submission_bytes,
    dkg_timeout_bytes,
)
from quorate.hrb.core.config import CoreConfig
from quorate.hrb.core.snapshot import CoreSnapshot, CoreStart, decode_snapshot
from quorate.hrb.core.threshold import KeyGenConfig, KeyGeneration, KeyGenResult, ThresholdSuite
from quorate.hrb.messages import CORE_GROUP_BASE
from quorate.ids import NodeId

__all__ = ["Joiner"]

RELAY_WINDOW = 4096
"""Relayed items kept ahead of the next one this member can use."""
_encoder = msgspec.msgpack.Encoder()


@dataclass(slots=True)
class JoinerOutput:
    """Messages for the old core's group (``(to, group, message)``) and rejections."""

    outbound: list[tuple[NodeId, int, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class Joiner:
    """One next member's progress towards epoch ``epoch`` (see the module docstring)."""

    def __init__(
        self,
        me: NodeId,
        epoch: int,
        previous_members: Sequence[NodeId],
        *,
        suite: ThresholdSuite,
        signer: Signer,
        encryption_secret: bytes,
        random_bytes: Callable[[int], bytes],
        config: CoreConfig,
        now: float,
    ) -> None:
        self.me = me
        self.epoch = epoch
        self.previous = tuple(sorted(previous_members))
        self.f_previous = (len(self.previous) - 1) // 3
        self.suite = suite
        self.signer = signer
        self.encryption_secret = encryption_secret
        self.random_bytes = random_bytes
        self.config = config
        self.out = JoinerOutput()
        self.next_seq = 0
        self._votes: dict[int, dict[NodeId, bytes]] = {}
        """seq -> old member -> digest of the item it relayed."""
        self._items: dict[bytes, DkgItem] = {}
        self.keygen: KeyGeneration | None = None
        self.session = b""
        self.result: KeyGenResult | None = None
        self.failure: str | None = None
        self.selected = False
        """The latest start item names this node."""
        self._phase_since = now
        self._phase_seen = ""
        self._timed_out: set[str] = set()
        self._last_progress = now
        self._handovers: dict[NodeId, bytes] = {}
        self._handover_bytes: dict[bytes, bytes] = {}
        self.start: CoreStart | None = None
        self.abandoned = ""
        """Why this node is not in the new core after all (empty while it may be)."""

    @property
    def old_group(self) -> int:
        return CORE_GROUP_BASE + self.epoch - 1

    def take(self) -> JoinerOutput:
        out, self.out = self.out, JoinerOutput()
        return out

    # -- relayed items ----------------------------------------------------------------------
    def on_relay(self, sender: NodeId, relay: DkgRelay, now: float) -> None:
        if sender not in self.previous:
            self._reject(sender, relay, "relay from a node outside the previous core")
            return
        if relay.epoch != self.epoch:
            self._reject(sender, relay, f"relay for epoch {relay.epoch}, joining {self.epoch}")
            return
        if not isinstance(relay.seq, int) or not self.next_seq <= relay.seq < self.next_seq + RELAY_WINDOW:
            return  # used already, or too far ahead
        votes = self._votes.setdefault(relay.seq, {})
        if sender in votes:
            return  # one relay per old member and item: a liar cannot flood
        digest = hashlib.sha256(_encoder.encode(relay.item)).digest()
        votes[sender] = digest
        self._items.setdefault(digest, relay.item)
        self._use_ready_items(now)

    def _use_ready_items(self, now: float) -> None:
        while True:
            votes = self._votes.get(self.next_seq)
            if not votes:
                return
            counts: dict[bytes, int] = {}
            for digest in votes.values():
                counts[digest] = counts.get(digest, 0) + 1
            agreed = next((d for d, c in counts.items() if c > self.f_previous), None)
            if agreed is None:
                return
            item = self._items[agreed]
            del self._votes[self.next_seq]
            self.next_seq += 1
            self._last_progress = now
            self._use(item, now)
            if not self._votes:
                self._items.clear()

    def _use(self, item: DkgItem, now: float) -> None:
        if item.kind == "start":
            self.session = item.session
            self.result = None
            self.failure = None
            self._timed_out = set()
            self.selected = self.me in item.members
            if not self.selected:
                self.keygen = None
                return
            keys = {NodeId(m): k for m, k in zip(item.members, item.encryption_keys, strict=False)}
            config = KeyGenConfig(item.session, tuple(NodeId(m) for m in item.members), item.threshold, keys)
            self.keygen = self.suite.key_generation(config, self.me, self.encryption_secret, self.random_bytes)
            self.keygen.start()
            self._phase_seen, self._phase_since = self.keygen.phase, now
        elif self.keygen is None or item.session != self.session:
            return
        elif item.kind == "message":
            self.keygen.step(NodeId(item.sender), item.message)
        elif item.kind == "close":
            self.keygen.close_phase(item.phase)
        self._drain(now)

    def _drain(self, now: float) -> None:
        keygen = self.keygen
        if keygen is None:
            return
        ready = keygen.ready()
        self.out.rejected.extend(ready.rejected)
        for message in ready.broadcasts:
            data = dkg_submission_bytes(self.epoch, self.session, self.me, message)
            self._submit(DkgSubmission(self.epoch, self.session, self.me, message, self.signer.sign(data)))
        if keygen.phase != self._phase_seen:
            self._phase_seen, self._phase_since = keygen.phase, now
        if ready.result is not None:
            self.result = ready.result
            self._outcome(True, ready.result.commitments, tuple(int(q) for q in ready.result.qualified), "")
        elif ready.failure is not None:
            self.failure = ready.failure
            self._outcome(False, (), (), ready.failure)

    def _outcome(self, ok: bool, commitments: tuple[bytes, ...], qualified: tuple[int, ...], reason: str) -> None:
        unsigned = DkgOutcome(self.epoch, self.session, self.me, ok, commitments, qualified, reason, b"")
        signature = self.signer.sign(dkg_outcome_bytes(unsigned))
        self._submit(DkgOutcome(self.epoch, self.session, self.me, ok, commitments, qualified, reason, signature))

    def _submit(self, message: Any) -> None:
        """To f + 1 old members, a different f + 1 for each node (spreads the load)."""
        count = len(self.previous)
        first = int(self.me) % count
        for i in range(self.f_previous + 1):
            self.out.outbound.append((self.previous[(first + i) % count], self.old_group, message))

    # -- the handover ------------------------------------------------------------------------
    def on_handover(self, sender: NodeId, handover: CoreHandover, now: float) -> CoreStart | None:
        """The start of this member's core, once f + 1 old members sent the same state."""
        if sender not in self.previous:
            self._reject(sender, handover, "handover from a node outside the previous core")
            return None
        if handover.epoch != self.epoch or self.start is not None:
            return None
        if sender in self._handovers:
            return None  # one handover per old member
        digest = hashlib.sha256(handover.state).digest()
        self._handovers[sender] = digest
        self._handover_bytes.setdefault(digest, handover.state)
        if sum(1 for d in self._handovers.values() if d == digest) <= self.f_previous:
            return None
        try:
            snapshot: CoreSnapshot = decode_snapshot(self._handover_bytes[digest])
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.abandoned = "the agreed handover state does not decode"
            return None
        if snapshot.epoch != self.epoch or self.me not in snapshot.members:
            self.abandoned = f"not a member of epoch {self.epoch}'s core"
            return None
        index, secret = 0, b""
        result = self.result
        if (
            result is not None
            and result.commitments == snapshot.commitments
            and result.share_index is not None
            and result.share_secret is not None
        ):
            index, secret = result.share_index, result.share_secret
        self.start = CoreStart(0, self.epoch, self._handover_bytes[digest], index, secret)
        self._last_progress = now
        return self.start

    # -- time --------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        keygen = self.keygen
        if (
            keygen is not None
            and keygen.phase not in ("done", "failed")
            and keygen.phase not in self._timed_out
            and now >= self._phase_since + self.config.dkg_phase_timeout_s
        ):
            self._timed_out.add(keygen.phase)
            data = dkg_timeout_bytes(self.epoch, self.session, self.me, keygen.phase)
            self._submit(DkgTimeout(self.epoch, self.session, self.me, keygen.phase, self.signer.sign(data)))
        # The same sums as ``wake_at``: a difference could round below the bound
        # at the very deadline and the member would be woken forever.
        if self.start is None and now >= self._last_progress + self.config.join_retry_s:
            self._last_progress = now
            for member in self.previous:
                self.out.outbound.append((member, self.old_group, JoinRequest(self.epoch, self.next_seq)))

    def wake_at(self) -> float | None:
        if self.start is not None or self.abandoned:
            return None
        deadline = self._last_progress + self.config.join_retry_s
        keygen = self.keygen
        if keygen is not None and keygen.phase not in ("done", "failed") and keygen.phase not in self._timed_out:
            deadline = min(deadline, self._phase_since + self.config.dkg_phase_timeout_s)
        return deadline

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self.out.rejected.append(Rejection(sender, type(message).__name__, reason))
