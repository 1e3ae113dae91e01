"""A fixed-primary log-shipping core: the simulator's own reference protocol.

Theory of operation. The lowest-numbered voter is the primary, forever (no
elections, no view changes: this is primary-backup replication, not a
fault-tolerant consensus protocol). It exists so the simulator can be built,
tested and benchmarked against a real ``ProtocolCore`` with a replicated log,
independently of any consensus protocol under development.

- ``propose`` at the primary appends an entry and sends one ``ShipEntries``
  object (shared by every backup, so the network encodes it once) carrying the
  new entry and the commit index.
- A backup appends entries that continue its log, persists them and answers
  ``ShipAck`` with its last index. Entries that arrive ahead of a gap (the
  network reorders) wait in a bounded reorder buffer until the gap fills; a
  gap left by a lost message is filled by the primary's next heartbeat.
- An entry is committed once a majority of voters store it (the primary
  counts itself); committed entries are applied in index order on every node.
- Every ``heartbeat_s`` the primary re-ships to each backup from that backup's
  acknowledged index (at most ``SHIP_BATCH_ENTRIES`` entries): lost messages
  and restarted backups are caught up. Backups arm no timer at all.

Invariants: the primary is the only writer, and it persists before it ships,
so logs never conflict: two nodes holding index ``i`` hold the same entry.
Commit never goes backwards within a run of a core; after a restart the commit
index is re-learned from the primary (it is not durable), and the
state machine is rebuilt from the log.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from quorate.core.binding import (
    Binding,
    ClusterContext,
    CoreBuilder,
    GroupStatus,
    config_from_options,
)
from quorate.core.protocol import Accepted, ProposeOutcome, ProtocolCore, Redirect
from quorate.core.quorum import commit_index
from quorate.core.ready import ENTRY_NORMAL, Entry, Ready, Rejection
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.storage.base import Recovered

SHIP_BATCH_ENTRIES = 64
REORDER_BUFFER_SHIPMENTS = 1024
"""Out-of-order shipments a backup holds; beyond that it waits for a heartbeat."""
DEFAULT_HEARTBEAT_S = 0.05
PRIMARY_TERM = 1
"""There is only one primary, so every entry has the same term."""


class ShipEntries(WireMessage, tag="primary.ShipEntries", frozen=True):
    """Entries following ``prev_index``, and the primary's commit index."""

    prev_index: int
    entries: list[bytes]
    commit: int


class ShipAck(WireMessage, tag="primary.ShipAck", frozen=True):
    """The backup's last stored index."""

    last_index: int


PRIMARY_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (ShipEntries, ShipAck)


