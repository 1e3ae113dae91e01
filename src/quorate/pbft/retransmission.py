"""Retransmission and catching up (PBFT §5.2; the BFT library's status
messages).

Theory of operation. A replica with unfinished work that made no progress
for ``retransmit_interval_s`` (executed nothing; in the first period after
an idle spell, the next batch's pre-prepare arriving also counts:
``PbftReplica._mark``) re-sends its own latest messages (its view
change, the new-view it sent as primary, its pre-prepares, prepares, commits
and checkpoints, its clients' commands) and a ``Status``: its view, whether
the view is installed, and its executed sequence number. Lost messages then
cost time, never liveness. A peer answers a ``Status`` with what the sender
lacks: commit certificates (``CommittedBatch``, pre-prepare and q commits,
which any replica may execute, even during a view change), its stable
checkpoint proof, or the new-view (or the view changes) of a view the sender
missed.

With MAC authenticators a commit certificate convinces only its receiver,
so instead a replica vouches, MAC'd for that peer alone, that it executed
the batch (``_vouch``); f + 1 distinct vouchers include an honest one, so the
peer executes the batch (``_on_vouch``).

Help is rate-limited: each peer is answered about each thing (a slot, or one
of the ``HELP_*`` keys) at most once per retransmission period, so two
replicas that both finished a slot never answer each other forever.

The functions taking ``self: PbftReplica`` are ``PbftReplica`` methods,
attached in ``quorate.pbft.replica``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quorate.core.evidence import verify_statement
from quorate.ids import NodeId
from quorate.pbft.messages import CommittedBatch, PrePrepare, Request, Status

if TYPE_CHECKING:
    from quorate.pbft.replica import PbftReplica, _Slot

HELP_PROOF = -1
HELP_STATUS = -2
HELP_NEW_VIEW = -3
HELP_VIEW_CHANGES = -4
"""Keys (besides sequence numbers) under which help to a peer is rate-limited."""


def _retransmit(self: PbftReplica) -> None:
    """No progress for a while: say again what we said last, and where
    we stand so peers can fill the gaps (§5.2)."""
    self._broadcast(Status(self.view, self.view_active, self.executed_seq))
    self._announce = False
    if not self.view_active:
        if self._my_vc is not None:
            self._broadcast(self._my_vc)
        # We cannot tell who leads now: let every replica see our
        # clients' commands (only the primary of an installed view takes them).
        for command in self._pending.values():
            self._broadcast(Request(command))
    else:
        if self.primary == self._id:
            if self._new_view_msg is not None:
                self._broadcast(self._new_view_msg)
        else:
            for d, command in self._pending.items():
                if d not in self._assigned:
                    self._forward(d, command)
        for seq in sorted(self._slots):
            if seq <= self.executed_seq:
                continue
            slot = self._slots[seq]
            pp = self._own_pre_prepare(slot)
            if pp is not None:
                self._broadcast(pp)
            if slot.my_prepare is not None:
                self._broadcast(slot.my_prepare)
            if slot.my_commit is not None:
                self._broadcast(slot.my_commit)
    for cp in self._own_checkpoints.values():
        self._broadcast(cp)
    if self.executed_seq < self.stable_seq:
        self._request_state()


def _on_status(self: PbftReplica, sender: NodeId, m: Status) -> None:
    if m.executed_seq > self.executed_seq and self._may_help(sender, HELP_STATUS):
        # The sender is ahead: tell it where we stand so it fills us in.
        self._send(sender, Status(self.view, self.view_active, self.executed_seq))
    if m.executed_seq < self.stable_seq or m.executed_seq == self.stable_seq < self.executed_seq:
        # Below our stable checkpoint, or at it without perhaps knowing it
        # is stable (a restarted replica forgets the checkpoints it saw):
        # then what we send above it falls outside its window.
        self._help_stale(sender)
    for seq in range(max(m.executed_seq, self.stable_seq) + 1, self.executed_seq + 1):
        cert = self._commit_certs.get(seq)
        if cert is not None and self._may_help(sender, seq):
            self._send(sender, self._vouch(sender, cert) if self._macs else cert)
    if m.view < self.view or (m.view == self.view and not m.view_active):
        if not m.view_active:
            self._help_lagging(sender, m.view)
        else:
            self._show_new_view(sender)


def _vouch(self: PbftReplica, to: NodeId, cert: CommittedBatch) -> CommittedBatch:
    """MAC mode: our word, for ``to`` alone, that we executed the batch."""
    assert self._authenticator is not None
    pp = cert.pre_prepare
    bare = CommittedBatch(PrePrepare(pp.view, pp.seq, pp.origin_view, pp.batch, b""), ())
    macs = self._authenticator.macs(bare.vouched_bytes(pp.digest()), (to,))
    return CommittedBatch(bare.pre_prepare, (), tuple(sorted(macs.items())))


def _on_committed_batch(self: PbftReplica, sender: NodeId, m: CommittedBatch) -> None:
    pp = m.pre_prepare
    seq = pp.seq
    if seq <= self.executed_seq or seq in self._commit_certs:
        return
    if not self._in_window(seq):
        self._reject(sender, "CommittedBatch", "sequence number outside the window")
        return
    if pp.origin_view > pp.view or len(pp.batch) > self.config.batch_max:
        self._reject(sender, "CommittedBatch", "malformed pre-prepare")
        return
    digest = pp.digest()
    if self._macs:
        self._on_vouch(sender, m, digest)
        return
    if not verify_statement(pp.statement(self.primary_of(pp.view), digest), self._verifier):
        self._reject(sender, "CommittedBatch", "bad pre-prepare signature")
        return
    voters: set[int] = set()
    for c in m.commits:
        if c.replica in voters or c.replica not in self._members:
            continue
        if (c.view, c.seq, c.digest) != (pp.view, seq, digest):
            continue
        if verify_statement(c.statement(), self._verifier):
            voters.add(c.replica)
    if len(voters) < self.quorum:
        self._reject(sender, "CommittedBatch", "fewer than a quorum of valid commits")
        return
    self._commit_certs[seq] = m
    self._execute_ready()


def _on_vouch(self: PbftReplica, sender: NodeId, m: CommittedBatch, digest: bytes) -> None:
    """MAC mode: ``sender`` says it executed ``digest`` at the seq. Once
    f + 1 distinct replicas say so, one of them is honest and the batch
    committed: execute it (a replica that missed the slot, or accepted
    another batch there from an equivocating primary, catches up)."""
    if not self._authentic(sender, m.vouched_bytes(digest), m.macs):
        self._reject(sender, "CommittedBatch", "bad authenticator")
        return
    seq = m.pre_prepare.seq
    by_sender = self._vouches.setdefault(seq, {})
    by_sender[int(sender)] = (digest, m.pre_prepare)
    if sum(1 for d, _ in by_sender.values() if d == digest) >= self.f + 1:
        del self._vouches[seq]
        self._commit_certs[seq] = CommittedBatch(m.pre_prepare, ())
        self._execute_ready()


def _may_help(self: PbftReplica, sender: NodeId, what: int) -> bool:
    """Answer each peer about each thing (a slot, or a negative code for
    the proof and our status) at most once per retransmission period:
    two replicas that both finished a slot must not answer each other
    forever, and a peer asking again later is answered again."""
    if self._now - self._helped_since >= self.config.retransmit_interval_s:
        self._helped.clear()
        self._helped_since = self._now
    key = (int(sender), what)
    if key in self._helped:
        return False
    self._helped.add(key)
    return True


def _help(self: PbftReplica, sender: NodeId, seq: int, slot: _Slot) -> None:
    """``sender`` repeats itself for a slot this replica finished: it
    missed our messages, so send them again (to it alone)."""
    if not self._may_help(sender, seq):
        return
    pp = self._own_pre_prepare(slot)
    if pp is not None:
        self._send(sender, pp)
    if slot.my_prepare is not None:
        self._send(sender, slot.my_prepare)
    if slot.my_commit is not None:
        self._send(sender, slot.my_commit)
    cert = self._commit_certs.get(seq)
    if self._macs and cert is not None and seq <= self.executed_seq:
        # It may hold another batch for the slot (an equivocating
        # primary's): our messages cannot help it, our word can.
        self._send(sender, self._vouch(sender, cert))


def _own_pre_prepare(self: PbftReplica, slot: _Slot) -> PrePrepare | None:
    """The pre-prepare this replica, as primary, may send again for the
    slot. With MACs, not one of a new-view's O: those carry no
    authenticator (the signed ``NewView`` covers them, and it is what a
    replica that missed them is sent)."""
    pp = slot.pre_prepare
    if pp is None or self.primary != self._id or (self._macs and not pp.macs):
        return None
    return pp


def _help_stale(self: PbftReplica, sender: NodeId) -> None:
    """``sender`` works below our stable checkpoint: show it the proof."""
    if not self._may_help(sender, HELP_PROOF):
        return
    for cp in self._stable_proof:
        self._send(sender, cp)
