"""``RaftNode``: Raft as a sans-IO state machine (Ongaro & Ousterhout 2014; thesis §§3–6, 9.6).

Theory of operation
-------------------
The node only changes memory and queues work; the runtime collects the work with
``ready()`` and acknowledges it with ``advance()`` (``quorate.core.ready``). Inputs:

- ``step(sender, message, now)``: a peer's RPC. Terms are handled first, for every
  role (§5.1): a higher term demotes us to follower (except for pre-votes, which
  change nothing, thesis §9.6); a lower term is stale and dropped (a stale leader
  is told our term so it steps down). Then the handler for the message's type in
  the *current role's* table handles the rest. The node swaps tables on every
  role change (etcd's ``r.step = stepLeader``); a table maps a message type to
  a method of the node's own class, so a subclass that overrides a handler is
  called like any other (``_handler_tables``).
- ``tick(now)``: deadlines. Followers and candidates campaign when their
  randomized election deadline passes (uniform in [T, 2T), drawn from the injected
  ``random.Random``); leaders send heartbeats, run check-quorum and abort stuck
  leadership transfers.
- ``propose`` / ``propose_conf_change`` / ``read_index`` / ``transfer_leadership`` /
  ``compact`` / ``campaign`` / ``forget_leader`` / ``refuse_leader`` /
  ``unquiesce``: the client's, the runtime's and the operator's requests.

Every input takes ``now`` (the node's monotonic clock, seconds) and stores it;
handlers read the stored time. That is the clock rule of every core here.

The rest lives beside this file, one concern per module, as etcd-io/raft splits
``raft.go``:

- ``election``: campaigns, pre-vote, votes, stickiness, ``forget_leader``,
  ``refuse_leader``;
- ``replication``: AppendEntries both ways, flow control, commitment,
  snapshots sent and installed; ``progress`` and ``log`` are its state;
- ``read_only``: ReadIndex, lease reads and the heartbeat rounds behind them;
- ``confchange``: single-server membership changes and the quorum sizes;
- ``quiescence``: idle groups that cost nothing;
- ``hooks``: the seams (digests, signatures, the quorum rule) a watched Raft
  plugs into.

Here: construction and recovery, the inputs above, ``ready``/``advance`` and
the role transitions.

Safety rules kept across those modules (figure 2 and the sections named):

- Election safety (§5.2): one vote per term, persisted (``HardState``) before the
  vote leaves (the driver persists before it sends).
- Election restriction (§5.4.1): votes only for logs at least as up to date.
- Commitment (§5.4.2): only entries of the leader's term are counted; election
  and commit quorums always intersect.
- Log matching (§5.3): truncate only from the first conflicting entry.
- Pre-vote (thesis §9.6) and check-quorum (§6.2): a partitioned node cannot bump
  terms and disrupt the cluster; a leader that has not heard from a commit
  quorum within an election timeout steps down. With check-quorum on, a node
  that heard from a leader less than T ago ignores (pre-)vote requests (leader
  stickiness), except for elections a leader started on purpose with
  ``TimeoutNow``. A node restarted from disk also ignores votes for its first
  T, since it may have heard from a leader just before crashing.
- Leadership transfer (thesis §3.10): catch the target up, send ``TimeoutNow``;
  proposals are refused meanwhile; the transfer aborts after T.

What only the core knows travels in its ``Ready``
------------------------------------------------
- ``must_sync`` (etcd's ``MustSync``): entries or a snapshot to write, or a term
  or vote that changed. A hard state whose only change is the commit index
  needs no fsync: the commit index may be lost in a crash and relearned.
- ``early_messages`` (thesis §10.2.1): a leader's messages may leave before its
  own write is durable when the Ready changes no term and no vote, *and* the
  commit index it carries counts no entry that is only now being written. The
  entries it sends are made durable by each follower before it acknowledges,
  and the runtime takes the next Ready only after this one's write, so a commit
  index that counts the leader's own new entries leaves later. The commit
  index can count them at once when the leader needs nobody's
  acknowledgement (a sole voter with learners, a removal that shrinks the
  quorum); such a Ready sends everything after the write. The split is
  all-or-nothing, so the order of sends is the order of ``messages``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from quorate.core.protocol import Accepted, ProposeOutcome, Redirect, Refused
from quorate.core.ready import Entry, ReadState, Ready, Rejection
from quorate.errors import ConfigError, LocalProtocolError
from quorate.ids import NodeId
from quorate.raft import confchange, election, quiescence, read_only, replication
from quorate.raft.confchange import (
    Configuration,
    VoterQuorum,
    decode_conf_state,
    encode_conf_state,
)
from quorate.raft.config import RaftConfig
from quorate.raft.hooks import HOOK_METHODS, MAJORITY, QuorumRule, RaftHooks
from quorate.raft.log import RaftLog
from quorate.raft.messages import (
    RAFT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallConfiguredSnapshot,
    InstallSnapshot,
    PreVote,
    PreVoteResponse,
    QuiesceHeartbeat,
    RequestVote,
    RequestVoteResponse,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
    Snapshot,
    TimeoutNow,
)
from quorate.raft.progress import Progress, ProgressState
from quorate.raft.roles import FOLLOWER, LEADER, LEARNER, NEVER, Role

__all__ = ["RaftNode", "RecoveredState", "Role", "decode_conf_state", "encode_conf_state"]

_RAFT_TYPES = frozenset(RAFT_MESSAGE_TYPES)
_LEADER_TRAFFIC = frozenset(
    (
        AppendEntries,
        SignedAppendEntries,
        Heartbeat,
        QuiesceHeartbeat,
        InstallSnapshot,
        InstallConfiguredSnapshot,
    )
)
_STALE_LEADER_TRAFFIC = frozenset((AppendEntries, SignedAppendEntries, Heartbeat, QuiesceHeartbeat))
"""Messages whose stale sender is told our term (so it steps down)."""
_FROM_A_LEADER = _LEADER_TRAFFIC | {TimeoutNow, RequestVote, PreVote}
"""What a node refused as leader (``refuse_leader``) may not send us."""
_REPLICATE = ProgressState.REPLICATE
_NORMAL = EntryKind.NORMAL
_NOOP = EntryKind.NOOP
_CONFIG = EntryKind.CONFIG

Handler = Callable[["RaftNode", NodeId, Any], None]
"""A message handler, called ``handler(node, sender, message)``; the time is ``node._now``."""


class RecoveredState(Protocol):
    """What a node finds on disk after a restart (``quorate.storage.Recovered``
    has this shape): a ``HardState``, a ``Snapshot`` and the entries after it."""

    hard_state: Any
    snapshot: Any
    entries: list[Entry]


class RaftNode:
    """One Raft replica. See the module docstring for the theory of operation.

    Bad constructor input (overlapping voters and learners, a quorum rule whose
    quorums do not intersect, a recovered state that is not Raft's or has a
    gap) raises ``ConfigError``.

    Many methods are defined in the modules beside this one (functions whose
    first parameter is ``self: RaftNode``) and attached below, each module
    owning one concern; they are ordinary methods (a subclass may override
    any of them)."""

    # ---------------------------------------------------------- election.py
    campaign = election.campaign
    forget_leader = election.forget_leader
    refuse_leader = election.refuse_leader
    allow_leader = election.allow_leader
    _campaign = election._campaign
    _poll_result = election._poll_result
    _won_poll = election._won_poll
    _on_leader_traffic_as_candidate = election._on_leader_traffic_as_candidate
    _on_vote_response = election._on_vote_response
    _in_leader_lease = election._in_leader_lease
    _handle_vote_request = election._handle_vote_request
    # ------------------------------------------------------- replication.py
    _append_local = replication._append_local
    _broadcast_append = replication._broadcast_append
    _send_append = replication._send_append
    _signed_append = replication._signed_append
    _batch_from = replication._batch_from
    _send_snapshot = replication._send_snapshot
    _on_leader_traffic_same_term = replication._on_leader_traffic_same_term
    _on_append_response = replication._on_append_response
    _on_heartbeat_response = replication._on_heartbeat_response
    _count_ack = replication._count_ack
    _recount_above_commit = replication._recount_above_commit
    _maybe_commit = replication._maybe_commit
    _joint_commit_index = replication._joint_commit_index
    _on_commit_advanced = replication._on_commit_advanced
    _hand_over = replication._hand_over
    _heard_from_leader = replication._heard_from_leader
    _append_response = replication._append_response
    _on_append_entries = replication._on_append_entries
    _chain_mismatch = replication._chain_mismatch
    _store_entries = replication._store_entries
    _on_heartbeat = replication._on_heartbeat
    _on_install_snapshot = replication._on_install_snapshot
    _on_timeout_now = replication._on_timeout_now
    # --------------------------------------------------------- read_only.py
    read_index = read_only.read_index
    lease_valid = read_only.lease_valid
    _sole_voter = read_only._sole_voter
    _committed_in_term = read_only._committed_in_term
    _release_reads_on_commit = read_only._release_reads_on_commit
    _broadcast_heartbeat = read_only._broadcast_heartbeat
    _on_round_acknowledged = read_only._on_round_acknowledged
    _round_confirmed = read_only._round_confirmed
    _restart_read_rounds = read_only._restart_read_rounds
    # -------------------------------------------------------- confchange.py
    propose_conf_change = confchange.propose_conf_change
    propose_conf_change_v2 = confchange.propose_conf_change_v2
    _conf_change_refusal = confchange._conf_change_refusal
    _append_conf = confchange._append_conf
    _leave_joint_if_due = confchange._leave_joint_if_due
    _record_conf = confchange._record_conf
    _conf_at = confchange._conf_at
    _set_configuration = confchange._set_configuration
    _apply_conf = confchange._apply_conf
    # -------------------------------------------------------- quiescence.py
    unquiesce = quiescence.unquiesce
    _leader_input = quiescence._leader_input
    _quiesce_if_idle = quiescence._quiesce_if_idle
    _on_quiesce_heartbeat = quiescence._on_quiesce_heartbeat
    _on_message_while_quiet = quiescence._on_message_while_quiet
    _wake = quiescence._wake

    __slots__ = (
        "_above_commit",
        "_acked_round",
        "_active_at",
        "_append_pending",
        "_applied",
        "_candidate_handlers",
        "_check_chain",
        "_check_quorum_deadline",
        "_commit_quorum",
        "_conf",
        "_config",
        "_confs",
        "_election_deadline",
        "_election_quorum",
        "_entry_digest",
        "_follower_handlers",
        "_handlers",
        "_heartbeat_deadline",
        "_heartbeat_round",
        "_hooks",
        "_id",
        "_joint",
        "_kept_on_leading",
        "_last_hard",
        "_leader",
        "_leader_handlers",
        "_learners",
        "_lease_expiry",
        "_lease_forfeited",
        "_leave_due",
        "_log",
        "_msgs",
        "_now",
        "_pending_conf_index",
        "_progress",
        "_quiesced",
        "_quorum_rule",
        "_randomized_timeout_s",
        "_read_round_needed",
        "_read_round_sent",
        "_reads",
        "_reads_awaiting_commit",
        "_reads_awaiting_round",
        "_refused",
        "_rejected",
        "_replace_entry",
        "_rng",
        "_role",
        "_round_acks",
        "_round_sent_at",
        "_sign_append",
        "_sign_append_response",
        "_snapshot",
        "_snapshot_to_emit",
        "_term",
        "_transfer_deadline",
        "_transfer_target",
        "_verified",
        "_verify_append",
        "_verify_append_response",
        "_vote",
        "_vote_ignore_until",
        "_voter_quorums",
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
        hooks: RaftHooks | None = None,
        quorum: QuorumRule = MAJORITY,
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
        self._leave_due = False
        self._quiesced = False
        self._active_at = now
        self._refused: frozenset[NodeId] = frozenset()
        self._bind_hooks(hooks)
        self._quorum_rule = quorum
        self._commit_quorum = 0
        self._election_quorum = 0
        self._voters: frozenset[NodeId] = frozenset()
        self._learners: frozenset[NodeId] = frozenset()
        self._conf = Configuration(frozenset())
        self._voter_quorums: tuple[VoterQuorum, ...] = ()
        self._joint: tuple[VoterQuorum, ...] | None = None
        """The halves counting must satisfy while joint; None otherwise."""
        # (index, configuration, context): the configuration each config entry
        # set; the first element is the base (initial or snapshot) configuration.
        self._confs: list[tuple[int, Configuration, bytes]] = []
        voters_set = frozenset(voters)
        if config.join:
            # Not a member until a configuration entry from the leader says so.
            voters_set -= {id}
        learners_set = frozenset(learners)
        if voters_set & learners_set:
            raise ConfigError(
                f"nodes {sorted(voters_set & learners_set)} are both voters and learners"
            )
        self._log = RaftLog()
        hard = HardState(0, None, 0)
        if recovered is None:
            self._confs.append((0, Configuration(voters_set, learners_set), b""))
        else:
            hard = self._recover(recovered, voters_set, learners_set, now)
        self._last_hard = hard
        self._applied = self._log.snapshot_index
        conf_now = self._confs[-1][1]
        try:
            conf_now.halves(quorum)
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"bad quorum rule: {exc}") from None
        self._set_configuration(conf_now)
        tables = _handler_tables(type(self))
        self._follower_handlers, self._candidate_handlers, self._leader_handlers = tables
        self._role = FOLLOWER
        self._handlers = self._follower_handlers
        self._become_follower(self._term, None, now)

    def _bind_hooks(self, hooks: RaftHooks | None) -> None:
        """Bind the seams ``hooks`` overrides; the others stay ``None`` (free)."""
        self._hooks = hooks
        bound: dict[str, Any] = dict.fromkeys(HOOK_METHODS)
        if hooks is not None:
            for name in HOOK_METHODS:
                method = getattr(hooks, name, None)
                if method is None:
                    continue
                if not callable(method):
                    raise ConfigError(f"hooks.{name} must be callable, got {method!r}")
                if getattr(type(hooks), name, None) is getattr(RaftHooks, name):
                    continue  # RaftHooks' own no-op
                bound[name] = method
        self._entry_digest: Callable[[bytes, Entry], bytes] | None = bound["entry_digest"]
        self._check_chain: Callable[[bytes, Sequence[Entry]], str | None] | None = bound[
            "check_chain"
        ]
        self._sign_append: Callable[[AppendEntries], bytes] | None = bound["sign_append"]
        self._sign_append_response: Callable[[AppendEntriesResponse], bytes] | None = bound[
            "sign_append_response"
        ]
        self._verify_append: Callable[[NodeId, AppendEntries], str | None] | None = bound[
            "verify_append"
        ]
        self._verify_append_response: (
            Callable[[NodeId, AppendEntriesResponse], str | None] | None
        ) = bound["verify_append_response"]
        self._verified: Callable[[NodeId, Any], None] | None = bound["verified"]
        self._replace_entry: Callable[[Entry, Entry], bool] | None = bound["replace_entry"]
        self._kept_on_leading: Callable[[int], int] | None = bound["kept_on_leading"]

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
                raise ConfigError(
                    f"recovered snapshot is a {type(snap).__name__}, not a raft.Snapshot"
                )
            snap_conf = Configuration.from_state(snap)
            problem = snap_conf.problem()
            if problem is not None:
                raise ConfigError(f"recovered snapshot: {problem}")
            # Storage decodes every snapshot as the widest type: rebuild the
            # one this configuration sends (a plain Snapshot when it can).
            snap = snap_conf.snapshot(snap.index, snap.term, snap.data)
            self._log = RaftLog(snap.index, snap.term)
            self._snapshot = snap
            self._confs.append((snap.index, snap_conf, b""))
        else:
            self._confs.append((0, Configuration(voters, learners), b""))
        log = self._log
        expected = log.snapshot_index + 1
        for entry in recovered.entries:
            if entry.index < expected:
                continue
            if entry.index != expected:
                raise ConfigError(
                    f"recovered log has a gap: expected index {expected}, found {entry.index}"
                )
            log.append(entry)
            if entry.kind == _CONFIG:
                try:
                    self._record_conf(entry)
                except LocalProtocolError as exc:
                    raise ConfigError(f"recovered log: {exc}") from None
            expected += 1
        log.stable_from = log.last_index() + 1
        hard = recovered.hard_state
        if hard is None:
            hard = HardState(0, None, 0)
        if not isinstance(hard, HardState):
            raise ConfigError(
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
    def hooks(self) -> RaftHooks | None:
        return self._hooks

    @property
    def quiesced(self) -> bool:
        """True while this node is quiet: no timer armed (``quorate.raft.quiescence``)."""
        return self._quiesced

    @property
    def refused_leaders(self) -> frozenset[NodeId]:
        """Nodes this node neither votes for nor follows (``refuse_leader``)."""
        return self._refused

    @property
    def quorum_rule(self) -> QuorumRule:
        return self._quorum_rule

    @property
    def commit_quorum(self) -> int:
        """Acknowledgements that commit an entry under the current (incoming) voters."""
        return self._commit_quorum

    @property
    def election_quorum(self) -> int:
        """Votes that win an election under the current (incoming) voters."""
        return self._election_quorum

    @property
    def configuration(self) -> Configuration:
        """The configuration in force (``quorate.raft.confchange``)."""
        return self._conf

    @property
    def joint(self) -> bool:
        """True while a joint configuration (thesis §4.3) is in force."""
        return self._joint is not None

    @property
    def voter_quorums(self) -> tuple[VoterQuorum, ...]:
        """Each voter set that must reach a quorum, with its resolved sizes
        (two while joint, incoming first)."""
        return self._voter_quorums

    def configurations(self) -> list[tuple[int, Configuration]]:
        """(index, configuration) of the base configuration and of every
        configuration entry after it in the log."""
        return [(index, conf) for index, conf, _ in self._confs]

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def is_leader(self) -> bool:
        return self._role is LEADER

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
        """Every voter (while joint: of either configuration)."""
        return self._voters

    @property
    def learners(self) -> frozenset[NodeId]:
        return self._learners

    @property
    def members(self) -> frozenset[NodeId]:
        """Voters and learners: every node that receives the log."""
        return self._voters | self._learners

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
        if self._refused and sender in self._refused and cls in _FROM_A_LEADER:
            self._reject(sender, message, "this node refuses the sender as leader")
            return
        if self._quiesced:
            self._on_message_while_quiet(sender, cls)
        if term > self._term:
            if cls is RequestVote or cls is PreVote:
                forced = cls is RequestVote and message.transfer
                if not forced and self._in_leader_lease(now):
                    return  # leader stickiness: a live leader exists
            if cls is PreVote or (cls is PreVoteResponse and message.granted):
                pass  # pre-votes never change our term (thesis §9.6)
            elif cls in _LEADER_TRAFFIC:
                self._become_follower(term, sender, now)
            elif self._role is FOLLOWER or self._role is LEARNER:
                # Figure 2: only a leader's messages or a granted vote reset the
                # election timer. A term bump alone must not, or a node that
                # keeps campaigning (e.g. one removed without knowing it) would
                # hold every follower's timer back forever.
                self._term = term
                self._vote = None
                self._leader = None
                if self._quiesced:
                    self._wake(now)  # our leader's term is over
            else:
                self._become_follower(term, None, now)
        elif term < self._term:
            if cls in _STALE_LEADER_TRAFFIC:
                # A stale leader (e.g. back from a partition) learns the new term
                # and steps down; without this, pre-vote + check-quorum could
                # leave it stuck.
                self._send(sender, self._append_response(0, False))
            elif cls is PreVote:
                self._send(sender, PreVoteResponse(self._term, False))
            return
        if cls is RequestVote or cls is PreVote:
            self._handle_vote_request(sender, message, now)
            return
        handler = self._handlers.get(cls)
        if handler is not None:
            handler(self, sender, message)

    def tick(self, now: float) -> None:
        """Fire due deadlines (election, heartbeat, check-quorum, transfer abort)."""
        self._now = now
        if self._quiesced:
            return  # a quiet node has no deadline (a stale timer event may still call)
        if self._role is LEADER:
            self._tick_leader(now)
        elif now >= self._election_deadline and self._promotable():
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
        self._active_at = now
        if self._quiesced:
            self._wake(now)
        return Accepted(entry.index, entry.term)

    def transfer_leadership(self, target: NodeId, now: float) -> ProposeOutcome:
        """Hand leadership to ``target`` (thesis §3.10)."""
        self._now = now
        if self._role is not LEADER:
            return Redirect(self._leader)
        if target == self._id:
            return Refused("this node is already the leader")
        if target not in self._voters:
            return Refused(f"node {target} is not a voter")
        if self._transfer_target == target:
            return Accepted(self._log.last_index(), self._term)
        self._leader_input(now)
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
        conf = self._conf_at(index)
        term = log.compact(index)
        self._snapshot = conf.snapshot(index, term, data)
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
        """Hand out all pending work (the node treats it as handed out at once).
        ``must_sync`` and ``early_messages`` are set as the module docstring says."""
        now = self._now
        if self._append_pending:
            if self._leave_due:
                self._leave_joint_if_due()
            self._append_pending = False
            if self._role is LEADER:
                self._broadcast_append(now, send_if_empty=False)
        if self._read_round_needed and self._read_round_sent <= self._acked_round:
            # etcd's read-only queue: at most one confirmation round in flight;
            # reads that arrive meanwhile wait for the next single round.
            self._read_round_needed = False
            if self._role is LEADER:
                self._broadcast_heartbeat(now)
        log = self._log
        hard = self._last_hard
        committed = log.committed
        hard_state = None
        term_or_vote_changed = hard.term != self._term or hard.vote != self._vote
        if term_or_vote_changed or hard.commit != committed:
            hard_state = HardState(self._term, self._vote, committed)
            self._last_hard = hard_state
        last = log.snapshot_index + len(log.entries)
        entries = log.take_unstable() if log.stable_from <= last else []
        snapshot = self._snapshot_to_emit
        msgs = self._msgs
        if (
            msgs
            and self._role is LEADER
            and not term_or_vote_changed
            and (not entries or committed < entries[0].index)
        ):
            early = msgs
            msgs = []
        else:
            early = []
        ready = Ready(
            msgs,
            hard_state,
            entries,
            snapshot,
            log.take_committed()
            if (committed if committed < last else last) > log.emitted_commit
            else [],
            self._reads,
            self._wake_at(),
            self._rejected,
            bool(entries) or snapshot is not None or term_or_vote_changed,
            early,
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
        if self._quiesced:
            return None
        if self._role is LEADER:
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
        if self._id in self._voters:
            return True
        # Thesis §4.2.2: a server outside its latest configuration still
        # campaigns while that configuration is uncommitted (it may be needed
        # to commit it); it does not count its own vote (_poll_result counts
        # the latest configuration's voters only).
        confs = self._confs
        committed = self._log.committed
        if confs[-1][0] <= committed:
            return False
        for index, conf, _ in reversed(confs):
            if index <= committed:
                return self._id in conf.all_voters
        return False

    def _reset_election_timer(self, now: float) -> None:
        timeout = self._config.election_timeout_s
        self._randomized_timeout_s = timeout + self._rng.random() * timeout
        self._election_deadline = now + self._randomized_timeout_s

    def _follower_role(self) -> Role:
        if self._id not in self._voters and self._id in self._learners:
            return LEARNER
        return FOLLOWER

    def _become_follower(self, term: int, leader: NodeId | None, now: float) -> None:
        if term != self._term:
            self._term = term
            self._vote = None
        self._leader = leader
        self._role = self._follower_role()
        self._handlers = self._follower_handlers
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
        self._quiesced = False

    def _become_leader(self, now: float) -> None:
        log = self._log
        if self._kept_on_leading is not None:
            self._trim_for_leading()
        self._role = LEADER
        self._leader = self._id
        self._handlers = self._leader_handlers
        self._votes = {}
        self._heartbeat_round = 0
        self._acked_round = 0
        self._read_round_sent = 0
        self._round_sent_at = {}
        self._round_acks = {}
        self._above_commit = 0
        self._lease_expiry = NEVER
        self._lease_forfeited = False
        self._quiesced = False
        self._active_at = now
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

    def _trim_for_leading(self) -> None:
        """Drop the suffix the hooks' ``kept_on_leading`` leaves out (never a
        committed entry, never a configuration entry)."""
        log = self._log
        last = log.last_index()
        assert self._kept_on_leading is not None
        keep = max(self._kept_on_leading(last), log.committed, self._confs[-1][0], log.snapshot_index)
        if keep < last:
            log.truncate_after(keep)

    def _tick_leader(self, now: float) -> None:
        config = self._config
        if now >= self._heartbeat_deadline:
            self._heartbeat_deadline = now + config.heartbeat_interval_s
            if config.quiesce_after_s and self._quiesce_if_idle(now):
                return
            self._read_round_needed = False
            self._broadcast_heartbeat(now, periodic=True)
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
        if self._joint is not None:
            progress = self._progress
            me = self._id
            for voters, commit, _ in self._joint:
                active = sum(
                    1
                    for v in voters
                    if v == me or ((pr := progress.get(v)) is not None and pr.recent_active)
                )
                if active < commit:
                    return False
            return True
        active = 1 if self._id in self._voters else 0
        for peer in self._voters:
            pr = self._progress.get(peer)
            if pr is not None and pr.recent_active:
                active += 1
        return active >= self._commit_quorum

    def _refuse_proposal(self) -> ProposeOutcome | None:
        if self._role is not LEADER:
            if self._quiesced:
                # A client could not reach the leader through us: if it is gone,
                # our election timer must run again.
                self._wake(self._now)
            return Redirect(self._leader)
        if self._transfer_target is not None:
            return Refused(f"leadership is being transferred to node {self._transfer_target}")
        return None

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


_HANDLER_TABLES: dict[type, tuple[dict[type, Handler], dict[type, Handler], dict[type, Handler]]] = {}


def _handler_tables(
    cls: type[RaftNode],
) -> tuple[dict[type, Handler], dict[type, Handler], dict[type, Handler]]:
    """The (follower, candidate, leader) handler tables of ``cls``: its own
    methods, looked up on the class, so a subclass's override is the one called.

    Built once per class and shared by its nodes. Tables of methods *bound* to
    each node would make every node a reference cycle (node -> table -> bound
    method -> node), freed only by the cyclic garbage collector, with its whole
    log: measured, +5 us per 64-entry AppendEntries in ``quorate bench sim``'s
    cost model, and more memory per group on a host with thousands of groups."""
    tables = _HANDLER_TABLES.get(cls)
    if tables is None:
        on_append = cls._on_append_entries
        on_heartbeat = cls._on_heartbeat
        follower: dict[type, Handler] = {
            AppendEntries: on_append,
            SignedAppendEntries: on_append,
            Heartbeat: on_heartbeat,
            QuiesceHeartbeat: cls._on_quiesce_heartbeat,
            InstallSnapshot: cls._on_install_snapshot,
            InstallConfiguredSnapshot: cls._on_install_snapshot,
            TimeoutNow: cls._on_timeout_now,
        }
        on_vote = cls._on_vote_response
        candidate: dict[type, Handler] = {
            **dict.fromkeys(_LEADER_TRAFFIC, cls._on_leader_traffic_as_candidate),
            PreVoteResponse: on_vote,
            RequestVoteResponse: on_vote,
        }
        leader: dict[type, Handler] = {
            AppendEntriesResponse: cls._on_append_response,
            SignedAppendEntriesResponse: cls._on_append_response,
            HeartbeatResponse: cls._on_heartbeat_response,
            **dict.fromkeys(_LEADER_TRAFFIC, cls._on_leader_traffic_same_term),
        }
        tables = _HANDLER_TABLES[cls] = (follower, candidate, leader)
    return tables
