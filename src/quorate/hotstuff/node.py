"""A chained HotStuff replica as a sans-IO state machine.

Theory of operation (Yin, Malkhi, Reiter, Gueta, Abraham, "HotStuff: BFT
Consensus with Linearity and Responsiveness", PODC 2019, §5 and Algorithm 3):

- **Chain.** The leader of view ``v`` proposes a block extending the block
  of its highest QC (``high_qc``), which the block carries as ``justify``.
  Every replica that accepts the proposal votes for it *to the leader of
  view v + 1*, which aggregates 2f + 1 votes into a QC and carries it in its
  own proposal: one phase per view, and each QC advances the pipeline of the
  three-phase protocol by one step.
- **Lock (safeNode, Algorithm 1/3).** A replica votes for block ``b`` in view
  ``v`` only if ``v`` is above every view it voted in, and ``b`` extends the
  block of its ``locked_qc`` or ``b.justify`` is newer than the lock. On
  accepting ``b*`` with ``b'' = b*.justify.block``, ``b' = b''.justify.block``
  it locks on ``b''.justify`` (the QC on ``b'``) if newer: the 2-chain rule.
  The same update runs on every verified QC a replica learns (from votes,
  NewViews, SyncInfo), so one that missed a proposal still locks and commits.
- **Commit (3-chain).** With ``b = b'.parent``: if ``b <- b' <- b''`` were
  proposed in *consecutive views* (the paper's direct-parent chain, whose
  heights equal views), ``b`` and its ancestors are committed; direct parents
  in non-consecutive views are not enough. Only blocks extending the last
  committed block (``root``) are kept, so commits extend each other by
  construction (``invariant`` re-checks it).
- **Leaders (``quorate.hotstuff.reputation``).** Leaders take turns of
  ``views_per_leader`` consecutive views (see ``HotStuffConfig``), round-robin
  over a *leader set* that the committed chain chooses, after DiemBFT's and
  Aptos' leader reputation: replicas the chain shows proposing or voting
  stay in, leaders whose views failed (each block names them, and its
  voters check the list) and replicas that said nothing drop out, so a
  silent, convicted or failing leader stops costing a view timeout per
  turn. Safety never depends on who leads (a replica votes once per view);
  a replica whose sets disagree with its peers' loses views, not safety.
- **Pacemaker (§4.4, view synchronisation after DiemBFT).** A replica that
  expects progress (it knows of commands not yet committed, an uncommitted
  block with commands, or blocks it still has to fetch) arms a view timer;
  an idle cluster arms none. On expiry it broadcasts a ``NewView`` carrying
  its highest QC and TC, for the first view of the next leader's turn
  (``reputation.timeout_target``: one timeout skips the rest of a failed
  turn, and after a turn's last view also the next turn, whose leader
  collects that view's votes), and re-sends it every ``view_timeout_s``
  until a certificate moves it on. The timeout doubles only after a whole
  rotation of the leader set failed in a row (it holds a correct leader, so
  the network, not a faulty leader, is too slow for the timeout), up to
  ``max_view_timeout_s``, and a new QC resets it. 2f + 1 NewViews for one
  view form a ``TimeoutCertificate``; any QC for ``v - 1`` or TC for ``v``
  moves a replica into ``v``. f + 1 NewViews for the view we would ask for
  make a replica join early (one of them is honest), and a NewView for a
  view we already passed, or with a lower QC than ours, or one that arrives
  while we expect nothing, is answered with our certificates (``SyncInfo``,
  which also carries the QC that committed our root), so honest replicas
  converge on one view and one committed root once the network is stable.
  Only certificates change the view, so every honest replica's view is
  justified by certificates it can show. Skipping views is safe: the vote
  and lock rules compare views but never need consecutive ones, and a view
  no honest replica entered holds none of their votes, so no QC.
- **Start-up sync.** A replica that starts, whether from its disk or from
  nothing (an empty disk after a crash looks exactly like a first boot),
  sends every peer a ``SyncRequest`` and keeps its timer armed, re-asking
  those that did not answer every ``view_timeout_s``, until the
  ``SyncInfo`` answers of ``quorum - 1`` peers are in (with itself, a
  quorum: f silent peers cannot hold it up). The answers' certificates move
  its view, and their blocks are fetched, so a replica restarted while the
  cluster is idle still learns what was committed: nobody else would send
  it anything. A first boot pays one request and one answer per pair. (A
  replica that lost its disk also lost the record of its votes: until its
  view passes those it voted in, it counts against f.)
- **Commands.** A client command given to a replica is forwarded to the
  leaders of this view and the next (a leader omits commands already in its
  uncommitted chain). Every replica that knows a command watches it until it
  is committed; on a timeout a replica re-sends its own clients' commands to
  all replicas, so every honest replica times out a leader that ignores them.
  With ``forward_commands`` off (clients that send every command to every
  replica) nothing is forwarded: each leader proposes from its own queue.
- **Checking votes together** (``batch_verify_votes``). A collecting leader
  keeps votes for a block it has seen proposed unchecked until a quorum is
  in, then checks them as one aggregate (``QuorumSigner.certify``); only if
  that fails is each checked on its own, the bad ones dropped and their
  senders checked one by one from then on. A vote is recorded as a
  statement (equivocation) only once checked.
- **Fetching.** A proposal whose parent is unknown waits while the missing
  ancestors are fetched by hash from its sender (re-asked of a random QC
  signer on each timeout); a hash pins a block's content. Its leader is
  judged once the chain is in: the missing blocks may commit blocks that
  change the leader set.
- **Equivocation.** Proposals and votes are ``quorate.core.evidence``
  statements; two for one view are evidence, broadcast to all and checked by
  each replica, which then excludes the offender. A vote carries the leader's
  proposal signature so the collector sees a leader that showed different
  blocks to different replicas.

Output: every committed block's commands come out in ``Ready.committed`` as
``Entry(term=view, index=i, kind=ENTRY_NORMAL, data=command)``, ``i``
contiguous from 1 on every honest replica (blocks without commands emit
nothing). The same entries are in ``Ready.entries`` to be made durable.

Durability: ``HardState`` (view, last voted view, locked and high QC, the
committed root and the QC that committed it, the leader reputation) is in
the ``Ready`` of any vote or NewView it covers, so the
runtime persists it first; a replica rebuilt from it never signs two votes
in one view and never unlocks. Blocks and commands waiting to be ordered are
not durable: a restarted replica fetches its chain again, and clients retry
commands a crashed replica had queued.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from quorate.core.evidence import Evidence, EvidencePool, SignedStatement, statement_bytes
from quorate.core.protocol import ProposeOutcome, Queued, Refused
from quorate.core.quorum import bft_quorum, max_faulty
from quorate.core.ready import ENTRY_NORMAL, Entry, Ready, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.errors import ConfigError, invariant
from quorate.hotstuff.config import HotStuffConfig
from quorate.hotstuff.messages import (
    GENESIS_HASH,
    GENESIS_QC,
    PROPOSAL_KIND,
    VOTE_KIND,
    Block,
    BlockRequest,
    BlockResponse,
    Forward,
    HardState,
    NewView,
    Proposal,
    QuorumCertificate,
    ReputationState,
    SyncInfo,
    SyncRequest,
    TimeoutCertificate,
    Vote,
    block_hash,
    newview_bytes,
    vote_bytes,
)
from quorate.hotstuff.qc import IndividualSignatures, QuorumSigner, decode_signers
from quorate.hotstuff.reputation import LeaderReputation, timeout_target
from quorate.ids import NodeId

__all__ = ["HotStuffReplica"]

MAX_BACKOFF_DOUBLINGS = 32
"""Cap on the back-off exponent (the timeout is capped by the config anyway)."""
CACHE_PRUNE_SIZE = 4096
"""Verified-certificate caches are pruned below the committed view past this size."""
EVIDENCE_PRUNE_VIEWS = 256
"""Equivocation slots older than this many views below the root are forgotten."""
FORWARD_MAX_BATCHES = 4
"""A ``Forward`` carries at most this many blocks' worth of commands."""
ORPHAN_LIMIT_FETCHES = 4
"""Blocks waiting for a missing parent are capped at this many fetches' worth."""
REFETCH_MAX_HASHES = 4
"""Missing parents re-requested per timeout."""
SYNC_ANSWER_INTERVAL_FRACTION = 0.5
"""A peer's ``SyncRequest`` is answered at most once per this fraction of the view timeout."""

