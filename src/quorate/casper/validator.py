"""A Casper FFG validator over a simple proposer chain, as a sans-IO state machine.

Theory of operation (Buterin & Griffith, "Casper the Friendly Finality
Gadget", 2017; fork choice after §4's "follow the chain containing the
justified checkpoint of the greatest height"):

- **Proposer chain.** Slots are numbered from 1; the proposer of slot s is
  validator ``validators[(s - 1) % n]`` (round-robin). A validator moves to
  slot s + 1 when it accepts a block of slot s, or when its slot timer fires
  (the proposer is down or slow). The proposer of its current slot, if it
  has commands to order or unfinalized commands on its chain, signs a block
  extending its fork-choice head with a batch of client commands. A block's
  slot is above its parent's; its height is its parent's plus one.
- **Fork choice.** The head is the highest block among the descendants of
  the highest-epoch justified checkpoint this validator knows (ties: the
  lowest hash), so every honest validator builds on, and votes along, the
  chain with the highest justified checkpoint, then the longest.
- **Checkpoints and votes (§2).** Epochs are ``epoch_blocks`` = E blocks:
  epoch e's checkpoint on a chain is its block at height e · E. When the
  head reaches a new checkpoint t, the validator votes for the link from
  its highest justified checkpoint s (an ancestor of t) to t, signed and
  sent to every validator, if t's epoch is above its last vote's target
  and s's epoch not below its last vote's source: by construction it never
  double-votes nor surrounds its own vote, and ``HardState.last_vote`` is
  durable before the vote leaves, so a restart cannot make it do so.
- **Justification and finality.** Votes of 2/3 of the stake for one link
  (a supermajority link, ``quorate.casper.ffg``) justify its target; a link
  to a direct child (next epoch) finalizes its source. The votes of a
  supermajority link form a ``Justification``, a proof anyone can check;
  checkpoint blocks carry the proof of the highest justified checkpoint
  their proposer knew, and ``Sync`` messages carry the proofs of the
  highest justified and the finalized checkpoint to validators that lag.
  A proposer about to build a checkpoint block first waits (at most
  ``justify_wait_s``) for the previous checkpoint to be justified, so the
  new checkpoint's votes can name it as their source and finalize it.
- **Execution.** Client commands are executed only once finalized: when a
  checkpoint is finalized, every block from the last executed checkpoint
  (the *root*) up to it is executed in chain order (blocks missing locally
  are fetched by hash first) and becomes the new root; forks that do not
  extend it are dropped. Replies to clients follow from execution.
- **Slashing (§3).** Every verified vote is checked against the votes seen
  from its validator (``SlashingDetector``); a double vote or a surround
  vote yields ``SlashingEvidence`` (two signed votes, checkable from the
  public keys alone), which is sent to all, and the offender is excluded:
  its later messages are dropped and its votes no longer counted. A
  proposer that signs two blocks for one slot is convicted the same way
  (``quorate.core.evidence.Evidence``): that is not an FFG condition, but
  an equivocating proposer of checkpoint blocks splits the votes of an
  epoch, and it can do so every rotation until it is excluded.
- **Timers.** The slot timer runs only while the validator expects progress
  (commands waiting or unfinalized, blocks missing); an idle cluster arms
  none. On expiry the validator moves to the next slot, sends ``Status``
  (peers that know less get our proofs, peers that know more send theirs)
  and its latest vote again, re-asks for missing blocks and sends its
  clients' commands to every validator. The timeout doubles after a whole
  rotation of proposers without a new block. The proposer of a slot that
  timed out is *suspected* until a block or vote it signed arrives; while at
  most f validators are suspected, a validator entering a suspected
  proposer's slot moves straight on to the next one, so a crashed or
  silent proposer costs one timeout, not one per rotation; convicted
  validators' slots are skipped the same way. Which slot a
  validator is in only decides when it proposes, never which blocks are
  valid, so validators that suspect differently still agree on blocks.
- **Commands.** A client command given to a validator is forwarded to the
  proposers of its current and next slots; a proposer leaves out commands
  already on its unfinalized chain or recently finalized.

Output: the commands of finalized blocks come out in ``Ready.committed`` as
``Entry(term=slot, index=i, kind=ENTRY_NORMAL, data=command)``, ``i``
contiguous from 1 on every honest validator; the same entries are in
``Ready.entries`` to be made durable. ``HardState`` (slot, last proposed
slot, last vote, the justified and finalized proofs, the root and the
committed index) is in the ``Ready`` of any vote or block it covers. Blocks
above the root are not durable: a restarted validator fetches them again
from its peers, and replays its committed entries to the state machine.
"""

from __future__ import annotations

