"""A small fixed-leader replication core for testing the asyncio runtime
without depending on any real protocol.

Node ``leader`` orders every command: it appends the entry, sends ``Append``
(entry + its commit index) to each follower, and commits an index once a
majority (itself included) persisted it. Followers append in order, persist,
acknowledge, and apply up to the leader's commit. The leader resends
unacknowledged entries on each heartbeat, so a dropped connection only delays
replication. No elections: this exercises the runtime, not consensus.
"""

from __future__ import annotations

from typing import Any

import msgspec

from quorate.core import Accepted, Entry, ProposeOutcome, Ready, Redirect, Rejection, commit_index
from quorate.core.binding import Binding, GroupStatus
from quorate.core.wire import WireMessage
from quorate.ids import NodeId
from quorate.runtime.aio import ProtocolBinding
from quorate.storage import Recovered

TOY_HEARTBEAT_S = 0.05
TOY_RESEND_MAX_ENTRIES = 256
TOY_LEADER = NodeId(1)


class Append(WireMessage, tag="toy.Append", frozen=True):
    entries: list[Entry]
    commit: int


class Ack(WireMessage, tag="toy.Ack", frozen=True):
    index: int


class ToyState(msgspec.Struct, frozen=True, array_like=True):
    commit: int


TOY_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (Append, Ack)


class ToyCore:
    def __init__(
        self,
        node_id: NodeId,
        voters: tuple[NodeId, ...],
        now: float,
        recovered: Recovered | None,
        leader: NodeId = TOY_LEADER,
    ) -> None:
        self._id = node_id
        self.voters = voters
        self.leader = leader
        self.log: list[Entry] = list(recovered.entries) if recovered else []
        self.commit = recovered.hard_state.commit if recovered and recovered.hard_state else 0
        self.applied = 0  # the state machine is rebuilt from the log after a restart
        self.match: dict[NodeId, int] = {v: 0 for v in voters}
        self.match[node_id] = len(self.log)
        self.next_heartbeat = now + TOY_HEARTBEAT_S
        self._ready = Ready()
        self._dirty_state = False

    @property
    def id(self) -> NodeId:
        return self._id

    @property
    def is_leader(self) -> bool:
        return self._id == self.leader

    def _followers(self) -> list[NodeId]:
        return [v for v in self.voters if v != self._id]

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        if not self.is_leader:
            return Redirect(self.leader)
        entry = Entry(1, len(self.log) + 1, 0, command)
        self.log.append(entry)
        self._ready.entries.append(entry)
        return Accepted(entry.index, 1)

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        if sender not in self.voters:
            self._ready.rejected.append(Rejection(sender, type(message).__name__, "unknown sender"))
            return
        if isinstance(message, Ack) and self.is_leader:
            self.match[sender] = max(self.match[sender], min(message.index, len(self.log)))
            self._advance_commit()
        elif isinstance(message, Append) and sender == self.leader:
            for entry in message.entries:
                if entry.index == len(self.log) + 1:
                    self.log.append(entry)
                    self._ready.entries.append(entry)
            self._ready.messages.append((sender, Ack(len(self.log))))
            self._set_commit(min(message.commit, len(self.log)))
        else:
            self._ready.rejected.append(Rejection(sender, type(message).__name__, "unexpected"))

    def tick(self, now: float) -> None:
        if now < self.next_heartbeat:
            return
        self.next_heartbeat = now + TOY_HEARTBEAT_S
        if self.is_leader:
            for follower in self._followers():
                lo = self.match[follower]
                batch = self.log[lo : lo + TOY_RESEND_MAX_ENTRIES]
                self._ready.messages.append((follower, Append(batch, self.commit)))

    def _advance_commit(self) -> None:
        self._set_commit(commit_index(self.match))

    def _set_commit(self, commit: int) -> None:
        if commit > self.commit:
            self.commit = commit
            self._dirty_state = True

    def has_ready(self) -> bool:
        r = self._ready
        return bool(
            r.entries or r.messages or r.rejected or self._dirty_state or self.applied < self.commit
        )

    def ready(self) -> Ready:
        ready, self._ready = self._ready, Ready()
        if ready.entries and self.is_leader:
            # The leader counts its own copy once it is persisted (this Ready).
            self.match[self._id] = len(self.log)
            for follower in self._followers():
                ready.messages.append((follower, Append(list(ready.entries), self.commit)))
            self._advance_commit()
        if self._dirty_state:
            ready.hard_state = ToyState(self.commit)
            self._dirty_state = False
        ready.committed = self.log[self.applied : self.commit]
        ready.wake_at = self.next_heartbeat
        return ready

    def advance(self, ready: Ready) -> None:
        if ready.committed:
            self.applied = ready.committed[-1].index


def toy_binding(leader: NodeId = TOY_LEADER) -> ProtocolBinding:
    def builder(config, cluster):  # type: ignore[no-untyped-def]
        def build(node_id, voters, rng, now, recovered):  # type: ignore[no-untyped-def]
            return ToyCore(node_id, voters, now, recovered, leader=leader)

        return build

    def leadership(core):  # type: ignore[no-untyped-def]
        return core.leader, 1

    def status(core):  # type: ignore[no-untyped-def]
        return GroupStatus(role="leader" if core.is_leader else "follower", term=1, leader=core.leader,
                           commit_index=core.commit, last_index=len(core.log), voters=tuple(core.voters))

    return ProtocolBinding(
        Binding(
            name="toy",
            message_types=TOY_MESSAGE_TYPES,
            hard_state_type=ToyState,
            snapshot_type=None,
            parse_config=lambda options: dict(options),
            builder=builder,
            leadership=leadership,
            status=status,
        )
    )