_hard_state_decoder = msgspec.msgpack.Decoder(HardState)


class RecoveredState(Protocol):
    """What a restart hands the replica (``quorate.storage.Recovered`` is one):
    its last persisted ``HardState`` (or its msgpack encoding, or ``None``)
    and the committed entries it persisted."""

    @property
    def hard_state(self) -> Any: ...

    @property
    def entries(self) -> list[Entry]: ...


class HotStuffReplica:
    """One chained-HotStuff replica (see the module docstring)."""

    def __init__(
        self,
        id: NodeId,
        replicas: Sequence[NodeId],
        *,
        config: HotStuffConfig,
        signer: Signer,
        verifier: Verifier,
        rng: random.Random,
        now: float,
        recovered: RecoveredState | None = None,
        quorum_signer: QuorumSigner | None = None,
    ) -> None:
        self.config = config.validate()
        order = tuple(NodeId(r) for r in replicas)
        if len(set(order)) != len(order) or not order:
            raise ConfigError(f"replicas must be distinct and non-empty, got {list(replicas)}")
        if any(r < 0 for r in order):
            raise ConfigError("replica ids must be >= 0 (they index the signer bitmap)")
        if id not in order:
            raise ConfigError(f"replica {id} is not in the replica set {list(order)}")
        if signer.node != id:
            raise ConfigError(f"the signer holds node {signer.node}'s key, not node {id}'s")
        self._id = NodeId(id)
        self.replicas = order
        self._replica_set = frozenset(order)
        self._others = tuple(r for r in order if r != id)
        self.n = len(order)
        self.f = max_faulty(self.n)
        self.quorum = bft_quorum(self.n)
        self._max_bitmap_bytes = max(order) // 8 + 1
        self.signer = signer
        self.verifier = verifier
        self.rng = rng
        self.quorum_signer: QuorumSigner = quorum_signer or IndividualSignatures(verifier)
        self.evidence = EvidencePool(verifier)
        self.reputation = self._new_reputation(None)
        self._now = now

        # Protocol state (durable parts mirrored in HardState).
        self.view = 1
        self.last_voted_view = 0
        self.last_newview = 0
        self.locked_qc = GENESIS_QC
        self.high_qc = GENESIS_QC
        self.high_tc: TimeoutCertificate | None = None
        self.commit_qc = GENESIS_QC
        """The QC whose 3-chain committed the root."""
        self._commit_qc_wanted: QuorumCertificate | None = None
        """A peer's commit QC whose block we are fetching."""
        self.root_hash = GENESIS_HASH
        self.root_view = 0
        self.root_height = 0
        self.committed_index = 0

        # Blocks: only those extending the root are kept ("connected").
        self._blocks: dict[bytes, Block] = {}
        self._by_height: dict[int, list[bytes]] = {}
        self._open_commands: set[bytes] = set()
        self._committed_hashes: deque[bytes] = deque()
        self._orphans: dict[bytes, dict[bytes, Block]] = {}
        self._orphan_count = 0
        self._wanted: dict[bytes, float] = {}
        self._awaiting: dict[bytes, Proposal] = {}

        # Certificates and their inputs.
        self._verified_qcs: set[tuple[int, bytes]] = {(0, GENESIS_HASH)}
        self._verified_tcs: set[int] = set()
        self._seen_proposals: set[tuple[int, bytes]] = set()
        self._votes: dict[tuple[int, bytes], dict[NodeId, bytes]] = {}
        self._unchecked: dict[tuple[int, bytes], set[NodeId]] = {}
        """Voters in ``_votes`` whose signatures are not checked yet (``batch_verify_votes``)."""
        self._suspects: set[NodeId] = set()
        """Replicas that sent a vote with a bad signature: their votes are checked one by one."""
        self._newviews: dict[int, dict[NodeId, bytes]] = {}
        self._synced: dict[NodeId, tuple[int, float]] = {}
        self._sync_requests_answered: dict[NodeId, float] = {}
        """When we last answered each peer's ``SyncRequest`` (answers are rate-limited)."""
        self._sync_answers: set[NodeId] | None = None
        """Peers whose ``SyncInfo`` answered our start-up sync; None once enough did."""
        self._evidence_forgotten_view = 0

        # Commands: ``_pending`` are our clients' (kept until committed, sent
        # to every replica on a timeout); ``_queue`` are those we may put in a
        # block as leader; ``_watch`` are all we know of and expect to see
        # committed (they keep the view timer armed, so a faulty leader that
        # ignores them is replaced).
        self._pending: dict[bytes, None] = {}
        self._queue: dict[bytes, None] = {}
        self._watch: dict[bytes, None] = {}
        # Recently committed commands, so a late Forward does not order one
        # again. Bounded; only proposals consult it, never the commit path, so
        # replicas that remember different windows still commit the same log
        # (the state machine's client sequence numbers give exactly-once).
        self._recently_committed: dict[bytes, None] = {}

        # Pacemaker.
        self._deadline: float | None = None
        self._failed_views = 0
        """Views we timed out in since our high QC last rose."""
        self._timed_out_view = 0
        """The view our timer last fired in (re-firing there only re-sends)."""

        # Output.
        self._messages: list[tuple[NodeId, Any]] = []
        self._committed: list[Entry] = []
        self._replay: list[Entry] = []
        """Recovered committed entries for the state machine, not yet handed over."""
        self._rejected: list[Rejection] = []
        self._dirty = False
        self.excluded_dropped = 0
        """Messages dropped because their sender was excluded for equivocation."""

        self._handlers: dict[type, Callable[[NodeId, Any], None]] = {
            Proposal: self._on_proposal,
            Vote: self._on_vote,
            NewView: self._on_newview,
            SyncInfo: self._on_sync_info,
            SyncRequest: self._on_sync_request,
            BlockRequest: self._on_block_request,
            BlockResponse: self._on_block_response,
            Forward: self._on_forward,
            Evidence: self._on_evidence,
        }
        if recovered is not None and recovered.hard_state is not None:
            self._restore(recovered.hard_state, recovered.entries)
        if self.config.startup_sync:
            self._start_sync()

    # ------------------------------------------------------------------ contract

    @property
    def id(self) -> NodeId:
        return self._id

    def leader(self, view: int) -> NodeId:
        """The leader of ``view``: the members of the leader set in force at
        ``view`` take turns, ``config.views_per_leader`` consecutive views
        each (every replica, in the configured order, until the committed
        chain says otherwise: ``quorate.hotstuff.reputation``)."""
        return self.reputation.leader(view)

    def _new_reputation(self, state: ReputationState | None) -> LeaderReputation:
        return LeaderReputation(
            self.replicas,
            views_per_leader=self.config.views_per_leader,
            epoch_blocks=self.config.reputation_epoch_blocks,
            minimum=self.quorum,
            enabled=self.config.leader_reputation,
            state=state,
        )

    @property
    def detections(self) -> list[tuple[NodeId, str, int, int]]:
        """(offender, statement kind, view, round) of every equivocation convicted."""
        return [
            (ev.offender, ev.first.kind, ev.first.height, ev.first.round)
            for ev in self.evidence.detections
        ]

    @property
    def excluded(self) -> frozenset[NodeId]:
        return frozenset(self.evidence.excluded)

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        """Handle a peer's message; bad input is dropped with a ``Rejection``."""
        if now > self._now:
            self._now = now
        handler = self._handlers.get(type(message))
        if handler is None:
            self._reject(sender, message, "unknown message type")
            return
        if sender not in self._replica_set:
            self._reject(sender, message, "sender is not a replica")
            return
        if sender == self._id:
            self._reject(sender, message, "message from ourselves")
            return
        if sender in self.evidence.excluded:
            self.excluded_dropped += 1
            self._reject(sender, message, "excluded")
            return
        handler(sender, message)
        self._arm_timer()

    def tick(self, now: float) -> None:
        if now > self._now:
            self._now = now
        if self._deadline is not None and self._now >= self._deadline:
            self._on_timeout()
        self._arm_timer()

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        if now > self._now:
            self._now = now
        if len(command) > self.config.max_command_bytes:
            return Refused(f"command of {len(command)} bytes exceeds max_command_bytes")
        if command in self._pending:
            return Refused("duplicate: the command is already waiting to be ordered")
        if command in self._recently_committed:
            return Refused("duplicate: the command was committed already")
        if len(self._pending) >= self.config.max_pending_commands:
            return Refused("busy: too many commands waiting to be ordered; retry later")
        self._pending[command] = None
        self._watch[command] = None
        if not self.config.forward_commands:
            # Our clients send every replica the command: the leaders have it.
            self._queue[command] = None
            self._try_propose()
            self._arm_timer()
            return Queued(self.view)
        forward = Forward((command,))
        for target in self._order_targets():
            if target == self._id:
                self._queue[command] = None
                self._try_propose()
            else:
                self._messages.append((target, forward))
        self._arm_timer()
        return Queued(self.view)

    def has_ready(self) -> bool:
        return bool(self._messages or self._committed or self._replay or self._rejected or self._dirty)

    def ready(self) -> Ready:
        """Hand over the queued work (the core forgets it: carry it out)."""
        committed = self._committed
        entries = list(committed)
        if self._replay:
            committed = self._replay + committed
            self._replay = []
        ready = Ready(
            messages=self._messages,
            hard_state=self._hard_state() if self._dirty else None,
            entries=entries,
            committed=committed,
            wake_at=self._deadline,
            rejected=self._rejected,
        )
        self._messages = []
        self._committed = []
        self._rejected = []
        self._dirty = False
        return ready

    def advance(self, ready: Ready) -> None:
        """Nothing to do: ``ready()`` already handed the work over."""

    # ------------------------------------------------------------------ durable state

    def _hard_state(self) -> HardState:
        return HardState(
            view=self.view,
            last_voted_view=self.last_voted_view,
            locked_qc=self.locked_qc,
            high_qc=self.high_qc,
            root_hash=self.root_hash,
            root_view=self.root_view,
            root_height=self.root_height,
            committed_index=self.committed_index,
            last_newview=self.last_newview,
            high_tc=self.high_tc,
            commit_qc=self.commit_qc,
            reputation=self.reputation.state() if self.config.leader_reputation else None,
        )

    def _restore(self, raw: Any, entries: Sequence[Entry]) -> None:
        hs = raw if isinstance(raw, HardState) else _hard_state_decoder.decode(raw)
        # The state machine is volatile: hand it every committed entry again,
        # once, in the first Ready (they are on disk already, so they go out
        # as ``committed`` only). Entries and the hard state that counts them
        # are written in one persist call, so the log holds exactly
        # ``committed_index`` entries; a shorter log is a broken disk.
        replay = [e for e in entries if e.index <= hs.committed_index]
        invariant(
            [e.index for e in replay] == list(range(1, hs.committed_index + 1)),
            f"replica {self._id}: the recovered log does not hold committed entries "
            f"1..{hs.committed_index} (found {len(replay)})",
        )
        self._replay = replay
        for entry in replay[-self.config.max_pending_commands:]:
            self._recently_committed[entry.data] = None
        self.view = hs.view
        self.last_voted_view = hs.last_voted_view
        self.last_newview = hs.last_newview
        self.locked_qc = hs.locked_qc
        self.high_qc = hs.high_qc
        self.root_hash = hs.root_hash
        self.root_view = hs.root_view
        self.root_height = hs.root_height
        self.committed_index = hs.committed_index
        self.high_tc = hs.high_tc
        if hs.high_tc is not None:
            self._verified_tcs.add(hs.high_tc.view)
        if hs.commit_qc is not None:
            self.commit_qc = hs.commit_qc
            self._verified_qcs.add((hs.commit_qc.view, hs.commit_qc.block_hash))
        # The leader sets as of our committed root. A state saved without
        # them starts from every replica and may disagree with the peers'
        # sets: that costs views, not safety.
        self.reputation = self._new_reputation(hs.reputation)
        # Only certificates move the view, so peers accept the view we resume
        # in only if ours justify it (a state written before high_tc was kept
        # resumes in the view its high QC justifies).
        justified = max(hs.high_qc.view + 1, hs.high_tc.view if hs.high_tc is not None else 0)
        self.view = max(1, min(hs.view, justified))
        # Our own disk is trusted: these were verified before they were saved.
        self._verified_qcs.add((hs.locked_qc.view, hs.locked_qc.block_hash))
        self._verified_qcs.add((hs.high_qc.view, hs.high_qc.block_hash))
        # Our blocks were in memory: fetch the chain up to our high QC now
        # (the start-up sync asks the peers for what came after it).
        self._refetch()

    # ------------------------------------------------------------------ proposals

    def _on_proposal(self, sender: NodeId, p: Proposal) -> None:
        b = p.block
        if b.proposer != sender:
            self._reject(sender, p, "claimed proposer is not the sender")
            return
        if b.view < 1:
            self._reject(sender, p, "invalid view")
            return
        if b.view < self.view:
            self._reject(sender, p, "stale view")
            return
        if len(b.commands) > self.config.batch_max or any(
            len(c) > self.config.max_command_bytes for c in b.commands
        ):
            self._reject(sender, p, "oversize block")
            return
        j = b.justify
        if j.block_hash != b.parent_hash or not 0 <= j.view < b.view or b.height < 1:
            self._reject(sender, p, "justify does not certify the parent")
            return
        # Who leads a view depends on what we committed; a proposal whose
        # parent we lack, or whose QC is newer than ours, may teach us commits
        # that change it, so its leader is judged once its chain is in.
        behind = j.view > self.high_qc.view or not self._parent_known(b.parent_hash)
        if not behind and sender != self.leader(b.view):
            self._reject(sender, p, "sender is not the leader of the view")
            return
        h = block_hash(b)
        statement = SignedStatement(int(sender), PROPOSAL_KIND, b.view, 0, h, p.signature)
        if not self.verifier.verify(sender, statement.signed_bytes(), p.signature):
            self._reject(sender, p, "bad signature")
            return
        self._seen_proposals.add((b.view, h))
        if self._observe(statement):
            self._reject(sender, p, "equivocation")
            return
        if not self._check_qc(j):
            self._reject(sender, p, "invalid QC")
            return
        tc = p.tc
        if j.view != b.view - 1 and (tc is None or tc.view != b.view or not self._check_tc(tc)):
            self._reject(sender, p, "view not justified by a QC or TC")
            return
        self._on_qc(j)
        if tc is not None and j.view != b.view - 1:
            self._on_tc(tc)
        if b.view != self.view:
            # Certificates moved us past the proposal's view meanwhile.
            self._reject(sender, p, "stale view")
            return
        if self._parent_known(b.parent_hash):
            if sender != self.leader(b.view):
                self._reject(sender, p, "sender is not the leader of the view")
                return
            if self._add_block(b, h):
                self._process_proposal(b, h, p.signature)
            return
        # The leader is checked again when the missing ancestors connect it.
        self._add_block(b, h)
        self._awaiting[h] = p
        self._request_ancestors(b.parent_hash, sender)

    def _process_proposal(self, b: Block, h: bytes, proposer_signature: bytes) -> None:
        """``b`` is connected and was proposed in the current view: update the
        lock and commits from its chain, and vote if safe."""
        self._update_chain(b)
        if b.view != self.view:
            return
        if b.failed_leaders != self._expected_failed_leaders(b):
            self._reject(NodeId(b.proposer), b, "failed leaders do not match ours")
            return
        if b.view > self.last_voted_view and self._safe_node(b, h):
            self.last_voted_view = b.view
            self._dirty = True
            signature = self.signer.sign(vote_bytes(b.view, h))
            vote = Vote(b.view, h, int(self._id), signature, proposer_signature)
            collector = self.leader(b.view + 1)
            if collector == self._id:
                self._on_vote(self._id, vote)
            else:
                self._messages.append((collector, vote))
        # The view only changes on a certificate (QC for it, or TC for the
        # next), so every honest replica's view is justified to the others.

    def _expected_failed_leaders(self, b: Block) -> bytes:
        """What ``b`` must record as failed leaders, by our leader sets."""
        parent = self._blocks.get(b.parent_hash)
        if parent is not None:
            return self.reputation.failed_leaders(parent.view, parent.proposer, b.view)
        # Connected blocks extend a known block or the root.
        return self.reputation.failed_leaders(self.root_view, self.reputation.root_proposer, b.view)

    def _safe_node(self, b: Block, h: bytes) -> bool:
        """safeNode: ``b`` extends the locked block, or its justify is newer."""
        locked = self.locked_qc
        if b.justify.view > locked.view:
            return True
        target = locked.block_hash
        current_hash: bytes = h
        current: Block | None = b
        # Views strictly decrease down a chain, so stop once below the lock.
        while True:
            if current_hash == target:
                return True
            if current is None or current.view <= locked.view:
                return False
            current_hash = current.parent_hash
            current = self._blocks.get(current_hash)

    def _update_chain(self, b: Block) -> None:
        """The paper's ``update(b*)``: the lock and commit rules on ``b*.justify``."""
        self._update_from_qc(b.justify)

    def _update_from_qc(self, qc: QuorumCertificate) -> None:
        """The lock (2-chain) and commit (3-chain) rules for a verified QC on
        ``b2``, with ``b1 = b2.parent`` and ``b0 = b1.parent``. Applied to every
        QC we learn, not only those inside proposals, so a replica that missed
        a proposal still commits from the QC a peer sends it."""
        b2 = self._blocks.get(qc.block_hash)
        if b2 is None:
            return
        if b2.justify.view > self.locked_qc.view:
            self.locked_qc = b2.justify
            self._dirty = True
        b1 = self._blocks.get(b2.parent_hash)
        if b1 is None:
            return
        b0 = self._blocks.get(b1.parent_hash)
        if b0 is None or b0.height <= self.root_height:
            return
        if b2.view == b1.view + 1 and b1.view == b0.view + 1:
            self._commit(b1.parent_hash, b0, qc.view)
            if qc.view > self.commit_qc.view:
                self.commit_qc = qc

    def _commit(self, h: bytes, b: Block, trigger_view: int) -> None:
        """Commit ``b`` (hash ``h``) and its uncommitted ancestors, on the QC
        of ``trigger_view``."""
        chain: list[tuple[bytes, Block]] = []
        current_hash, current = h, b
        while current.height > self.root_height:
            chain.append((current_hash, current))
            current_hash = current.parent_hash
            parent = self._blocks.get(current_hash)
            if parent is None:
                break
            current = parent
        invariant(
            current_hash == self.root_hash,
            f"replica {self._id}: committed block at height {b.height} does not extend "
            f"the committed root at height {self.root_height}",
        )
        old_root_height = self.root_height
        committed = set()
        for block_h, block in reversed(chain):
            committed.add(block_h)
            self.reputation.on_commit(
                block.view, block.height, block.proposer, block.justify.signers, block.failed_leaders, trigger_view
            )
            for command in block.commands:
                self.committed_index += 1
                self._committed.append(Entry(block.view, self.committed_index, ENTRY_NORMAL, command))
                self._pending.pop(command, None)
                self._queue.pop(command, None)
                self._watch.pop(command, None)
                self._recently_committed[command] = None
            self._open_commands.discard(block_h)
            self._committed_hashes.append(block_h)
        self.root_hash, self.root_view, self.root_height = h, b.view, b.height
        self._dirty = True
        excess = len(self._recently_committed) - self.config.max_pending_commands
        if excess > 0:
            for command in list(itertools.islice(self._recently_committed, excess)):
                del self._recently_committed[command]
        self._prune(old_root_height, committed)

    def _prune(self, old_root_height: int, committed: set[bytes]) -> None:
        """Drop forks at or below the new root and old committed blocks."""
        for height in range(old_root_height + 1, self.root_height + 1):
            for h in self._by_height.pop(height, ()):
                if h not in committed:
                    self._blocks.pop(h, None)
                    self._open_commands.discard(h)
                    self._awaiting.pop(h, None)
        while len(self._committed_hashes) > self.config.retained_blocks:
            self._blocks.pop(self._committed_hashes.popleft(), None)
        if self._orphans:
            for parent in [p for p, kids in self._orphans.items()
                           if all(k.height <= self.root_height for k in kids.values())]:
                self._orphan_count -= len(self._orphans.pop(parent))
        if len(self._verified_qcs) > CACHE_PRUNE_SIZE:
            keep = {(self.locked_qc.view, self.locked_qc.block_hash),
                    (self.high_qc.view, self.high_qc.block_hash)}
            self._verified_qcs = {k for k in self._verified_qcs
                                  if k[0] >= self.root_view or k in keep}
        if len(self._seen_proposals) > CACHE_PRUNE_SIZE:
            self._seen_proposals = {k for k in self._seen_proposals if k[0] >= self.root_view}
        if len(self._verified_tcs) > CACHE_PRUNE_SIZE:
            self._verified_tcs = {v for v in self._verified_tcs if v >= self.root_view}
        if self.root_view - self._evidence_forgotten_view > 2 * EVIDENCE_PRUNE_VIEWS:
            self._evidence_forgotten_view = self.root_view - EVIDENCE_PRUNE_VIEWS
            self.evidence.forget_below(self._evidence_forgotten_view)

    # ------------------------------------------------------------------ blocks

    def _add_block(self, b: Block, h: bytes) -> bool:
        """Store ``b`` if it extends the root; True when it is connected."""
        if h in self._blocks:
            return True
        if not self._parent_known(b.parent_hash):
            if self._orphan_count < ORPHAN_LIMIT_FETCHES * self.config.fetch_max_blocks:
                kids = self._orphans.setdefault(b.parent_hash, {})
                if h not in kids:
                    kids[h] = b
                    self._orphan_count += 1
            return False
        connected = self._connect(b, h)
        stack = [h] if connected else []
        while stack:
            parent = stack.pop()
            kids = self._orphans.pop(parent, {})
            if not kids:
                continue
            self._orphan_count -= len(kids)
            for kid_h, kid in kids.items():
                if self._connect(kid, kid_h):
                    stack.append(kid_h)
        return connected

    def _parent_known(self, parent_hash: bytes) -> bool:
        return parent_hash in self._blocks or parent_hash == self.root_hash

    def _connect(self, b: Block, h: bytes) -> bool:
        parent = self._blocks.get(b.parent_hash)
        if parent is not None:
            parent_height, parent_view = parent.height, parent.view
        elif b.parent_hash == self.root_hash:
            parent_height, parent_view = self.root_height, self.root_view
        else:
            return False  # its parent was pruned as a fork of the committed chain
        if b.height != parent_height + 1 or b.height <= self.root_height or b.view <= parent_view:
            return False
        self._blocks[h] = b
        self._by_height.setdefault(b.height, []).append(h)
        self._wanted.pop(h, None)
        if b.commands:
            self._open_commands.add(h)
        waiting = self._awaiting.pop(h, None)
        if waiting is not None and b.view == self.view and self.leader(b.view) == b.proposer:
            self._process_proposal(b, h, waiting.signature)
        else:
            self._update_chain(b)
        if self.high_qc.block_hash == h:
            self._update_from_qc(self.high_qc)
            self._try_propose()
        wanted = self._commit_qc_wanted
        if wanted is not None and wanted.block_hash == h:
            self._commit_qc_wanted = None
            self._update_from_qc(wanted)
        return True

    def _request_ancestors(self, missing: bytes, source: NodeId) -> None:
        asked_at = self._wanted.get(missing)
        if asked_at is not None and self._now - asked_at < self.config.view_timeout_s:
            return  # asked recently; a lost request is retried after a view timeout
        if asked_at is None and len(self._wanted) >= self.config.fetch_max_blocks:
            del self._wanted[next(iter(self._wanted))]
        self._wanted[missing] = self._now
        self._messages.append((source, BlockRequest(missing, self.config.fetch_max_blocks)))

    def _refetch(self) -> None:
        """Ask again, from a random signer of the QC, for blocks still missing
        (a request or answer was lost, or its source is faulty)."""
        qc = self.high_qc
        if qc.view > self.root_view and not self._parent_known(qc.block_hash):
            signers = [n for n in decode_signers(qc.signers) if n != self._id]
            if signers:
                self._wanted.pop(qc.block_hash, None)
                self._request_ancestors(qc.block_hash, self.rng.choice(signers))
        missing_parents = [p.block.parent_hash for p in self._awaiting.values()]
        missing_parents += list(self._orphans)
        for missing in missing_parents[:REFETCH_MAX_HASHES]:
            if not self._parent_known(missing) and self._others:
                self._wanted.pop(missing, None)
                self._request_ancestors(missing, self.rng.choice(self._others))

    def _on_block_request(self, sender: NodeId, req: BlockRequest) -> None:
        count = min(max(req.count, 1), self.config.fetch_max_blocks)
        blocks: list[Block] = []
        block = self._blocks.get(req.block_hash)
        while block is not None and len(blocks) < count:
            blocks.append(block)
            block = self._blocks.get(block.parent_hash)
        if blocks:
            self._messages.append((sender, BlockResponse(tuple(blocks))))

    def _on_block_response(self, sender: NodeId, resp: BlockResponse) -> None:
        if len(resp.blocks) > self.config.fetch_max_blocks:
            self._reject(sender, resp, "oversize block response")
            return
        # Accept only blocks we asked for by hash, or their ancestors in order:
        # the hash pins the content, so the sender cannot alter them.
        expected: bytes | None = None
        arrived: list[tuple[bytes, Block]] = []
        for b in resp.blocks:
            h = block_hash(b)
            if h != expected and h not in self._wanted:
                self._reject(sender, resp, "unrequested block")
                break
            arrived.append((h, b))
            expected = b.parent_hash
        # Connect oldest first so each finds its parent.
        for h, b in reversed(arrived):
            self._wanted.pop(h, None)
            if b.justify.block_hash != b.parent_hash or b.justify.view >= b.view:
                self._reject(sender, resp, "justify does not certify the parent")
                return
            self._add_block(b, h)
        if arrived:
            oldest = arrived[-1][1]
            if not self._parent_known(oldest.parent_hash) and oldest.height > self.root_height + 1:
                self._request_ancestors(oldest.parent_hash, sender)

    # ------------------------------------------------------------------ votes and QCs

    def _on_vote(self, sender: NodeId, v: Vote) -> None:
        if v.voter != sender:
            self._reject(sender, v, "claimed voter is not the sender")
            return
        if v.view < 1 or self.leader(v.view + 1) != self._id:
            self._reject(sender, v, "vote sent to a replica that does not collect it")
            return
        if v.view <= self.high_qc.view or v.view < self.view - 1:
            return  # late: the view is certified or over; not misbehaviour
        if v.view > self.view + self.config.view_window:
            self._reject(sender, v, "view too far ahead")
            return
        key = (v.view, v.block_hash)
        partials = self._votes.get(key)
        if partials is not None and sender in partials:
            return
        message = vote_bytes(v.view, v.block_hash)
        if self.config.batch_verify_votes and key in self._seen_proposals and sender not in self._suspects:
            # Checked with the others' once a quorum is in (``_certify_votes``).
            if partials is None:
                partials = self._votes[key] = {}
            partials[sender] = v.signature
            self._unchecked.setdefault(key, set()).add(sender)
            if len(partials) >= self.quorum:
                self._certify_votes(key, message)
            return
        if not self.verifier.verify(sender, message, v.signature):
            self._reject(sender, v, "bad signature")
            return
        if self._observe(SignedStatement(int(sender), VOTE_KIND, v.view, 0, v.block_hash, v.signature)):
            self._reject(sender, v, "equivocation")
            return
        if key not in self._seen_proposals:
            proposer = self.leader(v.view)
            statement = SignedStatement(
                int(proposer), PROPOSAL_KIND, v.view, 0, v.block_hash, v.proposer_signature
            )
            if not self.verifier.verify(proposer, statement.signed_bytes(), v.proposer_signature):
                self._reject(sender, v, "bad proposer signature")
                return
            self._seen_proposals.add(key)
            if self._observe(statement):
                return
        if partials is None:
            partials = self._votes[key] = {}
        partials[sender] = v.signature
        if len(partials) >= self.quorum:
            if key in self._unchecked:
                self._certify_votes(key, message)
                return
            signers, signatures = self.quorum_signer.combine(message, partials)
            if len(decode_signers(signers)) < self.quorum:
                return
            del self._votes[key]
            qc = QuorumCertificate(v.view, v.block_hash, signers, signatures)
            self._verified_qcs.add(key)
            self._on_qc(qc)

    def _certify_votes(self, key: tuple[int, bytes], message: bytes) -> None:
        """A quorum of votes for ``key``, some not yet checked
        (``batch_verify_votes``): check them as one aggregate (each on its own
        only if that fails), drop and suspect the bad ones, record the good
        ones as statements (equivocation), and form the QC if a quorum is left."""
        partials = self._votes[key]
        unchecked = self._unchecked.pop(key, set())
        signers, signatures, bad = self.quorum_signer.certify(message, partials)
        for node in bad:
            partials.pop(node, None)
            self._suspects.add(node)
            self._rejected.append(Rejection(node, "Vote", "bad signature"))
        view, block_hash = key
        equivocated = False
        for node in sorted(unchecked):
            signature = partials.get(node)
            if signature is None:
                continue
            if self._observe(SignedStatement(int(node), VOTE_KIND, view, 0, block_hash, signature)):
                del partials[node]
                equivocated = True
                self._rejected.append(Rejection(node, "Vote", "equivocation"))
        if len(partials) < self.quorum:
            return  # the rest are checked; wait for more votes
        if equivocated:
            signers, signatures = self.quorum_signer.combine(message, partials)
        if len(decode_signers(signers)) < self.quorum:
            return
        del self._votes[key]
        self._verified_qcs.add(key)
        self._on_qc(QuorumCertificate(view, block_hash, signers, signatures))

    def _check_qc(self, qc: QuorumCertificate) -> bool:
        key = (qc.view, qc.block_hash)
        if key in self._verified_qcs:
            return True
        if qc.view < 1 or not self._quorum_of_replicas(qc.signers):
            return False
        if not self.quorum_signer.verify(vote_bytes(qc.view, qc.block_hash), qc.signers, qc.signatures):
            return False
        self._verified_qcs.add(key)
        return True

    def _check_tc(self, tc: TimeoutCertificate) -> bool:
        if tc.view in self._verified_tcs:
            return True
        if tc.view < 1 or not self._quorum_of_replicas(tc.signers):
            return False
        if not self.quorum_signer.verify(newview_bytes(tc.view), tc.signers, tc.signatures):
            return False
        self._verified_tcs.add(tc.view)
        return True

    def _quorum_of_replicas(self, signers: bytes) -> bool:
        if len(signers) > self._max_bitmap_bytes:
            return False
        nodes = decode_signers(signers)
        return len(nodes) >= self.quorum and all(n in self._replica_set for n in nodes)

    def _on_qc(self, qc: QuorumCertificate) -> None:
        """A verified QC: raise ``high_qc`` (progress: reset the back-off), enter the next view."""
        if qc.view > self.high_qc.view:
            self.high_qc = qc
            self._dirty = True
            self._failed_views = 0
            self._update_from_qc(qc)
        self._enter_view(qc.view + 1)
        if qc.view > self.root_view and not self._parent_known(qc.block_hash):
            self._request_ancestors(qc.block_hash, self.leader(qc.view))

    def _on_tc(self, tc: TimeoutCertificate) -> None:
        if self.high_tc is None or tc.view > self.high_tc.view:
            self.high_tc = tc
            self._dirty = True
        self._enter_view(tc.view)

    # ------------------------------------------------------------------ pacemaker

    def _enter_view(self, view: int) -> None:
        if view <= self.view:
            return
        self.view = view
        self._dirty = True
        self._deadline = None
        self._arm_timer()
        stale_votes = [k for k in self._votes if k[0] < view - 1]
        for k in stale_votes:
            del self._votes[k]
            self._unchecked.pop(k, None)
        for w in [w for w in self._newviews if w <= view]:
            del self._newviews[w]
        if self._awaiting:
            for h in [h for h, p in self._awaiting.items() if p.block.view < view]:
                del self._awaiting[h]
        targets = self._order_targets()
        if targets[0] == self._id:
            self._try_propose()
        elif self._queue and self._id not in targets and self.config.forward_commands:
            # Hand what we could have proposed to the leaders that now can
            # (the next view's leader too: this view's may have proposed already).
            batch = tuple(self._queue)[: FORWARD_MAX_BATCHES * self.config.batch_max]
            for c in batch:
                del self._queue[c]
            forward = Forward(batch)
            for target in targets:
                self._messages.append((target, forward))

    def _order_targets(self) -> tuple[NodeId, ...]:
        """The leaders that may next put a command in a block: this view's (if
        it has not proposed yet, e.g. an idle leader) and the next view's
        (if this view's block is already out). Both get it; a leader leaves out
        commands already in its uncommitted chain."""
        this, following = self.leader(self.view), self.leader(self.view + 1)
        return (this,) if this == following else (this, following)

    def _expects_progress(self) -> bool:
        return self._sync_answers is not None or self._expects_ordering()

    def _expects_ordering(self) -> bool:
        """Commands or blocks we know of wait to be committed or fetched."""
        if self._watch or self._queue or self._open_commands or self._awaiting or self._orphans:
            return True
        # A QC on a block we lack: we are behind and must keep fetching.
        return self.high_qc.view > self.root_view and not self._parent_known(
            self.high_qc.block_hash
        )

    def _timeout_s(self) -> float:
        """How long the current view may take: doubled once per full rotation
        of the leader set that failed in a row (a rotation holds a correct
        leader, so its failure says the timeout is short for the network, not
        that leaders are faulty), capped by ``max_view_timeout_s``."""
        rotations = self._failed_views // len(self.reputation.leaders)
        doublings = min(rotations, MAX_BACKOFF_DOUBLINGS)
        return min(self.config.view_timeout_s * (1 << doublings), self.config.max_view_timeout_s)

    def _timeout_target(self, view: int) -> int:
        """The view a timeout in ``view`` asks to enter (``reputation.timeout_target``):
        a failed leader's remaining views are skipped with one timeout
        certificate instead of one timeout each."""
        return timeout_target(view, self.config.views_per_leader)

    def _arm_timer(self) -> None:
        if self._deadline is None:
            if self._expects_progress():
                self._deadline = self._now + self._timeout_s()
        elif not self._expects_progress():
            self._deadline = None

    def _on_timeout(self) -> None:
        if self._sync_answers is not None:
            self._ask_for_sync()
            if not self._expects_ordering():
                # Only the start-up sync is waiting: ask again, but do not
                # time the view out (nothing says its leader failed).
                self._deadline = self._now + self.config.view_timeout_s
                return
        if self._timed_out_view != self.view:
            self._timed_out_view = self.view
            self._failed_views += 1
        # Until a certificate moves us on, re-send every base timeout (a NewView
        # lost in a partition is sent again soon after it heals).
        self._deadline = self._now + self.config.view_timeout_s
        self._send_newview(self._timeout_target(self.view))
        self._refetch()
        # Commands we know of may have died with a leader's queue: propose them
        # ourselves when our turn comes, and make every replica watch our
        # clients' (so all honest replicas time out a leader that ignores them).
        for command in self._watch:
            self._queue.setdefault(command, None)
        if self._pending:
            forward = Forward(tuple(self._pending)[: FORWARD_MAX_BATCHES * self.config.batch_max])
            for peer in self._others:
                self._messages.append((peer, forward))

    def _send_newview(self, view: int) -> None:
        if view > self.last_newview:
            self.last_newview = view
            self._dirty = True
        signature = self.signer.sign(newview_bytes(view))
        message = NewView(view, int(self._id), signature, self.high_qc, self.high_tc)
        for peer in self._others:
            self._messages.append((peer, message))
        self._count_newview(self._id, view, signature)

    def _on_newview(self, sender: NodeId, nv: NewView) -> None:
        if nv.author != sender:
            self._reject(sender, nv, "claimed author is not the sender")
            return
        if nv.view < 1:
            self._reject(sender, nv, "invalid view")
            return
        if not self.verifier.verify(sender, newview_bytes(nv.view), nv.signature):
            self._reject(sender, nv, "bad signature")
            return
        if not self._check_qc(nv.high_qc):
            self._reject(sender, nv, "invalid QC")
            return
        if nv.high_tc is not None and not self._check_tc(nv.high_tc):
            self._reject(sender, nv, "invalid TC")
            return
        self._on_qc(nv.high_qc)
        if nv.high_tc is not None:
            self._on_tc(nv.high_tc)
        if nv.view <= self.view or nv.high_qc.view < self.high_qc.view or self._deadline is None:
            # The sender lags (in view, or in the QC it knows; it may have
            # missed the proposal that would commit for it), or it times out
            # while we expect nothing (it may have missed the QC that
            # committed what it waits for): catch it up.
            self._answer_lagging(sender, nv.view)
        if nv.view <= self.view:
            return
        if nv.view > self._timeout_target(self.view):
            self._reject(sender, nv, "view not justified by its certificates")
            return
        self._count_newview(sender, nv.view, nv.signature)

    def _count_newview(self, sender: NodeId, view: int, signature: bytes) -> None:
        if view != self._timeout_target(self.view):
            return
        senders = self._newviews.setdefault(view, {})
        senders[sender] = signature
        if len(senders) >= self.quorum:
            signers, signatures = self.quorum_signer.combine(newview_bytes(view), senders)
            if len(decode_signers(signers)) >= self.quorum:
                tc = TimeoutCertificate(view, signers, signatures)
                self._verified_tcs.add(view)
                self._on_tc(tc)
        elif len(senders) >= self.f + 1 and self.last_newview < view:
            # f + 1 asked: at least one honest replica timed out, so join it.
            self._send_newview(view)

    # ------------------------------------------------------------------ start-up sync

    def _start_sync(self) -> None:
        """Ask every peer for its certificates (module docstring, start-up sync)."""
        if self.quorum - 1 < 1 or not self._others:
            return
        self._sync_answers = set()
        self._ask_for_sync()
        self._arm_timer()

    def _ask_for_sync(self) -> None:
        answered = self._sync_answers or set()
        request = SyncRequest()
        for peer in self._others:
            if peer not in answered:
                self._messages.append((peer, request))

    def _on_sync_request(self, sender: NodeId, request: SyncRequest) -> None:
        # At most two answers per view timeout to one peer: a request costs
        # its sender nothing, so a Byzantine one could otherwise make us send
        # certificates in a loop.
        last = self._sync_requests_answered.get(sender)
        if last is not None and self._now - last < SYNC_ANSWER_INTERVAL_FRACTION * self.config.view_timeout_s:
            return
        self._sync_requests_answered[sender] = self._now
        commit_qc = self.commit_qc if self.commit_qc.view > 0 else None
        self._messages.append((sender, SyncInfo(self.high_qc, self.high_tc, commit_qc)))

    def _answer_lagging(self, sender: NodeId, view: int) -> None:
        last = self._synced.get(sender)
        if last is not None and last[0] >= view and self._now - last[1] < self.config.view_timeout_s:
            return
        self._synced[sender] = (view, self._now)
        commit_qc = self.commit_qc if self.commit_qc.view > 0 else None
        self._messages.append((sender, SyncInfo(self.high_qc, self.high_tc, commit_qc)))

    def _on_sync_info(self, sender: NodeId, s: SyncInfo) -> None:
        if not self._check_qc(s.high_qc):
            self._reject(sender, s, "invalid QC")
            return
        if s.high_tc is not None and not self._check_tc(s.high_tc):
            self._reject(sender, s, "invalid TC")
            return
        if s.commit_qc is not None and s.commit_qc.view > self.commit_qc.view:
            if not self._check_qc(s.commit_qc):
                self._reject(sender, s, "invalid commit QC")
                return
            self._learn_commit_qc(s.commit_qc, sender)
        self._on_qc(s.high_qc)
        if s.high_tc is not None:
            self._on_tc(s.high_tc)
        answers = self._sync_answers
        if answers is not None:
            answers.add(sender)
            if len(answers) >= self.quorum - 1:
                self._sync_answers = None

    def _learn_commit_qc(self, qc: QuorumCertificate, source: NodeId) -> None:
        """Apply a peer's verified commit QC: the lock and commit rules, once
        its block is in (fetched first if need be)."""
        if qc.view <= self.root_view:
            return
        if qc.block_hash in self._blocks:
            self._update_from_qc(qc)
        else:
            self._commit_qc_wanted = qc
            self._request_ancestors(qc.block_hash, source)

    # ------------------------------------------------------------------ leader

    def _try_propose(self) -> None:
        view = self.view
        if self.leader(view) != self._id or view <= self.last_voted_view:
            return
        qc = self.high_qc
        tc: TimeoutCertificate | None = None
        if qc.view != view - 1:
            if self.high_tc is None or self.high_tc.view != view:
                return
            tc = self.high_tc
        if not (self._queue or self._open_commands or self._chain_tail_has_commands(qc)):
            return  # idle: proposing empty blocks would only spin
        parent = self._blocks.get(qc.block_hash)
        if parent is not None:
            parent_height, parent_proposer = parent.height, parent.proposer
        elif qc.block_hash == self.root_hash:
            parent_height, parent_proposer = self.root_height, self.reputation.root_proposer
        else:
            self._request_ancestors(qc.block_hash, self.leader(qc.view))
            return
        in_flight = self._uncommitted_commands(qc.block_hash)
        commands: list[bytes] = []
        for c in self._queue:
            if c not in in_flight:
                commands.append(c)
                if len(commands) >= self.config.batch_max:
                    break
        for c in commands:
            del self._queue[c]
        failed = self.reputation.failed_leaders(qc.view, parent_proposer, view)
        block = Block(qc.block_hash, view, parent_height + 1, int(self._id), qc, tuple(commands), failed)
        h = block_hash(block)
        signature = self.signer.sign(statement_bytes(PROPOSAL_KIND, view, 0, h))
        self._seen_proposals.add((view, h))
        self.evidence.observe(SignedStatement(int(self._id), PROPOSAL_KIND, view, 0, h, signature))
        proposal = Proposal(block, signature, tc)
        for peer in self._others:
            self._messages.append((peer, proposal))
        if self._add_block(block, h):
            self._process_proposal(block, h, signature)

    def _chain_tail_has_commands(self, qc: QuorumCertificate) -> bool:
        """True if ``qc``'s block or its two ancestors carry commands: peers
        commit them only once a proposal brings them ``qc``, even if ``qc``
        already made us commit them."""
        block = self._blocks.get(qc.block_hash)
        for _ in range(3):
            if block is None:
                return False
            if block.commands:
                return True
            block = self._blocks.get(block.parent_hash)
        return False

    def _uncommitted_commands(self, h: bytes) -> set[bytes]:
        commands: set[bytes] = set()
        block = self._blocks.get(h)
        while block is not None and block.height > self.root_height:
            commands.update(block.commands)
            block = self._blocks.get(block.parent_hash)
        return commands

    def _on_forward(self, sender: NodeId, fw: Forward) -> None:
        if len(fw.commands) > FORWARD_MAX_BATCHES * self.config.batch_max:
            self._reject(sender, fw, "oversize forward")
            return
        for c in fw.commands:
            if len(c) > self.config.max_command_bytes:
                self._reject(sender, fw, "oversize command")
                return
            if c in self._queue or c in self._recently_committed:
                continue
            if len(self._watch) >= self.config.max_pending_commands:
                self._reject(sender, fw, "busy")
                break
            self._queue[c] = None
            self._watch[c] = None
        if self.leader(self.view) == self._id:
            self._try_propose()

    # ------------------------------------------------------------------ evidence

    def _observe(self, statement: SignedStatement) -> bool:
        """Record a verified statement; on equivocation publish the evidence."""
        evidence = self.evidence.observe(statement)
        if evidence is None:
            return False
        for peer in self._others:
            self._messages.append((peer, evidence))
        return True

    def _on_evidence(self, sender: NodeId, ev: Evidence) -> None:
        if ev.first.kind not in (PROPOSAL_KIND, VOTE_KIND):
            self._reject(sender, ev, "evidence of another protocol")
            return
        if ev.offender in self.evidence.excluded:
            return
        if not self.evidence.receive(ev):
            self._reject(sender, ev, "invalid evidence")

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self._rejected.append(Rejection(sender, type(message).__name__, reason))
