"""Online checks of a shard's safety properties, across its members.

Theory of operation: the simulator (and the tests' network) calls
``ShardSafetyMonitor.check(replica, now)`` after every event an honest member
processed; the monitor raises ``InvariantViolation`` the moment:

- **certified agreement** breaks: two members applied different entries
  (different chain digests) at one index. Raft's ``RaftSafetyMonitor``
  checks Raft's own commit index; this checks what the shard's state
  machines actually applied, which in a watched shard is what certificates
  covered;
- **lock discipline** breaks: a key is locked by a transaction that is not
  prepared with a yes vote, or a transaction is both prepared and decided;
- **atomicity** breaks: a member's store recorded a ``Violation`` (it was
  told to commit a transaction it could not apply, or one it voted no on).

Cost: amortised O(newly applied entries) per call, plus O(locks).
"""

from __future__ import annotations

from typing import Any

from quorate.errors import InvariantViolation
from quorate.hrb.shard.replica import ShardReplica
from quorate.ids import NodeId

__all__ = ["ShardSafetyMonitor"]


class ShardSafetyMonitor:
    """Raises ``InvariantViolation`` as soon as a shard safety property breaks."""

    __slots__ = ("_applied", "_cursor", "checks")

    def __init__(self) -> None:
        self._applied: dict[int, tuple[bytes, NodeId]] = {}
        """index -> (digest applied there, first member seen applying it)."""
        self._cursor: dict[tuple[NodeId, int], int] = {}
        """(member, id of its replica object) -> index checked through."""
        self.checks = 0

    def check(self, core: Any, now: float) -> None:
        replica = core
        if not isinstance(replica, ShardReplica):
            return  # a Byzantine member's wrapper: its honest core is not the one speaking
        self.checks += 1
        key = (replica.id, id(replica))
        start = self._cursor.get(key, 0)
        applied = replica.applied_index
        if applied > start:
            raft = replica.raft
            seen = self._applied
            for index in range(start + 1, applied + 1):
                entry = raft.entry_at(index)
                if entry is None:
                    continue
                known = seen.setdefault(index, (entry.digest, replica.id))
                if known[0] != entry.digest:
                    raise InvariantViolation(
                        f"certified agreement: member {replica.id} applied another entry at index "
                        f"{index} than member {known[1]} (t={now:.6f})"
                    )
            self._cursor[key] = applied
        store = replica.store
        for k, txn_id in store.locks.items():
            record = store.prepared.get(txn_id)
            if record is None or not record.vote:
                raise InvariantViolation(
                    f"lock discipline: member {replica.id} holds key {k!r} for transaction "
                    f"{txn_id.hex()}, which is not prepared with a yes vote (t={now:.6f})"
                )
        if store.violations:
            violation = store.violations[0]
            raise InvariantViolation(
                f"atomicity: member {replica.id}, transaction {violation.txn_id.hex()}: "
                f"{violation.reason} (t={now:.6f})"
            )
