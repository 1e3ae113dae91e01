"""Member states and the precedence of membership updates (SWIM §4.2).

Theory of operation: every member is known as ``(state, incarnation)``. Only a
member itself raises its own incarnation (to refute a suspicion, or to come
back after being declared dead), so a higher incarnation is always newer news.
At one incarnation the states are ordered Alive < Suspect < Dead < Left: bad
news about an incarnation outranks good news about the same incarnation, and
only the member can answer it with a higher one. ``supersedes`` is the whole
table; everything else in the package goes through it.

The paper's rules, and where this differs:
- Alive{i} overrides Alive{j} and Suspect{j} when i > j.
- Suspect{i} overrides Suspect{j} when i > j and Alive{j} when i >= j.
- Dead{i} (the paper's Confirm) overrides Alive and Suspect. The paper says
  "any j"; here only j <= i, because a member may rejoin under the same id
  with a higher incarnation (as memberlist allows) and an old death notice
  must not kill the new life. For the same reason Alive{i} overrides Dead{j}
  and Left{j} when i > j.
- Left{i}, a graceful leave (only the member announces it), overrides
  Alive/Suspect/Dead{j} when i >= j.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from quorate.ids import NodeId


class MemberState(enum.IntEnum):
    """A member's state; the order is the precedence at equal incarnation."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


def supersedes(
    new_state: MemberState,
    new_incarnation: int,
    old_state: MemberState | None,
    old_incarnation: int,
) -> bool:
    """True when the update ``(new_state, new_incarnation)`` replaces what we
    know, ``(old_state, old_incarnation)`` (``old_state`` None: unknown member)."""
    if old_state is None:
        return True
    if new_incarnation != old_incarnation:
        return new_incarnation > old_incarnation
    # Same incarnation: only strictly worse news wins.
    return new_state > old_state


@dataclass(slots=True)
class Member:
    """What this node believes about one member."""

    id: NodeId
    state: MemberState
    incarnation: int
    since: float
    """Local time of the last state change."""

    @property
    def is_up(self) -> bool:
        """Alive or Suspect: still a member (SWIM keeps suspects in the group)."""
        return self.state <= MemberState.SUSPECT


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    """A change of a member's state as seen by this node, at local time ``at``."""

    member: NodeId
    state: MemberState
    incarnation: int
    at: float


@dataclass(frozen=True, slots=True)
class ReachabilityReport:
    """Who this node can reach now and what changed recently (for a protocol
    above that watches for partitions: many members lost at once is a cut)."""

    reachable: frozenset[NodeId]
    """Members believed up (Alive or Suspect), this node included."""
    lost: frozenset[NodeId]
    """Members that went Dead or Left within the window and are still down."""
    regained: frozenset[NodeId]
    """Members that came back up within the window after being Dead."""
    since: float
