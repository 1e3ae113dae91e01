"""State transfer (PBFT §4.3, §5.3 of the OSDI paper): a replica whose
stable checkpoint is ahead of what it executed fetches the missing entries.

Theory of operation. A replica that learns of a stable checkpoint above its
executed sequence number (a proof of q signed checkpoints) asks one of the
proof's signers, chosen with the injected random source, for the entries
from its next index (``FetchState``). The answer (``StateTransfer``) carries
the proof and the entries up to the checkpoint; the receiver checks the
proof, that the entries continue its log without repeating a command it
executed, and that the running digest over them equals the checkpoint's
state digest. Only then does it commit them, jump its executed sequence
number to the checkpoint and go on with the normal case above it. A helper
serves only entries it still retains up to its own stable checkpoint; a
replica that asked the wrong peer asks again at its next retransmission.

The functions taking ``self: PbftReplica`` are ``PbftReplica`` methods,
attached in ``quorate.pbft.replica``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quorate.core.ready import ENTRY_NORMAL
from quorate.ids import NodeId
from quorate.pbft.checkpoints import chain_digest
from quorate.pbft.messages import FetchState, StateTransfer, command_digest

if TYPE_CHECKING:
    from quorate.pbft.replica import PbftReplica


def _request_state(self: PbftReplica) -> None:
    holders = [cp.replica for cp in self._stable_proof if cp.replica != self._id]
    if holders:
        target = NodeId(self._rng.choice(holders))
        self._send(target, FetchState(self.entry_index + 1))


def _on_fetch_state(self: PbftReplica, sender: NodeId, m: FetchState) -> None:
    if not self._stable_proof or self.executed_seq < self.stable_seq:
        return
    last = self._stable_entry_index
    if not self._log_first <= m.from_index <= last + 1:
        self._reject(sender, "FetchState", "requested entries are not retained here")
        return
    lo = m.from_index - self._log_first
    hi = last - self._log_first + 1
    self._send(sender, StateTransfer(self._stable_proof, m.from_index, tuple(self._log[lo:hi])))


def _on_state_transfer(self: PbftReplica, sender: NodeId, m: StateTransfer) -> None:
    if not m.checkpoint_proof or m.checkpoint_proof[0].seq <= self.executed_seq:
        return
    if m.first_index != self.entry_index + 1:
        return
    first = m.checkpoint_proof[0]
    if first.entry_index - self.entry_index != len(m.entries):
        self._reject(sender, "StateTransfer", "entries do not reach the checkpoint")
        return
    if not self._valid_checkpoint_proof(m.checkpoint_proof):
        self._reject(sender, "StateTransfer", "invalid checkpoint proof")
        return
    digest = self.state_digest
    seen: set[bytes] = set()
    for i, entry in enumerate(m.entries):
        d = command_digest(entry.data)
        if entry.index != m.first_index + i or entry.kind != ENTRY_NORMAL or d in self._executed or d in seen:
            self._reject(sender, "StateTransfer", "entries are not a valid history")
            return
        seen.add(d)
        digest = chain_digest(digest, entry)
    if digest != first.state_digest:
        self._reject(sender, "StateTransfer", "entries do not match the checkpoint digest")
        return
    for entry in m.entries:
        d = command_digest(entry.data)
        self._executed.add(d)
        self._drop_pending(d)
        self._commit_entry(entry)
    self.executed_seq = first.seq
    self._hard_dirty = True
    for s in [s for s in self._slots if s <= first.seq]:
        del self._slots[s]
    if first.seq > self.stable_seq:
        self._stabilize(m.checkpoint_proof)
    self._execute_ready()
    self._restart_request_timer()
    self._maybe_flush()
