"""Raft's data on the wire and on disk (Ongaro & Ousterhout 2014, figure 2).

Theory of operation: every type here is a frozen msgspec struct, so the codec
validates field types when it decodes a peer's bytes and the core can trust
the *shape* of a message (never its content: ``RaftNode.step`` still checks
terms, indices and contiguity and drops what does not add up).

- RPCs are ``WireMessage`` subclasses tagged ``"raft.<Name>"``. Every one
  carries the sender's ``term`` first; the core uses it before anything else
  (§5.1: a higher term demotes the receiver, a lower one is stale).
- ``Heartbeat`` is split from ``AppendEntries`` (as etcd does) so that it never
  needs the log consistency check and can carry a ``round`` number: the leader
  confirms its leadership for ReadIndex and lease reads (thesis §6.4) by
  counting which round a quorum acknowledged.
- ``HardState`` is what must be durable before a node answers a peer (§5.1,
  figure 2 "persistent state": current term, vote, plus the commit index so a
  restart does not re-apply less than it already applied).
- ``Snapshot`` is a state-machine image at ``index``/``term`` together with the
  configuration in force there (thesis §5.1), so a node that installs it knows
  its cluster without the compacted log.
- Configuration entries (``EntryKind.CONFIG``) carry a ``ConfState`` — the whole
  new configuration, not a delta — so a node never needs the entry before it to
  know which configuration an entry sets.
- Optional extensions travel as *subclasses with their own tag*, never as new
  trailing fields: msgspec writes every field of an array-like struct, defaults
  included, so a field added to ``AppendEntries`` would cost bytes on every
  message of every cluster. ``SignedAppendEntries`` (entries with digests, plus
  the leader's signature) and ``SignedAppendEntriesResponse`` are what a node
  with signing hooks (``quorate.raft.hooks``) sends; ``QuiesceHeartbeat`` is the
  last heartbeat of a leader that goes quiet (``quorate.raft.quiescence``);
  ``InstallConfiguredSnapshot`` carries a ``ConfiguredSnapshot``, taken in a
  joint configuration or with explicit quorum sizes
  (``quorate.raft.confchange``). Each is handled wherever its base class is,
  and the bases expose the extra fields (``signature``, the configuration's)
  as empty class defaults so code reads them from either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from quorate.core.ready import ChainedEntry, Entry
from quorate.core.wire import WireMessage
from quorate.ids import NodeId

__all__ = [
    "RAFT_MESSAGE_TYPES",
    "AppendEntries",
    "AppendEntriesResponse",
    "ConfChange",
    "ConfChangeKind",
    "ConfChangeTransition",
    "ConfState",
    "ConfiguredSnapshot",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallConfiguredSnapshot",
    "InstallSnapshot",
    "PreVote",
    "PreVoteResponse",
    "QuiesceHeartbeat",
    "RequestVote",
    "RequestVoteResponse",
    "SignedAppendEntries",
    "SignedAppendEntriesResponse",
    "Snapshot",
    "TimeoutNow",
]


class EntryKind(enum.IntEnum):
    """``Entry.kind`` values used by Raft. Applications apply ``NORMAL`` only."""

    NORMAL = 0
    NOOP = 1
    """The entry a new leader appends at the start of its term (§5.4.2, §8)."""
    CONFIG = 2
    """A ``ConfState`` the cluster switches to as soon as it is appended (thesis §4.1)."""


class HardState(msgspec.Struct, frozen=True, array_like=True):
    """Durable per-node state: current term, vote in that term, commit index."""

    term: int
    vote: int | None
    commit: int


class ConfState(msgspec.Struct, frozen=True, array_like=True):
    """A whole cluster configuration: who votes and who only listens.
    ``context`` is the application's bytes from the ``ConfChange`` (the runtime
    carries member addresses in it); the core stores it and never reads it.

    The fields after ``context`` describe joint consensus and flexible quorums
    (``quorate.raft.confchange``). A configuration that uses neither is
    encoded with the first three fields only, byte for byte as before those
    fields existed (``encode_conf_state``); a shorter array decodes with the
    defaults."""

    voters: tuple[int, ...]
    learners: tuple[int, ...] = ()
    context: bytes = b""
    voters_outgoing: tuple[int, ...] = ()
    """While joint (thesis §4.3): the voters of the outgoing configuration."""
    learners_next: tuple[int, ...] = ()
    """Outgoing voters that become learners when the joint configuration is left."""
    auto_leave: bool = False
    """The leader leaves the joint configuration by itself once it committed."""
    election_quorum: int = 0
    """Q1 of ``voters`` (0: the nodes' ``QuorumRule``)."""
    commit_quorum: int = 0
    """Q2 of ``voters`` (0: the nodes' ``QuorumRule``)."""
    outgoing_election_quorum: int = 0
    outgoing_commit_quorum: int = 0


class PlainConfState(msgspec.Struct, frozen=True, array_like=True):
    """The wire form of a ``ConfState`` without joint or flexible fields."""

    voters: tuple[int, ...]
    learners: tuple[int, ...] = ()
    context: bytes = b""


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    """A state-machine image covering every entry up to ``index`` (of ``term``),
    with the simple configuration in force there. A snapshot taken in a joint
    configuration or with explicit quorum sizes is a ``ConfiguredSnapshot``;
    the class defaults below let code read those fields from either."""

    index: int
    term: int
    voters: tuple[int, ...]
    learners: tuple[int, ...]
    data: bytes
    voters_outgoing: ClassVar[tuple[int, ...]] = ()
    learners_next: ClassVar[tuple[int, ...]] = ()
    auto_leave: ClassVar[bool] = False
    election_quorum: ClassVar[int] = 0
    commit_quorum: ClassVar[int] = 0
    outgoing_election_quorum: ClassVar[int] = 0
    outgoing_commit_quorum: ClassVar[int] = 0


class ConfiguredSnapshot(Snapshot, frozen=True, array_like=True):
    """A ``Snapshot`` whose configuration is joint or has explicit quorum
    sizes (the fields as in ``ConfState``); sent in ``InstallConfiguredSnapshot``."""

    voters_outgoing: tuple[int, ...] = ()  # type: ignore[misc]  # fields here, class defaults on the base
    learners_next: tuple[int, ...] = ()  # type: ignore[misc]
    auto_leave: bool = False  # type: ignore[misc]
    election_quorum: int = 0  # type: ignore[misc]
    commit_quorum: int = 0  # type: ignore[misc]
    outgoing_election_quorum: int = 0  # type: ignore[misc]
    outgoing_commit_quorum: int = 0  # type: ignore[misc]


class ConfChangeKind(enum.Enum):
    """One membership change (thesis §4.1, §4.2.1); ``ADD_LEARNER`` on a voter
    demotes it (only in ``propose_conf_change_v2``)."""

    ADD_VOTER = "add_voter"
    REMOVE_NODE = "remove_node"
    """Remove a voter or a learner."""
    ADD_LEARNER = "add_learner"
    PROMOTE_LEARNER = "promote_learner"


class ConfChangeTransition(enum.Enum):
    """How a change of several voters (``RaftNode.propose_conf_change_v2``)
    moves between configurations, after etcd's ``ConfChangeTransition``."""

    AUTO = "auto"
    """One step when that is safe (at most one voter changes, quorums still
    intersect), else through a joint configuration left automatically."""
    JOINT_IMPLICIT = "joint"
    """Always through a joint configuration, left automatically by the leader."""
    JOINT_EXPLICIT = "joint_explicit"
    """Through a joint configuration that stays until a change with no
    changes (``propose_conf_change_v2([])``) leaves it."""


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A membership change a client asks the leader for. ``context`` is
    copied, unread, into the configuration entry (etcd's ``ConfChange.Context``)
    so every node sees it when the entry reaches its log."""

    kind: ConfChangeKind
    node: NodeId
    context: bytes = b""


# ----------------------------------------------------------------- elections


class RequestVote(WireMessage, tag="raft.RequestVote", frozen=True):
    """A candidate asks for a vote in ``term`` (§5.2). ``transfer`` marks an
    election started by ``TimeoutNow``; voters then waive leader stickiness."""

    term: int
    last_log_index: int
    last_log_term: int
    transfer: bool = False


class RequestVoteResponse(WireMessage, tag="raft.RequestVoteResponse", frozen=True):
    term: int
    granted: bool


class PreVote(WireMessage, tag="raft.PreVote", frozen=True):
    """Would you vote for me in ``term``? Changes no state at the receiver (thesis §9.6)."""

    term: int
    last_log_index: int
    last_log_term: int


class PreVoteResponse(WireMessage, tag="raft.PreVoteResponse", frozen=True):
    term: int
    granted: bool


class TimeoutNow(WireMessage, tag="raft.TimeoutNow", frozen=True):
    """The leader hands over: start an election at once (thesis §3.10)."""

    term: int


# -------------------------------------------------------------- replication


class AppendEntries(WireMessage, tag="raft.AppendEntries", frozen=True):
    """Entries following ``prev_log_index``/``prev_log_term`` (§5.3)."""

    term: int
    prev_log_index: int
    prev_log_term: int
    entries: list[Entry]
    leader_commit: int
    signature: ClassVar[bytes] = b""


class SignedAppendEntries(AppendEntries, tag="raft.SignedAppendEntries", frozen=True):
    """``AppendEntries`` signed by the leader, its entries with their digests
    (``ChainedEntry``), for a watched Raft (``quorate.raft.hooks``). What the
    signature covers is the hooks' choice; the core only carries it."""

    entries: list[ChainedEntry]  # type: ignore[assignment]  # entries with digests
    signature: bytes = b""  # type: ignore[misc]  # a field here, a class default on the base


class AppendEntriesResponse(WireMessage, tag="raft.AppendEntriesResponse", frozen=True):
    """``success``: the follower's log matches the leader's through ``index``.
    Otherwise ``index`` echoes the rejected ``prev_log_index`` and the hint
    (``hint_index``, ``hint_term``) is the follower's last entry that can still
    match: the largest index <= the probe whose term <= the probed term. The
    leader skips a whole conflicting term per round trip (§5.3, last paragraph)."""

    term: int
    index: int
    success: bool
    hint_index: int = 0
    hint_term: int = 0
    signature: ClassVar[bytes] = b""


class SignedAppendEntriesResponse(
    AppendEntriesResponse, tag="raft.SignedAppendEntriesResponse", frozen=True
):
    """``AppendEntriesResponse`` signed by the follower (an acknowledgement a
    leader can show to others, e.g. in a commit certificate)."""

    signature: bytes = b""  # type: ignore[misc]  # a field here, a class default on the base


class Heartbeat(WireMessage, tag="raft.Heartbeat", frozen=True):
    """Leader liveness plus ``leader_commit`` (never above what the follower
    is known to hold) and the leader's heartbeat ``round`` number."""

    term: int
    leader_commit: int
    round: int


class QuiesceHeartbeat(Heartbeat, tag="raft.QuiesceHeartbeat", frozen=True):
    """The leader's last heartbeat before it goes quiet: every follower is
    caught up and nothing is pending. A follower whose log ends at
    ``leader_commit`` stops its election timer until the leader speaks again
    (``quorate.raft.quiescence``). Answered like any heartbeat."""


class HeartbeatResponse(WireMessage, tag="raft.HeartbeatResponse", frozen=True):
    term: int
    round: int


class InstallSnapshot(WireMessage, tag="raft.InstallSnapshot", frozen=True):
    """The whole snapshot in one message (§7)."""

    term: int
    snapshot: Snapshot


class InstallConfiguredSnapshot(InstallSnapshot, tag="raft.InstallConfiguredSnapshot", frozen=True):
    """``InstallSnapshot`` of a ``ConfiguredSnapshot`` (joint configuration or
    explicit quorum sizes); handled wherever ``InstallSnapshot`` is."""

    snapshot: ConfiguredSnapshot


RAFT_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (
    RequestVote,
    RequestVoteResponse,
    PreVote,
    PreVoteResponse,
    TimeoutNow,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
    QuiesceHeartbeat,
    InstallConfiguredSnapshot,
)
"""Every Raft wire message, for ``quorate.codec.WireCodec``."""
