"""Raft's roles (§5.1) and the module constants the hot paths test them with.

Theory of operation: a node is a follower, a (pre-)candidate or a leader; a
learner is a follower that does not vote (thesis §4.2.1). ``RaftNode`` swaps
its message-handler table on every role change (etcd's ``r.step =
stepLeader``), so a role's behaviour lives in the handlers of that table.

The enum members are also bound to module constants: on CPython 3.11 a look-up
such as ``Role.LEADER`` goes through the enum metaclass's ``__getattr__`` hook
and costs ~50 ns, ten times a global's ~5 ns, and the hot paths (``step``,
``ready``, ``_send_append``, ``_wake_at``) test roles several times per input.
They are the same objects, so ``is`` still holds.
"""

from __future__ import annotations

import enum


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"
    """A follower that is a non-voting member."""


FOLLOWER = Role.FOLLOWER
PRE_CANDIDATE = Role.PRE_CANDIDATE
CANDIDATE = Role.CANDIDATE
LEADER = Role.LEADER
LEARNER = Role.LEARNER

NEVER = float("-inf")
"""A time before every time: a lease or a vote-refusal window not running."""