import itertools
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from quorate.casper.config import CasperConfig
from quorate.casper.ffg import (
    SlashingDetector,
    link_finalizes,
    supermajority,
    valid_link_shape,
    verify_justification,
    verify_vote,
)
from quorate.casper.messages import (
    BLOCK_KIND,
    GENESIS,
    GENESIS_HASH,
    HASH_BYTES,
    Block,
    BlockRequest,
    BlockResponse,
    Checkpoint,
    Forward,
    HardState,
    Justification,
    Proposal,
    SlashingEvidence,
    Status,
    Sync,
    Vote,
    block_bytes,
    block_hash,
    vote_bytes,
)
from quorate.core.evidence import Evidence, SignedStatement
from quorate.core.protocol import ProposeOutcome, Queued, Refused
from quorate.core.ready import ENTRY_NORMAL, Entry, Ready, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.errors import ConfigError, invariant
from quorate.ids import NodeId

__all__ = ["CasperValidator"]

MAX_BACKOFF_DOUBLINGS = 32
"""Cap on the back-off exponent (the timeout is capped by the config anyway)."""
FORWARD_MAX_BATCHES = 4
"""A ``Forward`` carries at most this many blocks' worth of commands."""
SOURCE_WAIT_LIMIT = 64
"""Unknown vote sources remembered before the ones now justified are forgotten."""
ORPHAN_LIMIT_FETCHES = 4
"""Blocks waiting for a missing parent are capped at this many fetches' worth."""
REFETCH_MAX_HASHES = 4
"""Missing blocks re-requested per timeout."""
MAX_SETTLE_ROUNDS = 64
"""Proposals one input may lead to in a row (a lone validator proposes,
votes, justifies and proposes again without any message in between)."""
VOTE_EPOCHS_AHEAD = 1 << 12
"""Votes whose target epoch lies further above our finalized epoch are
dropped (bounds what a Byzantine voter can make us hold; a validator that
lags that far learns from ``Sync`` proofs instead)."""

_hard_state_decoder = msgspec.msgpack.Decoder(HardState)


class RecoveredState(Protocol):
    """What a restart hands the validator (``quorate.storage.Recovered`` is
    one): its last persisted ``HardState`` (or its msgpack encoding, or
    ``None``) and the committed entries it persisted."""

    @property
    def hard_state(self) -> Any: ...

    @property
    def entries(self) -> list[Entry]: ...


