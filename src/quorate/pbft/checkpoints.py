"""Checkpoints and garbage collection (PBFT, Castro & Liskov OSDI 1999 §4.3).

Theory of operation. Every ``checkpoint_interval`` (K) executed sequence
numbers a replica signs a ``Checkpoint`` naming the sequence number, the
number of entries executed and the running state digest (``chain_digest``
over every committed entry) and sends it to all. q = 2f + 1 matching
checkpoints from distinct replicas form a proof: the checkpoint is *stable*,
and everything at or below it (slots, prepared and commit certificates, own
checkpoints, signed statements, claims, evidence) is discarded. The low
watermark moves to it; a replica that has not executed that far asks for the
entries (``quorate.pbft.state_transfer``).

Checkpoints may be relayed (a stable proof shown to a replica that fell
behind), so the signature, not the sender, names the author. A replica keeps
only a few of each author's newest checkpoints, enough to see a proof form
and bounded against an author sending one for every K.

The functions taking ``self: PbftReplica`` are ``PbftReplica`` methods,
attached in ``quorate.pbft.replica``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from quorate.core.evidence import verify_statement
from quorate.core.ready import Entry
from quorate.errors import invariant
from quorate.ids import NodeId
from quorate.pbft.messages import DIGEST_BYTES, KIND_CHECKPOINT, Checkpoint, checkpoint_payload

if TYPE_CHECKING:
    from quorate.pbft.replica import PbftReplica


def chain_digest(previous: bytes, entry: Entry) -> bytes:
    """The state digest after committing ``entry`` on top of ``previous``."""
    h = hashlib.blake2b(previous, digest_size=DIGEST_BYTES)
    h.update(entry.index.to_bytes(8, "big"))
    h.update(entry.term.to_bytes(8, "big"))
    h.update(entry.data)
    return h.digest()


def _make_checkpoint(self: PbftReplica, seq: int) -> None:
    payload = checkpoint_payload(self.entry_index, self.state_digest)
    signature = self._sign(KIND_CHECKPOINT, seq, 0, payload)
    cp = Checkpoint(seq, self.entry_index, self.state_digest, int(self._id), signature)
    self._own_checkpoints[seq] = cp
    self._broadcast(cp)
    self._record_checkpoint(cp)


def _on_checkpoint(self: PbftReplica, sender: NodeId, m: Checkpoint) -> None:
    # Checkpoints may be relayed (a stable proof shown to a replica that
    # fell behind): the signature, not the sender, names the author.
    if m.replica not in self._members:
        self._reject(sender, "Checkpoint", "unknown author")
        return
    if m.seq <= 0 or m.seq % self._k or len(m.state_digest) != DIGEST_BYTES or m.entry_index < 0:
        self._reject(sender, "Checkpoint", "malformed checkpoint")
        return
    if m.seq <= self.stable_seq:
        # A peer repeating the checkpoint our proof covers has not seen it
        # become stable (older ones it will learn about from this one).
        if m.seq == self.stable_seq:
            self._help_stale(sender)
        return
    known = self._cp_by_replica.get(m.replica, {}).get(m.seq)
    if known is not None and known.signature == m.signature:
        return
    if not verify_statement(m.statement(), self._verifier):
        self._reject(sender, "Checkpoint", "bad signature")
        return
    if self._observe(m.statement()) or known is not None:
        return
    self._record_checkpoint(m)


def _record_checkpoint(self: PbftReplica, cp: Checkpoint) -> None:
    mine = self._cp_by_replica.setdefault(cp.replica, {})
    mine[cp.seq] = cp
    # Keep a few of each replica's newest checkpoints: enough to see a
    # proof form, bounded against a replica sending one for every K.
    keep = self._window // self._k + 1
    while len(mine) > keep:
        lowest = min(mine)
        old = mine.pop(lowest)
        votes = self._cp_votes.get((lowest, old.payload()))
        if votes is not None:
            votes.pop(old.replica, None)
    votes = self._cp_votes.setdefault((cp.seq, cp.payload()), {})
    votes[cp.replica] = cp
    if len(votes) >= self.quorum and cp.seq > self.stable_seq:
        self._stabilize(tuple(votes[r] for r in sorted(votes)[: self.quorum]))


def _valid_checkpoint_proof(self: PbftReplica, proof: tuple[Checkpoint, ...]) -> bool:
    if len(proof) < self.quorum:
        return False
    first = proof[0]
    if first.seq <= 0 or first.seq % self._k:
        return False
    payload = first.payload()
    seen: set[int] = set()
    for cp in proof:
        if cp.replica in seen or cp.replica not in self._members:
            return False
        if cp.seq != first.seq or cp.payload() != payload:
            return False
        if not verify_statement(cp.statement(), self._verifier):
            return False
        seen.add(cp.replica)
    return True


def _stabilize(self: PbftReplica, proof: tuple[Checkpoint, ...]) -> None:
    """§4.3: the checkpoint at ``proof``'s seq is stable; collect garbage."""
    h = proof[0].seq
    invariant(h > self.stable_seq, "stable checkpoints only move forward")
    self.stable_seq = h
    self._stable_proof = proof
    self._stable_entry_index = proof[0].entry_index
    self._hard_dirty = True
    for table in (self._slots, self._prepared_certs, self._own_checkpoints, self._commit_certs, self._vouches):
        for s in [s for s in table if s <= h]:
            del table[s]
    self._signed = {k: v for k, v in self._signed.items() if k[2] > h}
    if self._macs:
        self._p_claims = {s: c for s, c in self._p_claims.items() if s > h}
        self._q_claims = {s: q for s, q in self._q_claims.items() if s > h}
        self._prune_claimed_batches()
    self._cp_votes = {k: v for k, v in self._cp_votes.items() if k[0] > h}
    for by_seq in self._cp_by_replica.values():
        for s in [s for s in by_seq if s <= h]:
            del by_seq[s]
    self.pool.forget_below(h + 1)
    if self._next_seq <= h:
        self._next_seq = h + 1
    if self.executed_seq < h:
        self._request_state()
    else:
        self._maybe_flush()
