"""A node-level failure detector that wakes quiesced Raft groups.

Theory of operation. A quiesced Raft group (``quorate.raft.quiescence``)
arms no timer: its followers no longer notice a leader that died. One node
hosts thousands of groups, and most of the groups one node follows are led
by a few other nodes, so liveness is watched **per node, not per group**
(CockroachDB's node liveness; here without a liveness range):

- Every ``interval_s`` a node sends one ``NodeAlive`` to each node that
  holds a replica of a quiesced group it leads (one message per node pair,
  whatever the number of groups); nothing when it leads no quiesced group.
- A node watches each node that leads a quiesced group it follows. When it
  has heard no ``NodeAlive`` from that node for ``suspicion_s``, it suspects
  it and calls ``unquiesce(now)`` on every quiesced group that node leads
  here: their election timers run again, and if the leader is really gone a
  follower campaigns; if it is alive, the followers' pre-votes wake it and
  its heartbeats keep them.
- The detector is a sans-IO core (the ``ProtocolCore`` contract) that the
  node host holds as a group of its own (``LIVENESS_GROUP``), so its timer
  and messages go through the same turn as every group's.

**Wake-up bound.** A leader node that crashes sent its last ``NodeAlive``
at most ``interval_s`` before. Its followers' detectors look every
``interval_s``, so each suspects it at most ``suspicion_s + interval_s``
after its last message (plus one network delay); the woken followers
campaign after their randomized election timeout, below twice the election
timeout T, and refuse votes for T after waking (stickiness). So a group
whose leader's node died elects a new leader within about
``suspicion_s + interval_s + 2T`` plus a few round trips (with the defaults
and T = 1 s: under 11 s). An idle cluster pays ``interval_s`` timer events
per node and one message per node pair that shares a quiesced group.

Safety does not depend on the detector: a false suspicion only wakes a
group (what any message may do).
"""

from __future__ import annotations

from typing import Any

from quorate.core.host import MAX_GROUP_ID, HostedGroup, NodeHost
from quorate.core.protocol import ProposeOutcome, Refused
from quorate.core.ready import Ready, Rejection
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.raft.node import RaftNode

__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_SUSPICION_S", "LIVENESS_GROUP", "NodeAlive", "NodeLiveness"]

LIVENESS_GROUP = MAX_GROUP_ID
"""The group id the detector is hosted under (range ids stay far below it)."""
DEFAULT_INTERVAL_S = 3.0
DEFAULT_SUSPICION_S = 6.0
"""A few ``NodeAlive`` intervals: one lost message is no suspicion."""


class NodeAlive(WireMessage, tag="multiraft.NodeAlive", frozen=True):
    """The sending node is up (it leads quiesced groups the receiver follows)."""


class NodeLiveness:
    """The per-node detector (see the module docstring)."""

    __slots__ = (
        "_heard",
        "_host",
        "_id",
        "_msgs",
        "_next_beat",
        "_rejected",
        "interval_s",
        "suspicion_s",
        "suspicions",
        "woken",
    )

    def __init__(
        self,
        node: NodeId,
        host: NodeHost,
        *,
        now: float,
        interval_s: float = DEFAULT_INTERVAL_S,
        suspicion_s: float = DEFAULT_SUSPICION_S,
    ) -> None:
        if not interval_s > 0:
            raise ConfigError(f"interval_s must be > 0 seconds, got {interval_s}")
        if not suspicion_s > interval_s:
            raise ConfigError(f"suspicion_s ({suspicion_s}) must exceed interval_s ({interval_s})")
        self._id = node
        self._host = host
        self.interval_s = interval_s
        self.suspicion_s = suspicion_s
        self._heard: dict[NodeId, float] = {}
        """Watched node -> when it was last heard from (or first watched)."""
        self._next_beat = now + interval_s
        self._msgs: list[tuple[NodeId, Any]] = []
        self._rejected: list[Rejection] = []
        self.suspicions = 0
        """Times a watched node was suspected."""
        self.woken = 0
        """Quiesced groups woken on a suspicion."""

    @property
    def id(self) -> NodeId:
        return self._id

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        if type(message) is not NodeAlive:
            self._rejected.append(Rejection(sender, type(message).__name__, "not a liveness message"))
            return
        if sender in self._heard:
            self._heard[sender] = now

    def tick(self, now: float) -> None:
        if now < self._next_beat:
            return
        self._next_beat = now + self.interval_s
        me = self._id
        followers: set[NodeId] = set()
        watched: dict[NodeId, list[HostedGroup]] = {}
        for group in self._host:
            core = group.core
            if type(core) is not RaftNode and not isinstance(core, RaftNode):
                continue
            if not core.quiesced:
                continue
            if core.is_leader:
                followers.update(core.members)
            elif core.leader_id is not None and core.leader_id != me:
                watched.setdefault(core.leader_id, []).append(group)
        followers.discard(me)
        self._msgs.extend((node, NodeAlive()) for node in sorted(followers))
        heard = self._heard
        for leader in [node for node in heard if node not in watched]:
            del heard[leader]
        for leader in sorted(watched):
            last = heard.get(leader)
            if last is None:
                heard[leader] = now
            elif now - last > self.suspicion_s:
                self.suspicions += 1
                heard[leader] = now  # watch afresh: one suspicion per silence
                for group in watched[leader]:
                    group.core.unquiesce(now)  # type: ignore[attr-defined]
                    self._host.touch(group)
                    self.woken += 1

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        return Refused("the liveness detector takes no proposals")

    def has_ready(self) -> bool:
        return bool(self._msgs or self._rejected)

    def wake_at(self) -> float | None:
        return self._next_beat

    def ready(self) -> Ready:
        ready = Ready(messages=self._msgs, wake_at=self._next_beat, rejected=self._rejected, must_sync=False)
        self._msgs = []
        self._rejected = []
        return ready

    def advance(self, ready: Ready) -> None:
        pass