class PrimaryBackupNode:
    """A ``ProtocolCore`` (see the module docstring)."""

    def __init__(
        self,
        node_id: NodeId,
        voters: tuple[NodeId, ...],
        *,
        rng: random.Random,
        now: float,
        recovered: Recovered | None = None,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        if node_id not in voters:
            raise ValueError(f"node {node_id} is not among the voters {voters}")
        self._id = node_id
        self.voters = tuple(sorted(voters))
        self.primary = self.voters[0]
        self.heartbeat_s = heartbeat_s
        self._rng = rng  # unused: the protocol makes no random choice
        self.log: list[bytes] = []  # log[i - 1] is the entry at index i
        if recovered is not None:
            self.log = [e.data for e in recovered.entries]
        self.commit = 0
        self.applied = 0
        self.match: dict[NodeId, int] = {v: 0 for v in self.voters if v != node_id}
        self._messages: list[tuple[NodeId, Any]] = []
        self._to_persist: list[Entry] = []
        self._rejected: list[Rejection] = []
        self._early: dict[int, list[bytes]] = {}  # prev_index -> entries ahead of a gap
        self._next_heartbeat = now + heartbeat_s if self.is_primary else None

    @property
    def id(self) -> NodeId:
        return self._id

    @property
    def is_primary(self) -> bool:
        return self._id == self.primary

    def last_index(self) -> int:
        return len(self.log)

    # -- inputs -------------------------------------------------------------
    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        if not self.is_primary:
            return Redirect(self.primary)
        self.log.append(command)
        index = len(self.log)
        self._to_persist.append(Entry(PRIMARY_TERM, index, ENTRY_NORMAL, command))
        ship = ShipEntries(index - 1, [command], self.commit)
        for backup in self.match:
            self._messages.append((backup, ship))
        self._advance_commit()
        return Accepted(index, PRIMARY_TERM)

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        if sender not in self.voters or sender == self._id:
            self._reject(sender, message, "sender is not a peer")
        elif type(message) is ShipEntries:
            self._on_ship(sender, message)
        elif type(message) is ShipAck:
            self._on_ack(sender, message)
        else:
            self._reject(sender, message, "unknown message type")

    def tick(self, now: float) -> None:
        if self._next_heartbeat is None or now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.heartbeat_s
        for backup, acked in self.match.items():
            hi = min(acked + SHIP_BATCH_ENTRIES, len(self.log))
            self._messages.append((backup, ShipEntries(acked, self.log[acked:hi], self.commit)))

    # -- handlers -------------------------------------------------------------
    def _on_ship(self, sender: NodeId, ship: ShipEntries) -> None:
        if sender != self.primary or self.is_primary:
            self._reject(sender, ship, "only the primary ships entries")
            return
        if ship.prev_index > len(self.log):
            if len(self._early) < REORDER_BUFFER_SHIPMENTS:
                self._early[ship.prev_index] = ship.entries
        else:
            self._append_from(ship.prev_index, ship.entries)
            while self._early:
                # Drain buffered shipments the log now reaches (stale ones are dropped).
                last = len(self.log)
                for prev in [p for p in self._early if p <= last]:
                    self._append_from(prev, self._early.pop(prev))
                if len(self.log) == last:
                    break
        before = self.commit
        self.commit = max(self.commit, min(ship.commit, len(self.log)))
        if self._to_persist or self.commit == before:
            self._messages.append((sender, ShipAck(len(self.log))))

    def _append_from(self, prev_index: int, entries: list[bytes]) -> None:
        # Logs never conflict, so entries we already hold are skipped.
        for data in entries[len(self.log) - prev_index :]:
            self.log.append(data)
            self._to_persist.append(Entry(PRIMARY_TERM, len(self.log), ENTRY_NORMAL, data))

    def _on_ack(self, sender: NodeId, ack: ShipAck) -> None:
        if not self.is_primary or ack.last_index > len(self.log) or ack.last_index < 0:
            self._reject(sender, ack, "acknowledgement of entries never shipped")
            return
        if ack.last_index > self.match[sender]:
            self.match[sender] = ack.last_index
            self._advance_commit()

    def _advance_commit(self) -> None:
        acked = [*self.match.values(), len(self.log)]
        self.commit = max(self.commit, commit_index(acked))

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self._rejected.append(Rejection(sender, type(message).__name__, reason))

    # -- Ready ----------------------------------------------------------------
    def has_ready(self) -> bool:
        return bool(self._messages or self._to_persist or self._rejected or self.applied < self.commit)

    def ready(self) -> Ready:
        committed = [
            Entry(PRIMARY_TERM, i, ENTRY_NORMAL, self.log[i - 1]) for i in range(self.applied + 1, self.commit + 1)
        ]
        return Ready(
            messages=self._messages,
            entries=self._to_persist,
            committed=committed,
            wake_at=self._next_heartbeat,
            rejected=self._rejected,
        )

    def advance(self, ready: Ready) -> None:
        if ready.messages is self._messages:
            self._messages = []
        if ready.entries is self._to_persist:
            self._to_persist = []
        if ready.rejected is self._rejected:
            self._rejected = []
        if ready.committed:
            self.applied = ready.committed[-1].index


@dataclass(frozen=True, slots=True)
class PrimaryConfig:
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    """How often the primary re-ships to its backups."""

    def validate(self) -> PrimaryConfig:
        if not self.heartbeat_s > 0:
            raise ConfigError(f"heartbeat_s must be > 0, got {self.heartbeat_s}")
        return self


def _builder(config: PrimaryConfig, cluster: ClusterContext) -> CoreBuilder:
    if cluster.byzantine:
        raise ConfigError("the primary-backup reference protocol tolerates no Byzantine replica")

    def build(node: NodeId, members: tuple[NodeId, ...], rng: random.Random, now: float, recovered: Any) -> ProtocolCore:
        return PrimaryBackupNode(node, members, rng=rng, now=now, recovered=recovered, heartbeat_s=config.heartbeat_s)

    return build


def _leadership(core: ProtocolCore) -> tuple[NodeId | None, int]:
    node: PrimaryBackupNode = core  # type: ignore[assignment]
    return node.primary, PRIMARY_TERM


def _status(core: ProtocolCore) -> GroupStatus:
    node: PrimaryBackupNode = core  # type: ignore[assignment]
    return GroupStatus(
        role="primary" if node.is_primary else "backup",
        term=PRIMARY_TERM,
        leader=node.primary,
        commit_index=node.commit,
        last_index=len(node.log),
    )


BINDING = Binding(
    name="primary",
    message_types=PRIMARY_MESSAGE_TYPES,
    hard_state_type=None,
    snapshot_type=None,
    parse_config=lambda options: config_from_options(PrimaryConfig, options, "primary"),
    builder=_builder,
    leadership=_leadership,
    status=_status,
    tolerated_faults=lambda n: 0,  # the primary is a single point of failure
    simulator_only=True,
)
