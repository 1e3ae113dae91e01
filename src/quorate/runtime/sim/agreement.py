"""State-machine safety checked as replicas execute: the same command, the
same result and the same state at every index, on every correct replica.

Theory of operation. Agreement (Raft's state-machine safety, PBFT's and
HotStuff's safety property) says no two correct replicas execute different
commands at one log index. That is necessary but not enough for what clients
see: a replica that executes the right commands on top of the *wrong state*
(one restarted without rebuilding its state machine, say) answers reads
wrongly while every log agrees. So the monitor compares three things per
index, first report wins and every later one must match:

- the command executed there (agreement);
- the encoded result the state machine returned for it (what a client
  would be told; a read of a lost key differs at once);
- every ``DIGEST_EVERY`` indices, a digest of the key-value state after it
  (order-independent over namespaces, keys and values), which catches a
  divergent state even when no command reads it.

Replicas in ``exempt`` (Byzantine ones) are not checked: they may claim
anything. A mismatch raises ``InvariantViolation`` at once, so the run
stops where the divergence happened. The monitor keeps one record per
index (the command and the result, a few dozen bytes each).
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from quorate.core.ready import Entry
from quorate.errors import InvariantViolation
from quorate.ids import NodeId
from quorate.state.kv import KVStore, encode_result


class StateWithDigest(Protocol):
    """A state machine other than the key-value store (the range table)."""

    def state_digest(self) -> bytes: ...


DIGEST_EVERY = 32
"""Indices between two state digests (a digest walks the whole store)."""

__all__ = ["DIGEST_EVERY", "AgreementMonitor", "state_digest"]


def state_digest(kv: KVStore) -> bytes:
    """A digest of every (namespace, key, value) the store holds, in sorted order."""
    h = hashlib.blake2b(digest_size=16)
    for namespace in kv.namespaces():
        items = kv.list_prefix("", namespace, limit=len(kv))
        h.update(namespace.encode() + b"\x00")
        for key, value in items:
            h.update(key.encode() + b"\x00" + value.encode() + b"\x01")
        h.update(b"\x02")
    return h.digest()


class AgreementMonitor:
    """Per index: one command, one result, one state digest (see the module docstring)."""

    __slots__ = ("checked_entries", "committed", "digests", "exempt")

    def __init__(self, exempt: frozenset[NodeId] = frozenset()) -> None:
        self.exempt = exempt
        self.committed: dict[int, tuple[bytes, bytes, NodeId]] = {}
        """Index -> (command, encoded result, first correct replica that executed it)."""
        self.digests: dict[int, tuple[bytes, NodeId]] = {}
        """Index (a multiple of ``DIGEST_EVERY``) -> (state digest after it, first replica)."""
        self.checked_entries = 0

    def record(self, node: NodeId, entry: Entry, result: Any, kv: KVStore | StateWithDigest) -> None:
        """``node`` executed ``entry`` with ``result``, leaving ``kv`` (a
        key-value store, or another state machine that digests itself);
        raise ``InvariantViolation`` on any divergence from earlier reports."""
        if node in self.exempt:
            return
        self.checked_entries += 1
        index = entry.index
        encoded = encode_result(result)
        first = self.committed.get(index)
        if first is None:
            self.committed[index] = (entry.data, encoded, node)
        elif first[0] != entry.data:
            raise InvariantViolation(
                f"agreement violated: correct replicas {first[2]} and {node} executed "
                f"different commands at index {index}"
            )
        elif first[1] != encoded:
            raise InvariantViolation(
                f"state machine diverged: correct replicas {first[2]} and {node} executed the "
                f"same command at index {index} with different results"
            )
        if index % DIGEST_EVERY == 0:
            digest = state_digest(kv) if isinstance(kv, KVStore) else kv.state_digest()
            seen = self.digests.get(index)
            if seen is None:
                self.digests[index] = (digest, node)
            elif seen[0] != digest:
                raise InvariantViolation(
                    f"state machine diverged: correct replicas {seen[1]} and {node} hold "
                    f"different states after index {index}"
                )