class CasperValidator:
    """One Casper FFG validator (see the module docstring)."""

    def __init__(
        self,
        id: NodeId,
        validators: Sequence[NodeId],
        *,
        config: CasperConfig,
        signer: Signer,
        verifier: Verifier,
        rng: random.Random,
        now: float,
        recovered: RecoveredState | None = None,
    ) -> None:
        self.config = config.validate()
        order = tuple(NodeId(v) for v in validators)
        if len(set(order)) != len(order) or not order:
            raise ConfigError(f"validators must be distinct and non-empty, got {list(validators)}")
        if id not in order:
            raise ConfigError(f"validator {id} is not in the validator set {list(order)}")
        if signer.node != id:
            raise ConfigError(f"the signer holds node {signer.node}'s key, not node {id}'s")
        self._id = NodeId(id)
        self.validators = order
        self._validator_set = frozenset(order)
        self._others = tuple(v for v in order if v != id)
        self.n = len(order)
        self.epoch_blocks = self.config.epoch_blocks
        self.signer = signer
        self.verifier = verifier
        self.rng = rng
        self.detector = SlashingDetector(verifier, self.config.slashing_window_epochs)
        self._now = now

        # Durable (mirrored in HardState).
        self.slot = 1
        self.last_proposed_slot = 0
        self.last_vote: Vote | None = None
        self.root_hash = GENESIS_HASH
        self.root_height = 0
        self.root_slot = 0
        self.committed_index = 0

        # The block tree above the root (descendants of the root only).
        self._blocks: dict[bytes, Block] = {}
        self._children: dict[bytes, list[bytes]] = {}
        self._seen_at: dict[bytes, float] = {}
        self._signatures: dict[bytes, bytes] = {}
        """Block hash -> its proposer's signature (tree and archive)."""
        self._archive: OrderedDict[bytes, Block] = OrderedDict()
        """Executed blocks kept to answer fetches (``retained_blocks``)."""
        self._orphans: dict[bytes, dict[bytes, Block]] = {}
        self._orphan_count = 0
        self._wanted: dict[bytes, float] = {}

        # Finality gadget.
        self._justified: dict[Checkpoint, Justification | None] = {GENESIS: None}
        """Checkpoints known justified -> the proof of it we hold, if any."""
        self.justified = GENESIS
        """The highest-epoch justified checkpoint whose block we hold (fork choice)."""
        self.finalized = GENESIS
        self._finalized_link: Justification | None = None
        self._links: dict[tuple[Checkpoint, Checkpoint], dict[int, bytes]] = {}
        """Votes counted per link: validator -> signature."""
        self._verified_links: set[tuple[Checkpoint, Checkpoint]] = set()
        self._under_justified: set[bytes] = {GENESIS_HASH}
        """The justified checkpoint's block and its descendants in the tree."""
        self.head = GENESIS_HASH
        self._head_open: bool | None = None
        """Cache: does the head's chain above the root hold commands?"""
        self.conflicting_finality = 0
        """Finalized checkpoints heard of that do not extend our root (needs > 1/3 slashable)."""

        # Commands (as in HotStuff): ``_pending`` our clients', ``_queue``
        # those we may put in a block, ``_watch`` all we expect finalized.
        self._pending: dict[bytes, None] = {}
        self._queue: dict[bytes, None] = {}
        self._watch: dict[bytes, None] = {}
        self._recently_finalized: dict[bytes, None] = {}

        # Timers.
        self._deadline: float | None = None
        self._hold_until: float | None = None
        self._failed_slots = 0
        self._suspected: set[NodeId] = set()
        """Proposers whose slot timed out here and that have said nothing since."""
        self._max_suspected = (self.n - 1) // 3
        self._answered: dict[NodeId, float] = {}
        self._source_unknown_since: dict[Checkpoint, float] = {}
        """When a vote first named each source we do not know to be justified."""
        self._asked_source: dict[NodeId, float] = {}
        """When we last asked each voter for the proof of such a source."""

        # Output.
        self._messages: list[tuple[NodeId, Any]] = []
        self._committed: list[Entry] = []
        self._replay: list[Entry] = []
        self._rejected: list[Rejection] = []
        self._dirty = False
        self.excluded_dropped = 0

        self._handlers: dict[type, Callable[[NodeId, Any], None]] = {
            Proposal: self._on_proposal,
            Vote: self._on_vote,
            Status: self._on_status,
            Sync: self._on_sync,
            BlockRequest: self._on_block_request,
            BlockResponse: self._on_block_response,
            Forward: self._on_forward,
            SlashingEvidence: self._on_evidence,
            Evidence: self._on_evidence,
        }
        if recovered is not None and recovered.hard_state is not None:
            self._restore(recovered.hard_state, recovered.entries)

    # ------------------------------------------------------------------ contract

    @property
    def id(self) -> NodeId:
        return self._id

    def proposer(self, slot: int) -> NodeId:
        """The proposer of ``slot`` (round-robin over the validators)."""
        return self.validators[(slot - 1) % self.n]

    @property
    def excluded(self) -> frozenset[NodeId]:
        """Validators convicted by slashing evidence."""
        return frozenset(self.detector.excluded)

    @property
    def evidence(self) -> SlashingDetector:
        """The slashing detector (its ``detections`` are the evidence found)."""
        return self.detector

    @property
    def detections(self) -> list[tuple[NodeId, str, int, int]]:
        """(offender, condition, first and second statement's slot) per
        conviction: target epochs of two votes, or one slot of two blocks."""
        conditions = self.detector.conditions()
        return [
            (NodeId(ev.offender), conditions.get(int(ev.offender), ""), ev.first.height, ev.second.height)
            for ev in self.detector.detections
        ]

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        """Handle a peer's message; bad input is dropped with a ``Rejection``."""
        if now > self._now:
            self._now = now
        handler = self._handlers.get(type(message))
        if handler is None:
            self._reject(sender, message, "unknown message type")
            return
        if sender not in self._validator_set:
            self._reject(sender, message, "sender is not a validator")
            return
        if sender == self._id:
            self._reject(sender, message, "message from ourselves")
            return
        if sender in self.detector.excluded:
            self.excluded_dropped += 1
            self._reject(sender, message, "excluded")
            return
        handler(sender, message)
        self._settle()
        self._arm_timer()

    def tick(self, now: float) -> None:
        if now > self._now:
            self._now = now
        if self._hold_until is not None and self._now >= self._hold_until:
            self._hold_until = None
            self._settle()
        if self._deadline is not None and self._now >= self._deadline:
            self._on_timeout()
            self._settle()
        self._arm_timer()

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        if now > self._now:
            self._now = now
        if len(command) > self.config.max_command_bytes:
            return Refused(f"command of {len(command)} bytes exceeds max_command_bytes")
        if command in self._pending:
            return Refused("duplicate: the command is already waiting to be ordered")
        if command in self._recently_finalized:
            return Refused("duplicate: the command was committed already")
        if len(self._pending) >= self.config.max_pending_commands:
            return Refused("busy: too many commands waiting to be ordered; retry later")
        self._pending[command] = None
        self._watch[command] = None
        if not self.config.forward_commands:
            # Our clients send every validator the command: the proposers have it.
            self._queue[command] = None
        else:
            forward = Forward((command,))
            for target in self._order_targets():
                if target == self._id:
                    self._queue[command] = None
                else:
                    self._messages.append((target, forward))
        self._settle()
        self._arm_timer()
        return Queued(self.slot)

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
            wake_at=self._wake_at(),
            rejected=self._rejected,
        )
        self._messages = []
        self._committed = []
        self._rejected = []
        self._dirty = False
        return ready

    def advance(self, ready: Ready) -> None:
        """Nothing to do: ``ready()`` already handed the work over."""

    def _wake_at(self) -> float | None:
        if self._hold_until is None:
            return self._deadline
        if self._deadline is None:
            return self._hold_until
        return min(self._deadline, self._hold_until)

    # ------------------------------------------------------------------ durable state

    def _hard_state(self) -> HardState:
        return HardState(
            slot=self.slot,
            last_proposed_slot=self.last_proposed_slot,
            last_vote=self.last_vote,
            justified=self._justified.get(self.justified),
            finalized=self._finalized_link,
            root_hash=self.root_hash,
            root_height=self.root_height,
            root_slot=self.root_slot,
            committed_index=self.committed_index,
        )

    def _restore(self, raw: Any, entries: Sequence[Entry]) -> None:
        hs = raw if isinstance(raw, HardState) else _hard_state_decoder.decode(raw)
        # The state machine is volatile: hand it every committed entry again,
        # once, in the first Ready. Entries and the hard state that counts
        # them are written in one persist call.
        replay = [e for e in entries if e.index <= hs.committed_index]
        invariant(
            [e.index for e in replay] == list(range(1, hs.committed_index + 1)),
            f"validator {self._id}: the recovered log does not hold committed entries "
            f"1..{hs.committed_index} (found {len(replay)})",
        )
        self._replay = replay
        for entry in replay[-self.config.max_pending_commands:]:
            self._recently_finalized[entry.data] = None
        self.slot = max(1, hs.slot)
        self.last_proposed_slot = hs.last_proposed_slot
        self.last_vote = hs.last_vote
        self.root_hash, self.root_height, self.root_slot = hs.root_hash, hs.root_height, hs.root_slot
        self.committed_index = hs.committed_index
        root = self._root_checkpoint()
        self._justified = {root: None}
        self.justified = self.finalized = root
        self.head = self.root_hash
        self._under_justified = {self.root_hash}
        # Our own disk is trusted: these proofs were verified before they were saved.
        for link in (hs.finalized, hs.justified):
            if link is not None:
                self._verified_links.add((link.source, link.target))
                self._learn_link(link)
        # Blocks above the root were in memory: time out once even if idle,
        # so our Status makes peers that know more send their proofs, and
        # missing blocks are asked for.
        self._deadline = self._now + self._timeout_s()

    def _root_checkpoint(self) -> Checkpoint:
        return Checkpoint(self.root_height // self.epoch_blocks, self.root_hash)

    # ------------------------------------------------------------------ the settle loop

    def _settle(self) -> None:
        """After any input: the best justified checkpoint, execution of what
        is finalized, our vote, and our block if it is our turn."""
        for _ in range(MAX_SETTLE_ROUNDS):
            self._update_justified()
            self._try_execute()
            self._maybe_vote()
            if not self._try_propose():
                return

    # ------------------------------------------------------------------ tree

    def _info(self, h: bytes) -> tuple[int, int] | None:
        """(height, slot) of a block in the tree or of the root."""
        if h == self.root_hash:
            return self.root_height, self.root_slot
        b = self._blocks.get(h)
        return None if b is None else (b.height, b.slot)

    def _ancestor_at(self, h: bytes, height: int) -> bytes | None:
        """The ancestor of ``h`` (or ``h`` itself) at ``height``, if in the tree or the root."""
        while True:
            if h == self.root_hash:
                return h if height == self.root_height else None
            b = self._blocks.get(h)
            if b is None or b.height < height:
                return None
            if b.height == height:
                return h
            h = b.parent_hash

    def _add_block(self, b: Block, h: bytes, signature: bytes) -> bool:
        """Store ``b`` (its proposer's ``signature`` verified) if it extends
        the tree; True when it is connected."""
        if h in self._blocks or h == self.root_hash:
            return True
        self._signatures[h] = signature
        if self._info(b.parent_hash) is None:
            if b.height > self.root_height and self._orphan_count < ORPHAN_LIMIT_FETCHES * self.config.fetch_max_blocks:
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
            self._orphan_count -= len(kids)
            for kid_h, kid in kids.items():
                if self._connect(kid, kid_h):
                    stack.append(kid_h)
        return connected

    def _connect(self, b: Block, h: bytes) -> bool:
        parent = self._info(b.parent_hash)
        if parent is None:
            return False
        parent_height, parent_slot = parent
        if b.height != parent_height + 1 or b.slot <= parent_slot or b.height <= self.root_height:
            return False
        self._blocks[h] = b
        self._children.setdefault(b.parent_hash, []).append(h)
        self._seen_at[h] = self._now
        self._wanted.pop(h, None)
        if b.justification is not None and self._check_link(b.justification):
            self._learn_link(b.justification)
        if b.parent_hash in self._under_justified:
            self._under_justified.add(h)
            if self._better_head(h):
                self._set_head(h)
        self._enter_slot(b.slot + 1)
        return True

    def _better_head(self, h: bytes) -> bool:
        info, current = self._info(h), self._info(self.head)
        assert info is not None
        if current is None:
            return True
        return info[0] > current[0] or (info[0] == current[0] and h < self.head)

    def _set_head(self, h: bytes) -> None:
        if h != self.head:
            self.head = h
            self._head_open = None
            self._failed_slots = 0

    def _recompute_head(self) -> None:
        """The fork choice from scratch: the justified checkpoint's descendants, highest first."""
        start = self.justified.hash
        under = {start}
        stack = [start]
        while stack:
            for kid in self._children.get(stack.pop(), ()):
                if kid in self._blocks:
                    under.add(kid)
                    stack.append(kid)
        self._under_justified = under
        start_info = self._info(start)
        assert start_info is not None
        best, best_height = start, start_info[0]
        for h in under:
            height = self._blocks[h].height if h in self._blocks else start_info[0]
            if height > best_height or (height == best_height and h < best):
                best, best_height = h, height
        self.head = best
        self._head_open = None

    def _head_has_open_commands(self) -> bool:
        if self._head_open is None:
            h, found = self.head, False
            while h != self.root_hash:
                b = self._blocks.get(h)
                if b is None:
                    break
                if b.commands:
                    found = True
                    break
                h = b.parent_hash
            self._head_open = found
        return self._head_open

    def _chain_commands(self, h: bytes) -> set[bytes]:
        """Commands on the chain from ``h`` down to the root (not executed yet)."""
        out: set[bytes] = set()
        while h != self.root_hash:
            b = self._blocks.get(h)
            if b is None:
                break
            out.update(b.commands)
            h = b.parent_hash
        return out

    # ------------------------------------------------------------------ justification and finality

    def _check_link(self, link: Justification) -> bool:
        key = (link.source, link.target)
        if key in self._verified_links:
            return True
        if not verify_justification(link, self.validators, self.verifier):
            return False
        self._verified_links.add(key)
        return True

    def _learn_link(self, link: Justification) -> None:
        """A verified supermajority link: its target is justified, and its
        source too (honest validators vote from justified sources only); a
        link to the next epoch finalizes its source."""
        if self._justified.get(link.target) is None:
            self._justified[link.target] = link
        self._justified.setdefault(link.source, None)
        if link_finalizes(link.source, link.target) and link.source.epoch > self.finalized.epoch:
            self.finalized = link.source
            self._finalized_link = link
            self._dirty = True

    def _update_justified(self) -> None:
        """Move the fork choice's justified checkpoint to the highest-epoch
        one whose block (at the checkpoint's height) we hold."""
        best = self.justified
        for cp in self._justified:
            if cp.epoch > best.epoch:
                info = self._info(cp.hash)
                if info is not None and info[0] == cp.epoch * self.epoch_blocks:
                    best = cp
        if best != self.justified:
            self.justified = best
            self._dirty = True
            self._recompute_head()

    def _try_execute(self) -> None:
        """Execute the blocks from the root up to the finalized checkpoint, if all are here."""
        target = self.finalized
        if target.hash == self.root_hash or target.epoch * self.epoch_blocks <= self.root_height:
            return
        chain: list[tuple[bytes, Block]] = []
        h = target.hash
        while h != self.root_hash:
            b = self._blocks.get(h)
            if b is None:
                self._request_ancestors(h, None)
                return
            chain.append((h, b))
            h = b.parent_hash
        if chain[0][1].height != target.epoch * self.epoch_blocks:
            # A checkpoint hash that names a block at another height: no honest
            # supermajority votes for it. Keep the root we have.
            self.conflicting_finality += 1
            self.finalized = self._root_checkpoint()
            return
        for block_h, block in reversed(chain):
            for command in block.commands:
                self.committed_index += 1
                self._committed.append(Entry(block.slot, self.committed_index, ENTRY_NORMAL, command))
                self._pending.pop(command, None)
                self._queue.pop(command, None)
                self._watch.pop(command, None)
                self._recently_finalized[command] = None
            self._archive[block_h] = block
        while len(self._archive) > self.config.retained_blocks:
            self._signatures.pop(self._archive.popitem(last=False)[0], None)
        excess = len(self._recently_finalized) - self.config.max_pending_commands
        if excess > 0:
            for command in list(itertools.islice(self._recently_finalized, excess)):
                del self._recently_finalized[command]
        top = chain[0][1]
        self.root_hash, self.root_height, self.root_slot = target.hash, top.height, top.slot
        self._dirty = True
        self._prune()

    def _prune(self) -> None:
        """Keep only the root's descendants, and proofs and votes that can still matter."""
        blocks: dict[bytes, Block] = {}
        children: dict[bytes, list[bytes]] = {}
        stack = [self.root_hash]
        while stack:
            parent = stack.pop()
            kids = [k for k in self._children.get(parent, ()) if k in self._blocks]
            if kids:
                children[parent] = kids
            for kid in kids:
                blocks[kid] = self._blocks[kid]
                stack.append(kid)
        self._blocks, self._children = blocks, children
        self._seen_at = {h: t for h, t in self._seen_at.items() if h in blocks}
        orphaned = {h for kids in self._orphans.values() for h in kids}
        self._signatures = {
            h: sig for h, sig in self._signatures.items() if h in blocks or h in self._archive or h in orphaned
        }
        self.detector.forget_blocks_below(self.root_slot)
        if self._orphans:
            for parent in [p for p, kids in self._orphans.items() if all(k.height <= self.root_height for k in kids.values())]:
                self._orphan_count -= len(self._orphans.pop(parent))
        root = self._root_checkpoint()
        self._justified = {cp: link for cp, link in self._justified.items() if cp.epoch >= root.epoch}
        self._justified.setdefault(root, None)
        self._links = {k: v for k, v in self._links.items() if k[1].epoch > self.finalized.epoch}
        self._verified_links = {k for k in self._verified_links if k[1].epoch >= root.epoch}
        if self.justified.hash not in blocks:
            self.justified = root
        self._recompute_head()
        self._update_justified()

    # ------------------------------------------------------------------ voting

    def _maybe_vote(self) -> None:
        info = self._info(self.head)
        if info is None:
            return
        target_epoch = info[0] // self.epoch_blocks
        last = self.last_vote
        if target_epoch == 0 or (last is not None and target_epoch <= last.target.epoch):
            return
        source = self.justified
        if source.epoch >= target_epoch or (last is not None and source.epoch < last.source.epoch):
            return
        target_hash = self._ancestor_at(self.head, target_epoch * self.epoch_blocks)
        if target_hash is None:
            return
        target = Checkpoint(target_epoch, target_hash)
        vote = Vote(int(self._id), source, target, self.signer.sign(vote_bytes(source, target)))
        self.last_vote = vote
        self._dirty = True
        for peer in self._others:
            self._messages.append((peer, vote))
        self.detector.observe(vote)
        self._count_vote(vote, None)

    def _on_vote(self, sender: NodeId, v: Vote) -> None:
        if v.validator != sender:
            self._reject(sender, v, "claimed validator is not the sender")
            return
        if not valid_link_shape(v.source, v.target):
            self._reject(sender, v, "invalid link")
            return
        if v.target.epoch > self.finalized.epoch + VOTE_EPOCHS_AHEAD:
            self._reject(sender, v, "target epoch too far ahead")
            return
        if not verify_vote(v, self.verifier):
            self._reject(sender, v, "bad signature")
            return
        self._suspected.discard(sender)
        evidence = self.detector.observe(v)
        if evidence is not None:
            for peer in self._others:
                self._messages.append((peer, evidence))
            self._reject(sender, v, "slashable vote")
            return
        self._count_vote(v, sender)
        if v.source.epoch > self.justified.epoch and v.source not in self._justified:
            self._ask_for_source(sender, v.source)

    def _ask_for_source(self, sender: NodeId, source: Checkpoint) -> None:
        """A vote names a source we do not know to be justified. Usually its
        proof follows within moments (the votes that justify it are on their
        way); if a slot timeout passes and we still lack it, ask the voter
        (a ``Status`` showing we are behind is answered with its proofs).
        Without this, validators that missed a justification keep voting
        from an older source while the chain grows without a timeout, and no
        link gets a supermajority."""
        since = self._source_unknown_since.setdefault(source, self._now)
        if self._now - since < self.config.slot_timeout_s:
            return
        last = self._asked_source.get(sender)
        if last is not None and self._now - last < self.config.slot_timeout_s:
            return
        self._asked_source[sender] = self._now
        if len(self._source_unknown_since) > SOURCE_WAIT_LIMIT:
            self._source_unknown_since = {
                cp: t for cp, t in self._source_unknown_since.items() if cp.epoch > self.justified.epoch
            }
        self._messages.append((sender, Status(self.slot, self.justified, self.finalized)))

    def _count_vote(self, v: Vote, source: NodeId | None) -> None:
        if v.target.epoch <= self.finalized.epoch:
            return
        key = (v.source, v.target)
        votes = self._links.setdefault(key, {})
        if v.validator in votes:
            return
        votes[v.validator] = v.signature
        if not supermajority(len(votes), self.n) or key in self._verified_links:
            return
        signers = tuple(sorted(votes))
        link = Justification(v.source, v.target, signers, tuple(votes[s] for s in signers))
        self._verified_links.add(key)
        self._learn_link(link)
        if v.target.epoch > self.justified.epoch and self._info(v.target.hash) is None:
            self._request_ancestors(v.target.hash, source)

    # ------------------------------------------------------------------ proposing

    def _order_targets(self) -> tuple[NodeId, ...]:
        this, following = self.proposer(self.slot), self.proposer(self.slot + 1)
        return (this,) if this == following else (this, following)

    def _wants_blocks(self) -> bool:
        return bool(self._queue) or self._head_has_open_commands()

    def _try_propose(self) -> bool:
        """Propose in our slot if there is something to order; True if we did."""
        slot = self.slot
        if self.proposer(slot) != self._id or slot <= self.last_proposed_slot or not self._wants_blocks():
            return False
        parent = self._info(self.head)
        if parent is None or parent[1] >= slot:
            return False
        height = parent[0] + 1
        justification: Justification | None = None
        if height % self.epoch_blocks == 0:
            previous = height // self.epoch_blocks - 1
            if self.justified.epoch < previous:
                prev_hash = self._ancestor_at(self.head, previous * self.epoch_blocks)
                hold_until = self._seen_at.get(prev_hash, self._now) + self.config.justify_wait_s if prev_hash else self._now
                if self._now < hold_until:
                    self._hold_until = hold_until
                    return False
            justification = self._justified.get(self.justified)
        self._hold_until = None
        in_flight = self._chain_commands(self.head)
        commands: list[bytes] = []
        for c in self._queue:
            if c not in in_flight and c not in self._recently_finalized:
                commands.append(c)
                if len(commands) >= self.config.batch_max:
                    break
        for c in commands:
            del self._queue[c]
        block = Block(self.head, slot, height, int(self._id), tuple(commands), justification)
        h = block_hash(block)
        signature = self.signer.sign(block_bytes(slot, h))
        self.last_proposed_slot = slot
        self._dirty = True
        proposal = Proposal(block, signature)
        for peer in self._others:
            self._messages.append((peer, proposal))
        self.detector.observe_block(SignedStatement(int(self._id), BLOCK_KIND, slot, 0, h, signature))
        self._add_block(block, h, signature)
        return True

    def _on_proposal(self, sender: NodeId, p: Proposal) -> None:
        b = p.block
        if b.proposer != sender or b.slot < 1 or self.proposer(b.slot) != sender:
            self._reject(sender, p, "sender is not the proposer of the slot")
            return
        if b.slot > self.slot + self.config.slot_window:
            self._reject(sender, p, "slot too far ahead")
            return
        if b.height < 1 or len(b.parent_hash) != HASH_BYTES:
            self._reject(sender, p, "invalid block")
            return
        if len(b.commands) > self.config.batch_max or any(len(c) > self.config.max_command_bytes for c in b.commands):
            self._reject(sender, p, "oversize block")
            return
        if b.justification is not None and (
            b.height % self.epoch_blocks != 0 or not self._check_link(b.justification)
        ):
            self._reject(sender, p, "invalid justification")
            return
        h = block_hash(b)
        if not self.verifier.verify(sender, block_bytes(b.slot, h), p.signature):
            self._reject(sender, p, "bad signature")
            return
        self._suspected.discard(sender)
        self._observe_block(b, h, p.signature)
        if h in self._blocks or b.height <= self.root_height:
            return
        if not self._add_block(b, h, p.signature):
            self._request_ancestors(b.parent_hash, sender)

    def _observe_block(self, b: Block, h: bytes, signature: bytes) -> None:
        """Check a signed block against the others of its slot (proposer equivocation)."""
        evidence = self.detector.observe_block(SignedStatement(b.proposer, BLOCK_KIND, b.slot, 0, h, signature))
        if evidence is not None:
            for peer in self._others:
                self._messages.append((peer, evidence))

    def _on_forward(self, sender: NodeId, fw: Forward) -> None:
        if len(fw.commands) > FORWARD_MAX_BATCHES * self.config.batch_max:
            self._reject(sender, fw, "oversize forward")
            return
        for c in fw.commands:
            if len(c) > self.config.max_command_bytes:
                self._reject(sender, fw, "oversize command")
                return
            if c in self._queue or c in self._recently_finalized:
                continue
            if len(self._watch) >= self.config.max_pending_commands:
                self._reject(sender, fw, "busy")
                break
            self._queue[c] = None
            self._watch[c] = None

    # ------------------------------------------------------------------ slots and timers

    def _enter_slot(self, slot: int) -> None:
        if slot <= self.slot:
            return
        skipped = self._suspected | self.detector.excluded if self.detector.excluded else self._suspected
        if skipped and len(skipped) <= self._max_suspected:
            while self.proposer(slot) in skipped:
                slot += 1
        self.slot = slot
        self._deadline = None
        self._arm_timer()

    def _expects_progress(self) -> bool:
        if self._watch or self._queue or self._wanted or self._orphans or self._head_has_open_commands():
            return True
        return self.finalized.epoch * self.epoch_blocks > self.root_height

    def _timeout_s(self) -> float:
        doublings = min(self._failed_slots // self.n, MAX_BACKOFF_DOUBLINGS)
        return min(self.config.slot_timeout_s * (1 << doublings), self.config.max_slot_timeout_s)

    def _arm_timer(self) -> None:
        if self._deadline is None:
            if self._expects_progress():
                self._deadline = self._now + self._timeout_s()
        elif not self._expects_progress():
            self._deadline = None

    def _on_timeout(self) -> None:
        self._failed_slots += 1
        if self.proposer(self.slot) != self._id:
            self._suspected.add(self.proposer(self.slot))
        status = Status(self.slot, self.justified, self.finalized)
        for peer in self._others:
            self._messages.append((peer, status))
            if self.last_vote is not None:
                self._messages.append((peer, self.last_vote))
        self._refetch()
        for command in self._watch:
            self._queue.setdefault(command, None)
        if self._pending:
            forward = Forward(tuple(self._pending)[: FORWARD_MAX_BATCHES * self.config.batch_max])
            for peer in self._others:
                self._messages.append((peer, forward))
        self._deadline = None
        self._enter_slot(self.slot + 1)
        self._arm_timer()

    def _on_status(self, sender: NodeId, s: Status) -> None:
        if not all(c.epoch >= 0 and len(c.hash) == HASH_BYTES for c in (s.justified, s.finalized)):
            self._reject(sender, s, "invalid checkpoint")
            return
        last = self._answered.get(sender)
        if last is not None and self._now - last < self.config.slot_timeout_s:
            return
        behind = s.finalized.epoch < self.finalized.epoch or s.justified.epoch < self.justified.epoch
        ahead = s.finalized.epoch > self.finalized.epoch or s.justified.epoch > self.justified.epoch
        if behind:
            self._answered[sender] = self._now
            self._messages.append((sender, Sync(self._justified.get(self.justified), self._finalized_link)))
        elif ahead:
            self._answered[sender] = self._now
            self._messages.append((sender, Status(self.slot, self.justified, self.finalized)))

    def _on_sync(self, sender: NodeId, s: Sync) -> None:
        for link in (s.finalized, s.justified):
            if link is None:
                continue
            if not self._check_link(link):
                self._reject(sender, s, "invalid justification")
                return
            self._learn_link(link)
            if link.target.epoch > self.justified.epoch and self._info(link.target.hash) is None:
                self._request_ancestors(link.target.hash, sender)
        if self.finalized.epoch * self.epoch_blocks > self.root_height and self.finalized.hash not in self._blocks:
            self._request_ancestors(self.finalized.hash, sender)

    # ------------------------------------------------------------------ fetching

    def _request_ancestors(self, missing: bytes, source: NodeId | None) -> None:
        if not self._others:
            return
        asked_at = self._wanted.get(missing)
        if asked_at is not None and self._now - asked_at < self.config.slot_timeout_s:
            return
        if asked_at is None and len(self._wanted) >= self.config.fetch_max_blocks:
            del self._wanted[next(iter(self._wanted))]
        self._wanted[missing] = self._now
        to = source if source is not None and source != self._id else self.rng.choice(self._others)
        self._messages.append((to, BlockRequest(missing, self.config.fetch_max_blocks)))

    def _refetch(self) -> None:
        """Ask random peers again for blocks still missing."""
        missing = list(self._wanted)
        if self.finalized.epoch * self.epoch_blocks > self.root_height and self.finalized.hash not in self._blocks:
            missing.append(self.finalized.hash)
        missing += [cp.hash for cp in self._justified if cp.epoch > self.justified.epoch and self._info(cp.hash) is None]
        missing += list(self._orphans)
        asked = 0
        for h in dict.fromkeys(missing):
            if asked >= REFETCH_MAX_HASHES:
                break
            if self._info(h) is None:
                self._wanted.pop(h, None)
                self._request_ancestors(h, None)
                asked += 1

    def _on_block_request(self, sender: NodeId, req: BlockRequest) -> None:
        count = min(max(req.count, 1), self.config.fetch_max_blocks)
        proposals: list[Proposal] = []
        h = req.block_hash
        while len(proposals) < count:
            b = self._blocks.get(h) or self._archive.get(h)
            signature = self._signatures.get(h)
            if b is None or signature is None:
                break
            proposals.append(Proposal(b, signature))
            h = b.parent_hash
        if proposals:
            self._messages.append((sender, BlockResponse(tuple(proposals))))

    def _on_block_response(self, sender: NodeId, resp: BlockResponse) -> None:
        if len(resp.proposals) > self.config.fetch_max_blocks:
            self._reject(sender, resp, "oversize block response")
            return
        # Accept only blocks we asked for by hash, or their ancestors in
        # order: the hash pins the content, so the sender cannot alter them.
        # Their proposers' signatures must hold too (evidence needs them).
        expected: bytes | None = None
        arrived: list[tuple[bytes, Proposal]] = []
        for p in resp.proposals:
            b = p.block
            h = block_hash(b)
            if h != expected and h not in self._wanted:
                self._reject(sender, resp, "unrequested block")
                break
            if b.slot < 1 or self.proposer(b.slot) != b.proposer or not self.verifier.verify(
                NodeId(b.proposer), block_bytes(b.slot, h), p.signature
            ):
                self._reject(sender, resp, "bad block signature")
                break
            arrived.append((h, p))
            expected = b.parent_hash
        for h, p in reversed(arrived):
            self._wanted.pop(h, None)
            self._observe_block(p.block, h, p.signature)
            if p.block.height > self.root_height:
                self._add_block(p.block, h, p.signature)
        if arrived:
            oldest = arrived[-1][1].block
            if self._info(oldest.parent_hash) is None and oldest.height > self.root_height + 1:
                self._request_ancestors(oldest.parent_hash, sender)

    # ------------------------------------------------------------------ evidence

    def _on_evidence(self, sender: NodeId, ev: SlashingEvidence | Evidence) -> None:
        if NodeId(ev.offender) in self.detector.excluded:
            return
        if not self.detector.receive(ev):
            self._reject(sender, ev, "invalid evidence")

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self._rejected.append(Rejection(sender, type(message).__name__, reason))

