"""``RaftNode``: Raft as a sans-IO state machine (Ongaro & Ousterhout 2014; thesis §§3–6, 9.6).

Theory of operation
-------------------
The node only changes memory and queues work; the runtime collects the work with
``ready()`` and acknowledges it with ``advance()`` (``quorate.core.ready``). Inputs:

- ``step(sender, message, now)``: a peer's RPC. Terms are handled first, for every
  role (§5.1): a higher term demotes us to follower (except for pre-votes, which
  change nothing, thesis §9.6); a lower term is stale and dropped (a stale leader
  is told our term so it steps down). Then the *current role's* step function
  (``self._step``, swapped on every role change, as etcd does) handles the rest.
- ``tick(now)``: deadlines. Followers and candidates campaign when their
  randomized election deadline passes (uniform in [T, 2T), drawn from the injected
  ``random.Random``); leaders send heartbeats, run check-quorum and abort stuck
  leadership transfers.
- ``propose`` / ``propose_conf_change`` / ``read_index`` / ``transfer_leadership`` /
  ``compact``: the client and the runtime's requests.

Safety rules kept here (figure 2 and the sections named):

- Election safety (§5.2): one vote per term, persisted (``HardState``) before the
  vote leaves (the driver persists before it sends).
- Election restriction (§5.4.1): votes only for logs at least as up to date.
- Commitment (§5.4.2): the leader counts replicas only for entries of its own
  term; older entries commit indirectly. Each term starts with a no-op entry so
  a new leader commits (and learns the commit index) promptly (§8).
- Log matching (§5.3): AppendEntries carries (prev index, prev term); a follower
  truncates only from the first entry that *conflicts* — an AppendEntries that
  overlaps entries it already has, with the same terms, truncates nothing (a
  delayed, reordered message must not erase newer entries).
- Fast backtracking: a rejecting follower hints the last index that may still
  match (largest index <= the probe whose term <= the probed term), so the leader
  skips a whole divergent term per round trip.
- Replication flow (``progress``): probe one message at a time until the logs
  match, then pipeline batches (``max_batch_entries`` / ``max_batch_bytes``) with
  at most ``max_inflight`` unacknowledged per follower; proposals made within one
  input are batched because broadcasting happens once, in ``ready()``.
- Pre-vote (thesis §9.6) and check-quorum (§6.2): a partitioned node cannot bump
  terms and disrupt the cluster; a leader that has not heard from a quorum within
  an election timeout steps down. With check-quorum on, a node that heard from a
  leader less than T ago ignores (pre-)vote requests (leader stickiness), except
  for elections a leader started on purpose with ``TimeoutNow``. A node restarted
  from disk also ignores votes for its first T, since it may have heard from a
  leader just before crashing.
- Snapshots (§7): ``compact`` drops the log prefix behind a state-machine image;
  a follower whose next entry is gone gets one ``InstallSnapshot`` and reports
  it in ``Ready.snapshot`` so its runtime restores the state machine.
- Leadership transfer (thesis §3.10): catch the target up, send ``TimeoutNow``;
  proposals are refused meanwhile; the transfer aborts after T.
- Membership (thesis §4.1): **single-server changes**, one at a time. A
  configuration takes effect when its entry is appended (and reverts if the entry
  is truncated); the next change waits until it commits. Learners receive the
  log but neither vote nor count for commitment; they can be promoted. A leader
  that removed itself keeps replicating without counting itself and steps down
  once the change commits (thesis §4.2.2).

Linearizable reads (thesis §6.4)
--------------------------------
ReadIndex: the leader records its commit index, confirms it is still leader by a
heartbeat round acknowledged by a quorum, then reports ``ReadState(index,
context)``; the runtime serves the read once it applied ``index``. A new leader
first commits its no-op (until then its commit index may be stale). Reads that
arrive within one input share one heartbeat round, sent from ``ready()``.

Lease reads (``read_mode="lease"``): a follower that receives a heartbeat refuses
to vote for anyone else for T on *its own* clock (stickiness). If clock rates
differ by at most a factor ρ (``max_clock_drift``), T follower-seconds last at
least T(1 - ρ) leader-seconds. The heartbeat arrived after the leader sent it at
leader time s, so every follower that acknowledged the round stays loyal until
at least s + T(1 - ρ) by the leader's clock; they form a quorum, any new leader
needs a vote from one of them, so no other leader exists before then and the
leader's commit index is current. The lease is therefore counted from the time
the leader *sent* the round a quorum acknowledged and lasts
``T * (1 - ρ) - lease_margin_s`` (``RaftConfig.lease_duration_s``). Two things
waive stickiness and so end the lease: a ``TimeoutNow`` (once a transfer starts
the leader serves no lease reads for the rest of its term) and a restart (handled
by the restart rule above). Single-server membership changes keep every old and
new majority overlapping, so a change does not break the argument.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec

from quorate.core.protocol import Accepted, ProposeOutcome, Redirect, Refused
from quorate.core.ready import Entry, ReadState, Ready, Rejection
from quorate.errors import LocalProtocolError
from quorate.ids import NodeId
from quorate.raft.config import RaftConfig
from quorate.raft.log import RaftLog
from quorate.raft.messages import (
    RAFT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    ConfChange,
    ConfChangeKind,
    ConfState,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    PreVote,
    PreVoteResponse,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    TimeoutNow,
)
from quorate.raft.progress import Progress, ProgressState

ENTRY_OVERHEAD_BYTES = 16
"""Bytes an entry costs on the wire besides its data (term, index, kind, framing),
counted against ``max_batch_bytes``."""
MAX_TRACKED_HEARTBEAT_ROUNDS = 64
"""Send times of unacknowledged heartbeat rounds kept for the lease; older rounds
are forgotten (they would only yield leases that already expired)."""
NEVER = float("-inf")

_KNOWN_KINDS = frozenset(int(k) for k in EntryKind)
_ENTRY_KINDS_WITHOUT_DATA_RULES = frozenset((int(EntryKind.NORMAL), int(EntryKind.NOOP)))
"""Entry kinds whose data the core never parses (configuration entries are decoded)."""
_RAFT_TYPES = frozenset(RAFT_MESSAGE_TYPES)
_LEADER_TRAFFIC = (AppendEntries, Heartbeat, InstallSnapshot)
_conf_encoder = msgspec.msgpack.Encoder()
_conf_decoder = msgspec.msgpack.Decoder(ConfState)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"
    """A follower that is a non-voting member."""


# Enum members as module constants. On CPython 3.11 a look-up such as
# ``Role.LEADER`` goes through the enum metaclass's ``__getattr__`` hook and
# costs ~50 ns, ten times a global's ~5 ns, and the hot paths (``step``,
# ``ready``, ``_send_append``, ``_wake_at``) test roles and replication states
# several times per input. These are the same objects, so ``is`` still holds.
_FOLLOWER = Role.FOLLOWER
_PRE_CANDIDATE = Role.PRE_CANDIDATE
_CANDIDATE = Role.CANDIDATE
_LEADER = Role.LEADER
_LEARNER = Role.LEARNER
_PROBE = ProgressState.PROBE
_REPLICATE = ProgressState.REPLICATE
_SNAPSHOT = ProgressState.SNAPSHOT
_NORMAL = EntryKind.NORMAL
_NOOP = EntryKind.NOOP
_CONFIG = EntryKind.CONFIG


def encode_conf_state(
    voters: Iterable[NodeId], learners: Iterable[NodeId] = (), context: bytes = b""
) -> bytes:
    """The data of a ``EntryKind.CONFIG`` entry."""
    return _conf_encoder.encode(
        ConfState(tuple(sorted(voters)), tuple(sorted(learners)), bytes(context))
    )


def decode_conf_state(data: bytes) -> ConfState:
    """Parse a configuration entry; ``msgspec.DecodeError``/``ValidationError`` if malformed."""
    return _conf_decoder.decode(data)


class RecoveredState(Protocol):
    """What a node finds on disk after a restart (``quorate.storage.Recovered``
    has this shape): a ``HardState``, a ``Snapshot`` and the entries after it."""

    hard_state: Any
    snapshot: Any
    entries: list[Entry]


Handler = Callable[["RaftNode", NodeId, Any, float], None]


class RaftNode:
    """One Raft replica. See the module docstring for the theory of operation."""

    __slots__ = (
        "_above_commit",
        "_acked_round",
        "_append_pending",
        "_applied",
        "_check_quorum_deadline",
        "_config",
        "_confs",
        "_election_deadline",
        "_heartbeat_deadline",
        "_heartbeat_round",
        "_id",
        "_last_hard",
        "_leader",
        "_learners",
        "_lease_expiry",
        "_lease_forfeited",
        "_log",
        "_msgs",
        "_now",
        "_pending_conf_index",
        "_progress",
        "_randomized_timeout_s",
        "_read_round_needed",
        "_read_round_sent",
        "_reads",
        "_reads_awaiting_commit",
        "_reads_awaiting_round",
        "_rejected",
        "_rng",
        "_role",
        "_round_acks",
        "_round_sent_at",
        "_snapshot",
        "_snapshot_to_emit",
        "_step",
        "_term",
        "_transfer_deadline",
        "_transfer_target",
        "_vote",
        "_vote_ignore_until",
        "_voters",
        "_votes",
    )

    def __init__(
        self,
        id: NodeId,
        voters: Iterable[NodeId],
        *,
        config: RaftConfig,
        rng: random.Random,
        now: float,
        learners: Iterable[NodeId] = (),
        recovered: RecoveredState | None = None,
    ) -> None:
        self._config = config.validate()
        self._id = id
        self._rng = rng
        self._now = now
        self._term = 0
        self._vote: NodeId | None = None
        self._leader: NodeId | None = None
        self._msgs: list[tuple[NodeId, Any]] = []
        self._reads: list[ReadState] = []
        self._rejected: list[Rejection] = []
        self._snapshot: Snapshot | None = None
        self._snapshot_to_emit: Snapshot | None = None
        self._progress: dict[NodeId, Progress] = {}
        self._votes: dict[NodeId, bool] = {}
        self._transfer_target: NodeId | None = None
        self._transfer_deadline = 0.0
        self._heartbeat_deadline = 0.0
        self._check_quorum_deadline = 0.0
        self._election_deadline = 0.0
        self._randomized_timeout_s = config.election_timeout_s
        self._vote_ignore_until = NEVER
        self._heartbeat_round = 0
        self._acked_round = 0
        self._round_sent_at: dict[int, float] = {}
        self._round_acks: dict[int, int] = {}
        self._above_commit = 0
        self._lease_expiry = NEVER
        self._lease_forfeited = False
        self._reads_awaiting_commit: list[bytes] = []
        self._reads_awaiting_round: list[tuple[int, int, bytes]] = []
        self._read_round_needed = False
        self._read_round_sent = 0
        self._append_pending = False
        self._pending_conf_index = 0
        # (index, voters, learners): the configuration each config entry set;
        # the first element is the base (initial or snapshot) configuration.
        self._confs: list[tuple[int, frozenset[NodeId], frozenset[NodeId]]] = []
        voters_set = frozenset(voters)
        if config.join:
            # Not a member until a configuration entry from the leader says so.
            voters_set -= {id}
        learners_set = frozenset(learners)
        if voters_set & learners_set:
            raise LocalProtocolError(
                f"nodes {sorted(voters_set & learners_set)} are both voters and learners"
            )
        self._log = RaftLog()
        hard = HardState(0, None, 0)
        if recovered is None:
            self._confs.append((0, voters_set, learners_set))
        else:
            hard = self._recover(recovered, voters_set, learners_set, now)
        self._last_hard = hard
        self._applied = self._log.snapshot_index
        _, self._voters, self._learners = self._confs[-1]
        self._role = _FOLLOWER
        self._step: Handler = _FOLLOWER_STEP
        self._become_follower(self._term, None, now)

    def _recover(
        self,
        recovered: RecoveredState,
        voters: frozenset[NodeId],
        learners: frozenset[NodeId],
        now: float,
    ) -> HardState:
        """Rebuild durable state after a restart; volatile state starts afresh."""
        snap = recovered.snapshot
        if snap is not None:
            if not isinstance(snap, Snapshot):
                raise LocalProtocolError(
                    f"recovered snapshot is a {type(snap).__name__}, not a raft.Snapshot"
                )
            self._log = RaftLog(snap.index, snap.term)
            self._snapshot = snap
            self._confs.append(
                (
                    snap.index,
                    frozenset(map(NodeId, snap.voters)),
                    frozenset(map(NodeId, snap.learners)),
                )
            )
        else:
            self._confs.append((0, voters, learners))
        log = self._log
        expected = log.snapshot_index + 1
        for entry in recovered.entries:
            if entry.index < expected:
                continue
            if entry.index != expected:
                raise LocalProtocolError(
                    f"recovered log has a gap: expected index {expected}, found {entry.index}"
                )
            log.append(entry)
            if entry.kind == _CONFIG:
                self._record_conf(entry)
            expected += 1
        log.stable_from = log.last_index() + 1
        hard = recovered.hard_state
        if hard is None:
            hard = HardState(0, None, 0)
        if not isinstance(hard, HardState):
            raise LocalProtocolError(
                f"recovered hard state is a {type(hard).__name__}, not a raft.HardState"
            )
        self._term = hard.term
        self._vote = None if hard.vote is None else NodeId(hard.vote)
        log.committed = max(min(hard.commit, log.last_index()), log.snapshot_index)
        if self._config.check_quorum and hard.term > 0:
            # We may have acknowledged a leader just before the crash: stay loyal
            # for one election timeout, as if we had just heard from it.
            self._vote_ignore_until = now + self._config.election_timeout_s
        return hard

    # ================================================================ properties
    @property
    def id(self) -> NodeId:
        return self._id

    @property
    def config(self) -> RaftConfig:
        return self._config

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def is_leader(self) -> bool:
        return self._role is _LEADER

    @property
    def snapshot(self) -> Snapshot | None:
        """The latest snapshot (taken by ``compact`` or installed from a leader)."""
        return self._snapshot

    @property
    def vote(self) -> NodeId | None:
        return self._vote

    @property
    def leader_id(self) -> NodeId | None:
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._log.committed

    @property
    def applied_index(self) -> int:
        """Highest index the runtime acknowledged applying (via ``advance``)."""
        return self._applied

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    @property
    def first_index(self) -> int:
        """Lowest index still in the in-memory log (snapshot index + 1)."""
        return self._log.snapshot_index + 1

    @property
    def snapshot_index(self) -> int:
        return self._log.snapshot_index

    @property
    def voters(self) -> frozenset[NodeId]:
        return self._voters

    @property
    def learners(self) -> frozenset[NodeId]:
        return self._learners

    @property
    def log_rewrites(self) -> int:
        """How many times the log was truncated or replaced by a snapshot."""
        return self._log.rewrites

    @property
    def last_rewrite_index(self) -> int:
        """First index replaced by the latest truncation or snapshot restore."""
        return self._log.last_rewrite_index

    @property
    def transfer_target(self) -> NodeId | None:
        return self._transfer_target

    def entry_at(self, index: int) -> Entry | None:
        """The entry at ``index`` if it is in the in-memory log."""
        return self._log.entry(index)

    def term_at(self, index: int) -> int | None:
        """Term at ``index`` (the snapshot's term at the snapshot index), else ``None``."""
        return self._log.term(index)

    def progress(self, peer: NodeId) -> Progress | None:
        """The leader's replication state for ``peer`` (``None`` if not leader)."""
        return self._progress.get(peer)

    def lease_valid(self, now: float) -> bool:
        """True when a lease read may be answered without a heartbeat round."""
        return (
            self._role is _LEADER
            and not self._lease_forfeited
            and now < self._lease_expiry
            and self._committed_in_term()
        )

    # ================================================================ inputs
    def step(self, sender: NodeId, message: Any, now: float) -> None:
        """Handle a peer's message; bad input is dropped into ``Ready.rejected``."""
        self._now = now
        cls = type(message)
        if cls not in _RAFT_TYPES:
            self._reject(sender, message, "not a Raft message")
            return
        if sender == self._id:
            self._reject(sender, message, "message claims to come from this node")
            return
        term: int = message.term
        if term < 0:
            self._reject(sender, message, f"negative term {term}")
            return
        if term > self._term:
            if cls is RequestVote or cls is PreVote:
                forced = cls is RequestVote and message.transfer
                if not forced and self._in_leader_lease(now):
                    return  # leader stickiness: a live leader exists
            if cls is PreVote or (cls is PreVoteResponse and message.granted):
                pass  # pre-votes never change our term (thesis §9.6)
            elif cls in _LEADER_TRAFFIC:
                self._become_follower(term, sender, now)
            elif self._role is _FOLLOWER or self._role is _LEARNER:
                # Figure 2: only a leader's messages or a granted vote reset the
                # election timer. A term bump alone must not, or a node that
                # keeps campaigning (e.g. one removed without knowing it) would
                # hold every follower's timer back forever.
                self._term = term
                self._vote = None
                self._leader = None
            else:
                self._become_follower(term, None, now)
        elif term < self._term:
            if cls is AppendEntries or cls is Heartbeat:
                # A stale leader (e.g. back from a partition) learns the new term
                # and steps down; without this, pre-vote + check-quorum could
                # leave it stuck.
                self._send(sender, AppendEntriesResponse(self._term, 0, False))
            elif cls is PreVote:
                self._send(sender, PreVoteResponse(self._term, False))
            return
        if cls is RequestVote or cls is PreVote:
            self._handle_vote_request(sender, message, now)
            return
        self._step(self, sender, message, now)

    def tick(self, now: float) -> None:
        """Fire due deadlines (election, heartbeat, check-quorum, transfer abort)."""
        self._now = now
        if self._role is _LEADER:
            self._tick_leader(now)
        elif now >= self._election_deadline and self._promotable():
            self._campaign(now, pre_vote=self._config.pre_vote, transfer=False)

    def campaign(self, now: float) -> None:
        """Start an election at once (tests and operator tooling). Honours pre-vote."""
        self._now = now
        if self._role is not _LEADER and self._promotable():
            self._campaign(now, pre_vote=self._config.pre_vote, transfer=False)

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        """Append a client command (leader only)."""
        self._now = now
        refusal = self._refuse_proposal()
        if refusal is not None:
            return refusal
        if len(command) > self._config.max_command_bytes:
            return Refused(
                f"command of {len(command)} bytes exceeds max_command_bytes "
                f"({self._config.max_command_bytes})"
            )
        entry = self._append_local(_NORMAL, bytes(command))
        return Accepted(entry.index, entry.term)

    def propose_conf_change(self, change: ConfChange, now: float) -> ProposeOutcome:
        """Single-server membership change (thesis §4.1). One at a time."""
        self._now = now
        refusal = self._refuse_proposal()
        if refusal is not None:
            return refusal
        if not self._committed_in_term():
            return Refused("the leader has not committed an entry of its term yet; retry shortly")
        if self._pending_conf_index > self._log.committed:
            return Refused(
                "a configuration change is still being committed; retry after it commits"
            )
        voters = set(self._voters)
        learners = set(self._learners)
        node = change.node
        kind = change.kind
        if kind is ConfChangeKind.ADD_VOTER:
            if node in voters:
                return Refused(f"node {node} is already a voter")
            learners.discard(node)
            voters.add(node)
        elif kind is ConfChangeKind.PROMOTE_LEARNER:
            if node not in learners:
                return Refused(f"node {node} is not a learner")
            learners.discard(node)
            voters.add(node)
        elif kind is ConfChangeKind.ADD_LEARNER:
            if node in voters or node in learners:
                return Refused(f"node {node} is already a member")
            learners.add(node)
        elif kind is ConfChangeKind.REMOVE_NODE:
            if node not in voters and node not in learners:
                return Refused(f"node {node} is not a member")
            if voters == {node}:
                return Refused("cannot remove the last voter")
            voters.discard(node)
            learners.discard(node)
        else:  # pragma: no cover - the enum is closed
            return Refused(f"unknown change {kind!r}")
        entry = self._append_local(
            _CONFIG, encode_conf_state(voters, learners, change.context)
        )
        self._pending_conf_index = entry.index
        return Accepted(entry.index, entry.term)

    def read_index(self, context: bytes, now: float) -> ProposeOutcome:
        """Start a linearizable read (thesis §6.4). The answer comes later as a
        ``ReadState(index, context)`` in ``Ready.reads``; ``Accepted.index`` is
        the commit index when the read arrived (a lower bound of the answer)."""
        self._now = now
        refusal = self._refuse_proposal()
        if refusal is not None:
            return refusal
        ctx = bytes(context)
        commit = self._log.committed
        if not self._committed_in_term():
            self._reads_awaiting_commit.append(ctx)
        elif self._sole_voter() or (self._config.read_mode == "lease" and self.lease_valid(now)):
            # Nobody else can lead: a sole voter, or a quorum is bound by our lease.
            self._reads.append(ReadState(commit, ctx))
        else:
            self._reads_awaiting_round.append((self._heartbeat_round + 1, commit, ctx))
            self._read_round_needed = True
        return Accepted(commit, self._term)

    def transfer_leadership(self, target: NodeId, now: float) -> ProposeOutcome:
        """Hand leadership to ``target`` (thesis §3.10)."""
        self._now = now
        if self._role is not _LEADER:
            return Redirect(self._leader)
        if target == self._id:
            return Refused("this node is already the leader")
        if target not in self._voters:
            return Refused(f"node {target} is not a voter")
        if self._transfer_target == target:
            return Accepted(self._log.last_index(), self._term)
        self._transfer_target = target
        self._transfer_deadline = now + self._config.election_timeout_s
        # TimeoutNow lets the target's voters waive stickiness: no more lease reads.
        self._lease_forfeited = True
        pr = self._progress[target]
        if pr.match == self._log.last_index():
            self._send(target, TimeoutNow(self._term))
        else:
            if pr.state is _REPLICATE and pr.inflight:
                # The transfer waits on this follower: rather than wait for
                # heartbeat rounds to reveal a lost batch, probe from ``match``.
                pr.become_probe()
            self._send_append(target, pr, now, True)
        return Accepted(self._log.last_index(), self._term)

    def compact(self, index: int, data: bytes) -> None:
        """The runtime snapshotted its state machine at applied ``index``: drop
        the log through ``index`` and keep ``data`` to send to lagging followers."""
        log = self._log
        if index <= log.snapshot_index:
            return
        if index > log.emitted_commit:
            raise LocalProtocolError(
                f"cannot compact through {index}: only entries through {log.emitted_commit} "
                "were handed out for applying"
            )
        voters, learners = self._conf_at(index)
        term = log.compact(index)
        self._snapshot = Snapshot(
            index, term, tuple(sorted(voters)), tuple(sorted(learners)), bytes(data)
        )
        # Keep the configuration in force at the snapshot as the new base.
        confs = self._confs
        keep = 0
        while keep + 1 < len(confs) and confs[keep + 1][0] <= index:
            keep += 1
        del confs[:keep]

    # ================================================================ ready
    def has_ready(self) -> bool:
        # Called after every input: the cheap list checks first, the log's
        # cursors inlined (this is the runtime's per-input probe).
        if (
            self._msgs
            or self._reads
            or self._rejected
            or self._append_pending
            or self._snapshot_to_emit is not None
        ):
            return True
        log = self._log
        last = log.snapshot_index + len(log.entries)
        committed = log.committed
        if log.stable_from <= last or (committed if committed < last else last) > log.emitted_commit:
            return True
        hard = self._last_hard
        if hard.term != self._term or hard.vote != self._vote or hard.commit != committed:
            return True
        return self._read_round_needed and self._read_round_sent <= self._acked_round

    def ready(self) -> Ready:
        """Hand out all pending work (the node treats it as handed out at once)."""
        now = self._now
        if self._append_pending:
            self._append_pending = False
            if self._role is _LEADER:
                self._broadcast_append(now, send_if_empty=False)
        if self._read_round_needed and self._read_round_sent <= self._acked_round:
            # etcd's read-only queue: at most one confirmation round in flight;
            # reads that arrive meanwhile wait for the next single round.
            self._read_round_needed = False
            if self._role is _LEADER:
                self._broadcast_heartbeat(now)
        log = self._log
        hard = self._last_hard
        committed = log.committed
        hard_state = None
        if hard.term != self._term or hard.vote != self._vote or hard.commit != committed:
            hard_state = HardState(self._term, self._vote, committed)
            self._last_hard = hard_state
        last = log.snapshot_index + len(log.entries)
        ready = Ready(
            self._msgs,
            hard_state,
            log.take_unstable() if log.stable_from <= last else [],
            self._snapshot_to_emit,
            log.take_committed()
            if (committed if committed < last else last) > log.emitted_commit
            else [],
            self._reads,
            self._wake_at(),
            self._rejected,
        )
        self._msgs = []
        self._reads = []
        self._rejected = []
        self._snapshot_to_emit = None
        return ready

    def advance(self, ready: Ready) -> None:
        """The runtime persisted, sent and applied ``ready``."""
        if ready.snapshot is not None and ready.snapshot.index > self._applied:
            self._applied = ready.snapshot.index
        if ready.committed:
            self._applied = max(self._applied, ready.committed[-1].index)

    def wake_at(self) -> float | None:
        """The next deadline, as ``Ready.wake_at`` would report it."""
        return self._wake_at()

    def _wake_at(self) -> float | None:
        if self._role is _LEADER:
            wake = self._heartbeat_deadline
            if self._config.check_quorum and self._check_quorum_deadline < wake:
                wake = self._check_quorum_deadline
            if self._transfer_target is not None and self._transfer_deadline < wake:
                wake = self._transfer_deadline
            return wake
        if self._promotable():
            return self._election_deadline
        return None

    # ================================================================ roles
    def _promotable(self) -> bool:
        return self._id in self._voters

    def _reset_election_timer(self, now: float) -> None:
        timeout = self._config.election_timeout_s
        self._randomized_timeout_s = timeout + self._rng.random() * timeout
        self._election_deadline = now + self._randomized_timeout_s

    def _follower_role(self) -> Role:
        if self._id not in self._voters and self._id in self._learners:
            return _LEARNER
        return _FOLLOWER

    def _become_follower(self, term: int, leader: NodeId | None, now: float) -> None:
        if term != self._term:
            self._term = term
            self._vote = None
        self._leader = leader
        self._role = self._follower_role()
        self._step = _FOLLOWER_STEP
        self._leave_leadership()
        self._reset_election_timer(now)

    def _leave_leadership(self) -> None:
        self._votes = {}
        self._progress = {}
        self._transfer_target = None
        self._lease_expiry = NEVER
        self._lease_forfeited = False
        self._round_sent_at = {}
        self._round_acks = {}
        self._reads_awaiting_commit = []
        self._reads_awaiting_round = []
        self._read_round_needed = False
        self._append_pending = False

    def _campaign(self, now: float, *, pre_vote: bool, transfer: bool) -> None:
        log = self._log
        self._leave_leadership()
        self._leader = None
        if pre_vote:
            self._role = _PRE_CANDIDATE
            self._step = _PRE_CANDIDATE_STEP
            request: Any = PreVote(self._term + 1, log.last_index(), log.last_term())
        else:
            self._term += 1
            self._vote = self._id
            self._role = _CANDIDATE
            self._step = _CANDIDATE_STEP
            request = RequestVote(self._term, log.last_index(), log.last_term(), transfer)
        self._reset_election_timer(now)
        self._votes = {self._id: True}
        if self._poll_result() > 0:
            self._won_poll(now)
            return
        for voter in sorted(self._voters):
            if voter != self._id:
                self._send(voter, request)

    def _poll_result(self) -> int:
        """+1 won, -1 lost, 0 undecided."""
        quorum = len(self._voters) // 2 + 1
        granted = 0
        refused = 0
        for voter, vote in self._votes.items():
            if voter in self._voters:
                if vote:
                    granted += 1
                else:
                    refused += 1
        if granted >= quorum:
            return 1
        if refused > len(self._voters) - quorum:
            return -1
        return 0

    def _won_poll(self, now: float) -> None:
        if self._role is _PRE_CANDIDATE:
            self._campaign(now, pre_vote=False, transfer=False)
        else:
            self._become_leader(now)

    def _become_leader(self, now: float) -> None:
        log = self._log
        self._role = _LEADER
        self._leader = self._id
        self._step = _LEADER_STEP
        self._votes = {}
        self._heartbeat_round = 0
        self._acked_round = 0
        self._read_round_sent = 0
        self._round_sent_at = {}
        self._round_acks = {}
        self._above_commit = 0
        self._lease_expiry = NEVER
        self._lease_forfeited = False
        next_index = log.last_index() + 1
        self._progress = {
            peer: Progress(next_index) for peer in self._voters | self._learners if peer != self._id
        }
        # Any configuration entry still uncommitted in our log must commit before
        # the next change may start.
        self._pending_conf_index = log.last_index()
        self._heartbeat_deadline = now + self._config.heartbeat_interval_s
        self._check_quorum_deadline = now + self._config.election_timeout_s
        self._append_local(_NOOP, b"")

    # ================================================================ votes
    def _in_leader_lease(self, now: float) -> bool:
        if not self._config.check_quorum:
            return False
        if self._role is _LEADER:
            return True
        return now < self._vote_ignore_until

    def _handle_vote_request(self, sender: NodeId, m: Any, now: float) -> None:
        pre = type(m) is PreVote
        can_vote = (
            self._vote == sender
            or (self._vote is None and self._leader is None)
            or (pre and m.term > self._term)
        )
        if can_vote and self._log.is_up_to_date(m.last_log_index, m.last_log_term):
            if pre:
                self._send(sender, PreVoteResponse(m.term, True))
            else:
                self._vote = sender
                self._reset_election_timer(now)
                self._send(sender, RequestVoteResponse(self._term, True))
        elif pre:
            self._send(sender, PreVoteResponse(self._term, False))
        else:
            self._send(sender, RequestVoteResponse(self._term, False))

    # ================================================================ follower
    def _step_follower(self, sender: NodeId, m: Any, now: float) -> None:
        handler = _FOLLOWER_HANDLERS.get(type(m))
        if handler is not None:
            handler(self, sender, m, now)

    def _heard_from_leader(self, sender: NodeId, now: float) -> None:
        self._leader = sender
        self._election_deadline = now + self._randomized_timeout_s
        if self._config.check_quorum:
            self._vote_ignore_until = now + self._config.election_timeout_s

    def _on_append_entries(self, sender: NodeId, m: AppendEntries, now: float) -> None:
        log = self._log
        entries = m.entries
        prev = m.prev_log_index
        reason = _check_append(m)
        if reason is not None:
            self._reject(sender, m, reason)
            return
        self._heard_from_leader(sender, now)
        committed = log.committed
        if prev < committed:
            # Entries through our commit index are committed, hence identical to
            # the leader's (leader completeness): skip that overlap.
            skip = committed - prev
            if skip > len(entries):
                self._send(sender, AppendEntriesResponse(self._term, committed, True))
                return
            if skip > 0 and entries[skip - 1].term != log.term(committed):
                self._reject(sender, m, f"entry {committed} conflicts with a committed entry")
                return
            entries = entries[skip:]
            prev = committed
            prev_term = log.term(committed) or 0
        else:
            prev_term = m.prev_log_term
        if log.term(prev) != prev_term:
            hint_index = log.find_conflict_by_term(min(prev, log.last_index()), prev_term)
            hint_term = log.term(hint_index) or 0
            self._send(
                sender,
                AppendEntriesResponse(self._term, m.prev_log_index, False, hint_index, hint_term),
            )
            return
        last_new = prev + len(entries)
        if prev == log.snapshot_index + len(log.entries):
            # The entries start right after our last one (the steady state):
            # all of them are new.
            if entries:
                self._store_entries(entries)
        else:
            # Find the first entry we do not already hold. Entries we hold with
            # the same term are identical (log matching): never truncate them.
            term_of = log.term
            for offset, entry in enumerate(entries):
                if term_of(entry.index) != entry.term:
                    self._store_entries(entries[offset:])
                    break
        log.commit_to(min(m.leader_commit, last_new))
        self._msgs.append((sender, AppendEntriesResponse(self._term, last_new, True)))

    def _store_entries(self, entries: list[Entry]) -> None:
        log = self._log
        first = entries[0].index
        conf_changed = False
        if first <= log.last_index():
            confs = self._confs
            while len(confs) > 1 and confs[-1][0] >= first:
                confs.pop()
                conf_changed = True
        log.truncate_and_append(entries)
        for entry in entries:
            if entry.kind == _CONFIG:
                self._record_conf(entry)
                conf_changed = True
        if conf_changed:
            self._apply_conf(self._now)

    def _on_heartbeat(self, sender: NodeId, m: Heartbeat, now: float) -> None:
        if m.leader_commit < 0 or m.round < 0:
            self._reject(sender, m, "negative commit index or round")
            return
        self._heard_from_leader(sender, now)
        self._log.commit_to(min(m.leader_commit, self._log.last_index()))
        self._send(sender, HeartbeatResponse(self._term, m.round))

    def _on_install_snapshot(self, sender: NodeId, m: InstallSnapshot, now: float) -> None:
        snap = m.snapshot
        if snap.index < 0 or snap.term < 0 or snap.term > m.term or not snap.voters:
            self._reject(sender, m, "snapshot with invalid index, term or configuration")
            return
        if set(snap.voters) & set(snap.learners):
            self._reject(sender, m, "snapshot configuration lists a node as voter and learner")
            return
        self._heard_from_leader(sender, now)
        log = self._log
        if snap.index <= log.committed:
            self._send(sender, AppendEntriesResponse(self._term, log.committed, True))
            return
        if log.term(snap.index) == snap.term:
            # We already hold the snapshot's last entry, so all before it too.
            log.commit_to(snap.index)
            self._send(sender, AppendEntriesResponse(self._term, snap.index, True))
            return
        log.restore(snap.index, snap.term)
        self._snapshot = snap
        self._snapshot_to_emit = snap
        self._confs = [
            (snap.index, frozenset(map(NodeId, snap.voters)), frozenset(map(NodeId, snap.learners)))
        ]
        self._apply_conf(now)
        self._send(sender, AppendEntriesResponse(self._term, snap.index, True))

    def _on_timeout_now(self, sender: NodeId, m: TimeoutNow, now: float) -> None:
        if self._promotable():
            self._campaign(now, pre_vote=False, transfer=True)

    # ================================================================ candidate
    def _step_candidate(self, sender: NodeId, m: Any, now: float) -> None:
        cls = type(m)
        if cls in _LEADER_TRAFFIC:
            # A leader won this term (§5.2): follow it.
            self._become_follower(self._term, sender, now)
            self._step_follower(sender, m, now)
            return
        expected = PreVoteResponse if self._role is _PRE_CANDIDATE else RequestVoteResponse
        if cls is not expected:
            return
        if sender not in self._voters:
            return
        self._votes.setdefault(sender, m.granted)
        result = self._poll_result()
        if result > 0:
            self._won_poll(now)
        elif result < 0:
            self._become_follower(self._term, None, now)

    # ================================================================ leader
    def _step_leader(self, sender: NodeId, m: Any, now: float) -> None:
        handler = _LEADER_HANDLERS.get(type(m))
        if handler is not None:
            handler(self, sender, m, now)

    def _on_leader_traffic_same_term(self, sender: NodeId, m: Any, now: float) -> None:
        self._reject(sender, m, f"a second leader claims term {m.term}")

    def _on_append_response(self, sender: NodeId, m: AppendEntriesResponse, now: float) -> None:
        pr = self._progress.get(sender)
        if pr is None:
            return
        pr.recent_active = True
        log = self._log
        if not m.success:
            if m.index < 0 or m.hint_index < 0:
                self._reject(sender, m, "negative index in rejection")
                return
            if pr.state is _REPLICATE and (
                m.hint_index < pr.match or pr.repair_covers(m.hint_index)
            ):
                # Stale (sent before the follower acknowledged ``match``), or a
                # batch overtook an earlier one and the repair already on its
                # way fills the gap: sending again would only duplicate.
                return
            hint = log.find_conflict_by_term(m.hint_index, m.hint_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state is _REPLICATE:
                    pr.become_probe(pr.next)
                self._send_append(sender, pr, now, True)
            return
        if m.index > log.last_index():
            self._reject(
                sender, m, f"acknowledges index {m.index} beyond our last {log.last_index()}"
            )
            return
        old_match = pr.match
        if pr.maybe_update(m.index, self._heartbeat_round):
            state = pr.state
            if state is _PROBE or (
                state is _SNAPSHOT and pr.match >= pr.pending_snapshot
            ):
                pr.become_replicate(self._heartbeat_round)
            if self._count_ack(sender, old_match, pr.match) and self._maybe_commit():
                if self._role is not _LEADER:
                    return  # we removed ourselves and stepped down
                # Tell every follower the new commit index; followers in
                # REPLICATE get only entries they have not been sent yet.
                self._broadcast_append(now, send_if_empty=True)
            while self._send_append(sender, pr, now, False):
                pass
            if not pr.inflight and pr.commit_sent < log.committed:
                # The last batch it was sent predates the commit index: tell it.
                self._send_append(sender, pr, now, True)
            if self._transfer_target == sender and pr.match == log.last_index():
                self._send(sender, TimeoutNow(self._term))

    def _on_heartbeat_response(self, sender: NodeId, m: HeartbeatResponse, now: float) -> None:
        pr = self._progress.get(sender)
        if pr is None:
            return
        pr.recent_active = True
        answered = m.round if m.round <= self._heartbeat_round else 0
        state = pr.state
        if state is _SNAPSHOT:
            if now - pr.snapshot_sent_at >= self._config.election_timeout_s:
                pr.become_probe()  # the snapshot was probably lost: send it again
                self._send_append(sender, pr, now, True)
        elif pr.lost_in_flight(answered):
            # A heartbeat sent well after our oldest unanswered AppendEntries
            # came back first: that AppendEntries was lost. Probe from ``match``.
            pr.become_probe()
            self._send_append(sender, pr, now, True)
        elif (
            state is _REPLICATE
            and not pr.inflight
            and pr.match < self._log.last_index()
        ):
            # The follower lags and nothing is in flight: send what it misses.
            self._send_append(sender, pr, now, True)
        elif state is _PROBE and not pr.probe_sent:
            self._send_append(sender, pr, now, True)
        if pr.heartbeat_round < m.round <= self._heartbeat_round:
            previous = pr.heartbeat_round
            pr.heartbeat_round = m.round
            if sender in self._voters:
                self._on_round_acknowledged(previous, m.round)

    def _tick_leader(self, now: float) -> None:
        config = self._config
        if now >= self._heartbeat_deadline:
            self._heartbeat_deadline = now + config.heartbeat_interval_s
            self._read_round_needed = False
            self._broadcast_heartbeat(now)
        if config.check_quorum and now >= self._check_quorum_deadline:
            self._check_quorum_deadline = now + config.election_timeout_s
            if not self._quorum_active():
                self._become_follower(self._term, None, now)
                return
            for pr in self._progress.values():
                pr.recent_active = False
        if self._transfer_target is not None and now >= self._transfer_deadline:
            self._transfer_target = None

    def _quorum_active(self) -> bool:
        active = 1 if self._id in self._voters else 0
        for peer in self._voters:
            pr = self._progress.get(peer)
            if pr is not None and pr.recent_active:
                active += 1
        return active >= len(self._voters) // 2 + 1

    def _refuse_proposal(self) -> ProposeOutcome | None:
        if self._role is not _LEADER:
            return Redirect(self._leader)
        if self._transfer_target is not None:
            return Refused(f"leadership is being transferred to node {self._transfer_target}")
        return None

    def _append_local(self, kind: int, data: bytes) -> Entry:
        log = self._log
        entry = Entry(self._term, log.last_index() + 1, kind, data)
        log.append(entry)
        if kind == _CONFIG:
            self._record_conf(entry)
            self._apply_conf(self._now)
        self._append_pending = True
        self._maybe_commit()
        return entry

    def _count_ack(self, peer: NodeId, old_match: int, new_match: int) -> bool:
        """Keep the count of voters holding entries past the commit index; True
        when it reaches a quorum, i.e. when recomputing the commit index may
        move it (this keeps an acknowledgement O(1) in large clusters)."""
        log = self._log
        commit = log.committed
        if old_match <= commit < new_match and peer in self._voters:
            self._above_commit += 1
        own = 1 if self._id in self._voters and log.last_index() > commit else 0
        return self._above_commit + own >= len(self._voters) // 2 + 1

    def _recount_above_commit(self) -> None:
        commit = self._log.committed
        progress = self._progress
        self._above_commit = sum(
            1 for v in self._voters if (pr := progress.get(v)) is not None and pr.match > commit
        )

    def _maybe_commit(self) -> bool:
        log = self._log
        if self._config.unsafe_commit_without_quorum:
            new_commit = log.last_index()
        else:
            voters = self._voters
            progress = self._progress
            matches = [progress[v].match for v in voters if v != self._id and v in progress]
            if self._id in voters:
                matches.append(log.last_index())
            quorum = len(voters) // 2 + 1
            if len(matches) < quorum:
                return False
            matches.sort(reverse=True)
            new_commit = matches[quorum - 1]
            # §5.4.2: only entries of the current term commit by counting.
            if new_commit <= log.committed or log.term(new_commit) != self._term:
                return False
        if not log.commit_to(new_commit):
            return False
        self._recount_above_commit()
        self._on_commit_advanced()
        return True

    def _on_commit_advanced(self) -> None:
        if self._reads_awaiting_commit and self._committed_in_term():
            commit = self._log.committed
            waiting = self._reads_awaiting_commit
            self._reads_awaiting_commit = []
            if self._sole_voter():
                self._reads.extend(ReadState(commit, ctx) for ctx in waiting)
            else:
                round_ = self._heartbeat_round + 1
                self._reads_awaiting_round.extend((round_, commit, ctx) for ctx in waiting)
                self._read_round_needed = True
        if self._id not in self._voters and self._log.committed >= self._confs[-1][0]:
            # Our removal committed (thesis §4.2.2): hand over by stepping down.
            self._become_follower(self._term, None, self._now)

    def _sole_voter(self) -> bool:
        return len(self._voters) == 1 and self._id in self._voters

    def _committed_in_term(self) -> bool:
        return self._log.term(self._log.committed) == self._term

    def _broadcast_append(self, now: float, send_if_empty: bool) -> None:
        # Followers in step are sent the same AppendEntries: build it once per
        # starting index and share the (immutable) message. With 50 followers
        # that saves 49 log slices and message constructions per broadcast,
        # and lets a runtime that sizes or encodes messages do it once.
        shared: dict[int, AppendEntries] = {}
        for peer, pr in self._progress.items():
            self._send_append(peer, pr, now, send_if_empty, shared)

    def _send_append(
        self,
        to: NodeId,
        pr: Progress,
        now: float,
        send_if_empty: bool,
        shared: dict[int, AppendEntries] | None = None,
    ) -> bool:
        """Send ``to`` the entries from ``pr.next`` (or a snapshot). False if nothing sent.
        ``shared`` holds the messages already built in this round, by starting index."""
        state = pr.state
        if state is _REPLICATE:
            if len(pr.inflight) >= self._config.max_inflight:
                return False
        elif state is _PROBE:
            if pr.probe_sent:
                return False
        else:
            return False
        log = self._log
        next_index = pr.next
        # An empty AppendEntries only carries the commit index. While batches
        # are in flight it could overtake them and be rejected (forcing a
        # needless probe); they carry the commit index anyway.
        empty_unwanted = not send_if_empty or (state is _REPLICATE and bool(pr.inflight))
        if empty_unwanted and next_index == log.snapshot_index + len(log.entries) + 1:
            # Nothing new to send: most calls after an acknowledgement end
            # here, before any look-up in the log.
            return False
        prev = next_index - 1
        message = shared.get(next_index) if shared is not None else None
        if message is None:
            prev_term = log.term(prev)
            if prev_term is None:
                return self._send_snapshot(to, pr, now)
            entries = self._batch_from(next_index)
            if not entries and empty_unwanted:
                return False
            message = AppendEntries(self._term, prev, prev_term, entries, log.committed)
            if shared is not None:
                shared[next_index] = message
        else:
            entries = message.entries
            if not entries and empty_unwanted:
                return False
        self._msgs.append((to, message))
        pr.commit_sent = message.leader_commit
        if state is _REPLICATE:
            if entries:
                pr.sent_batch(entries[-1].index, self._heartbeat_round)
        else:
            pr.sent_probe(next_index, prev + len(entries), self._heartbeat_round)
        return True

    def _batch_from(self, start: int) -> list[Entry]:
        config = self._config
        log = self._log
        entries = log.slice(start, start + config.max_batch_entries)
        budget = config.max_batch_bytes
        if len(entries) <= 1:
            return entries  # a batch always carries at least one entry
        if sum([len(entry.data) for entry in entries]) + ENTRY_OVERHEAD_BYTES * len(entries) <= budget:
            return entries  # the whole slice fits: no need to find the cut
        size = 0
        for count, entry in enumerate(entries):
            size += len(entry.data) + ENTRY_OVERHEAD_BYTES
            if size > budget and count > 0:
                return entries[:count]
        return entries

    def _send_snapshot(self, to: NodeId, pr: Progress, now: float) -> bool:
        snap = self._snapshot
        if snap is None:  # pragma: no cover - a compacted log always has a snapshot
            return False
        pr.become_snapshot(snap.index, now)
        self._msgs.append((to, InstallSnapshot(self._term, snap)))
        return True

    def _broadcast_heartbeat(self, now: float) -> None:
        self._heartbeat_round += 1
        round_ = self._heartbeat_round
        if self._reads_awaiting_round:
            self._read_round_sent = round_
        sent_at = self._round_sent_at
        acks = self._round_acks
        sent_at[round_] = now
        acks[round_] = 1 if self._id in self._voters else 0
        if len(sent_at) > MAX_TRACKED_HEARTBEAT_ROUNDS:
            oldest = next(iter(sent_at))
            del sent_at[oldest]
            acks.pop(oldest, None)
        commit = self._log.committed
        term = self._term
        msgs = self._msgs
        # One message per distinct commit hint, shared by the followers it fits
        # (all of them, once they have caught up).
        shared: dict[int, Heartbeat] = {}
        for peer, pr in self._progress.items():
            hint = min(pr.match, commit)
            heartbeat = shared.get(hint)
            if heartbeat is None:
                heartbeat = shared[hint] = Heartbeat(term, hint, round_)
            msgs.append((peer, heartbeat))
        if acks[round_] >= len(self._voters) // 2 + 1:
            self._round_confirmed(round_)

    def _on_round_acknowledged(self, previous: int, latest: int) -> None:
        """A voter acknowledged every round in (previous, latest]; when one of
        them reaches a quorum, leadership is confirmed as of its sending."""
        acks = self._round_acks
        quorum = len(self._voters) // 2 + 1
        confirmed = 0
        for round_ in range(max(previous + 1, self._acked_round + 1), latest + 1):
            count = acks.get(round_)
            if count is None:
                continue
            count += 1
            acks[round_] = count
            if count >= quorum:
                confirmed = round_
        if confirmed:
            self._round_confirmed(confirmed)

    def _round_confirmed(self, acked: int) -> None:
        """Release reads waiting for round ``acked`` and extend the lease from
        the time that round was sent."""
        if acked <= self._acked_round:
            return
        self._acked_round = acked
        sent = self._round_sent_at.get(acked)
        if sent is not None:
            expiry = sent + self._config.lease_duration_s
            if expiry > self._lease_expiry:
                self._lease_expiry = expiry
        for old in [r for r in self._round_sent_at if r <= acked]:
            del self._round_sent_at[old]
            self._round_acks.pop(old, None)
        waiting = self._reads_awaiting_round
        if waiting and waiting[0][0] <= acked:
            keep: list[tuple[int, int, bytes]] = []
            for round_, index, ctx in waiting:
                if round_ <= acked:
                    self._reads.append(ReadState(index, ctx))
                else:
                    keep.append((round_, index, ctx))
            self._reads_awaiting_round = keep
            if keep:
                # Reads that arrived during the confirmed round need the next.
                self._read_round_needed = True

    # ================================================================ membership
    def _record_conf(self, entry: Entry) -> None:
        try:
            conf = decode_conf_state(entry.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # _check_append validated peers' entries; a local one is always valid.
            raise LocalProtocolError(f"malformed configuration entry at {entry.index}") from None
        self._confs.append(
            (
                entry.index,
                frozenset(map(NodeId, conf.voters)),
                frozenset(map(NodeId, conf.learners)),
            )
        )

    def _conf_at(self, index: int) -> tuple[frozenset[NodeId], frozenset[NodeId]]:
        for conf_index, voters, learners in reversed(self._confs):
            if conf_index <= index:
                return voters, learners
        _, voters, learners = self._confs[0]
        return voters, learners

    def _apply_conf(self, now: float) -> None:
        """Switch to the newest known configuration (thesis §4.1: on append)."""
        _, voters, learners = self._confs[-1]
        if voters == self._voters and learners == self._learners:
            return
        self._voters = voters
        self._learners = learners
        if self._role is _LEADER:
            progress = self._progress
            next_index = self._log.last_index() + 1
            for peer in voters | learners:
                if peer != self._id and peer not in progress:
                    progress[peer] = Progress(next_index)
                    progress[peer].recent_active = True
            for peer in [p for p in progress if p not in voters and p not in learners]:
                del progress[peer]
            if self._transfer_target is not None and self._transfer_target not in voters:
                self._transfer_target = None
            # Acknowledgement counts were made under the old configuration:
            # start over, and re-confirm pending reads with a fresh round.
            self._round_sent_at = {}
            self._round_acks = {}
            self._read_round_sent = 0
            if self._reads_awaiting_round:
                round_ = self._heartbeat_round + 1
                self._reads_awaiting_round = [
                    (round_, i, c) for _, i, c in self._reads_awaiting_round
                ]
                self._read_round_needed = True
            self._recount_above_commit()
            if self._maybe_commit():
                self._append_pending = True
        elif self._role is _FOLLOWER or self._role is _LEARNER:
            self._role = self._follower_role()
        elif not self._promotable():
            self._become_follower(self._term, None, now)

    # ================================================================ plumbing
    def _send(self, to: NodeId, message: Any) -> None:
        self._msgs.append((to, message))

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self._rejected.append(Rejection(sender, type(message).__name__, reason))

    def __repr__(self) -> str:
        return (
            f"RaftNode(id={self._id}, role={self._role.value}, term={self._term}, "
            f"leader={self._leader}, commit={self._log.committed}, last={self._log.last_index()})"
        )


def _check_append(m: AppendEntries) -> str | None:
    """Why a peer's AppendEntries is malformed, or ``None`` if it is well formed."""
    if m.prev_log_index < 0 or m.prev_log_term < 0 or m.leader_commit < 0:
        return "negative index, term or commit"
    if m.prev_log_term > m.term:
        return "prev_log_term is above the leader's term"
    entries = m.entries
    if not entries:
        return None
    if len(entries) == 1:
        # The common case (one proposal per batch): the loop below, unrolled.
        entry = entries[0]
        if (
            entry.index == m.prev_log_index + 1
            and m.prev_log_term <= entry.term <= m.term
            and entry.kind in _ENTRY_KINDS_WITHOUT_DATA_RULES
        ):
            return None
    else:
        # Whole-batch checks run in C (comprehensions, sorted, set algebra);
        # whatever fails them is re-checked entry by entry below to name the
        # first offending entry. Configuration entries take the slow path too.
        first = m.prev_log_index + 1
        terms = [entry.term for entry in entries]
        if (
            [entry.index for entry in entries] == list(range(first, first + len(entries)))
            and terms[0] >= m.prev_log_term
            and terms[-1] <= m.term
            and terms == sorted(terms)
            and {entry.kind for entry in entries} <= _ENTRY_KINDS_WITHOUT_DATA_RULES
        ):
            return None
    return _check_append_entries(m)


def _check_append_entries(m: AppendEntries) -> str | None:
    """``_check_append`` for entries, one by one: the first malformed one, or ``None``."""
    expected = m.prev_log_index + 1
    previous_term = m.prev_log_term
    for entry in m.entries:
        if entry.index != expected:
            return f"entries are not contiguous after {m.prev_log_index}"
        if entry.term < previous_term or entry.term > m.term:
            return f"entry {entry.index} has term {entry.term} out of order"
        if entry.kind not in _KNOWN_KINDS:
            return f"entry {entry.index} has unknown kind {entry.kind}"
        if entry.kind == _CONFIG:
            try:
                conf = decode_conf_state(entry.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return f"entry {entry.index} is a malformed configuration"
            if not conf.voters or set(conf.voters) & set(conf.learners):
                return f"entry {entry.index} is an invalid configuration"
        previous_term = entry.term
        expected += 1
    return None


# Role step functions and per-role handler tables, chosen by a variable on each
# role change (etcd's ``r.step = stepLeader``).
_FOLLOWER_HANDLERS: dict[type, Handler] = {
    AppendEntries: RaftNode._on_append_entries,
    Heartbeat: RaftNode._on_heartbeat,
    InstallSnapshot: RaftNode._on_install_snapshot,
    TimeoutNow: RaftNode._on_timeout_now,
}
_LEADER_HANDLERS: dict[type, Handler] = {
    AppendEntriesResponse: RaftNode._on_append_response,
    HeartbeatResponse: RaftNode._on_heartbeat_response,
    AppendEntries: RaftNode._on_leader_traffic_same_term,
    Heartbeat: RaftNode._on_leader_traffic_same_term,
    InstallSnapshot: RaftNode._on_leader_traffic_same_term,
}
_FOLLOWER_STEP: Handler = RaftNode._step_follower
_PRE_CANDIDATE_STEP: Handler = RaftNode._step_candidate
_CANDIDATE_STEP: Handler = RaftNode._step_candidate
_LEADER_STEP: Handler = RaftNode._step_leader
