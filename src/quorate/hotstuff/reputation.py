"""Leader reputation: which replicas take turns as leader, decided by the
committed chain.

Theory of operation (after the leader reputation of DiemBFT v4 / Aptos: the
leader of a round is drawn from the proposers and voters that committed
blocks record, and each block records the leaders of the rounds that failed
before it, checked by its voters):

- **Why.** Round-robin over every replica hands each faulty replica its turn
  again and again, and every turn of a silent or convicted leader costs a
  view timeout, thousands of times longer than a view with a live leader.
  So the rotation runs over the *leader set*: the replicas the committed
  chain shows doing their work.
- **What a block records.** Besides its proposer and ``justify`` (whose
  signers voted for its parent), a block carries ``failed_leaders``: the
  leaders of the views between its parent's view and its own that were
  entered and failed (``entered_views``: the parent's QC enters the view
  after it, and each timeout asks for ``timeout_target``). The parent's
  proposer is not counted: its turn may have failed only for want of the
  next leader, which collects the votes of its last view. The proposer
  computes the field with its own leader sets, and a replica votes for the
  block only if it computes the same; so the committed record is one that
  at least f + 1 honest replicas checked, and every replica reads the same.
- **Epochs.** Committed blocks are counted in epochs of ``epoch_blocks``
  heights. Over an epoch a replica collects who *proposed* a committed
  block, who *signed* a QC carried in one, and who *failed* (named in a
  ``failed_leaders``).
- **The next leader set** (``next_leader_set``), computed when the block
  closing an epoch commits: a replica is eligible if it proposed, or signed
  without failing, and is not benched. A replica that failed and proposed
  nothing gets a strike and sits out 2^(strikes - 1) epochs, capped at
  ``MAX_BENCH_EPOCHS``, so one that fails on every return costs ever less.
  If fewer than a quorum (2f + 1) are eligible, the set is filled up to a
  quorum with the best-behaved others. The set is never empty and, with at
  most f faulty replicas, holds at least f + 1 correct ones; with two views
  per leader that leaves two correct leaders in a row somewhere in every
  rotation, the four consecutive views a 3-chain commit needs.
- **When it applies.** A replica commits a block on learning the QC of view
  ``q`` that completes a 3-chain above it; the new set leads from view
  ``q + 2``. The QC's collector (the leader of ``q + 1``, unchanged) carries
  it in its proposal, so every replica that votes in view ``q + 1`` (votes
  go to the leader of ``q + 2``) has committed and switched before it
  votes: they agree, however late the commit came. A replica that missed
  that proposal commits the same blocks through the same QC when it
  fetches them, so it switches at the same view, only later.

Safety does not depend on any of this: HotStuff's safety rests on each
honest replica voting once per view and on its lock (Yin et al. §4), not on
who proposes, so replicas that disagree about a leader only lose that view.
The sets are a deterministic function of the committed chain, and this
state is persisted with the replica's ``HardState`` so a restarted replica
resumes the same accounting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from quorate.hotstuff.messages import ReputationState
from quorate.hotstuff.qc import decode_signers, encode_signers
from quorate.ids import NodeId

__all__ = [
    "MAX_BENCH_EPOCHS",
    "SET_SWITCH_VIEWS",
    "LeaderReputation",
    "entered_views",
    "next_leader_set",
    "timeout_target",
]

SET_SWITCH_VIEWS = 2
"""A leader set chosen by a commit that the QC of view ``q`` triggered leads
from view ``q + SET_SWITCH_VIEWS`` (see the module docstring)."""
MAX_BENCH_EPOCHS = 1024
"""Longest a replica that failed sits out of the leader set, in epochs."""
MAX_GAP_TURNS = 64
"""Past this many failed turns in one gap, only the first ones are named
(a gap that long comes from a partition; every leader failed in it)."""


def timeout_target(view: int, views_per_leader: int) -> int:
    """The view a replica that timed out in ``view`` asks to enter: the first
    view of the turn after the one that holds ``view + 1``. A timeout in a
    turn's last view skips the next turn as well: its leader collects that
    view's votes, so it may be the one at fault; skipping a turn costs no
    time, timing out in it would cost a whole view timeout."""
    return ((view + 1) // views_per_leader + 1) * views_per_leader


def entered_views(parent_view: int, view: int, views_per_leader: int) -> Iterator[int]:
    """The views between a block's parent (``parent_view``) and the block
    (``view``) that replicas entered and left without a certified block:
    the view after the parent's, then each view a timeout asks for."""
    current = parent_view + 1
    turns = 0
    while current < view and turns < MAX_GAP_TURNS:
        yield current
        current = timeout_target(current, views_per_leader)
        turns += 1


def next_leader_set(
    replicas: Sequence[NodeId],
    *,
    proposed: frozenset[NodeId],
    signed: frozenset[NodeId],
    failed: frozenset[NodeId],
    benched: frozenset[NodeId],
    strikes: Sequence[int],
    minimum: int,
) -> tuple[NodeId, ...]:
    """The leaders of the next epoch, in ``replicas`` order (see the module
    docstring): the eligible replicas, filled up to ``minimum`` with the rest,
    the unbenched first, then those that did not fail, then those that
    signed, then the fewest strikes, then the replica order."""
    eligible = [
        r for r in replicas
        if r not in benched and (r in proposed or (r in signed and r not in failed))
    ]
    if len(eligible) < minimum:
        position = {r: i for i, r in enumerate(replicas)}
        rest = sorted(
            (r for r in replicas if r not in eligible),
            key=lambda r: (r in benched, r in failed, r not in signed, strikes[position[r]], position[r]),
        )
        chosen = set(eligible) | set(rest[: minimum - len(eligible)])
        eligible = [r for r in replicas if r in chosen]
    return tuple(eligible)


class LeaderReputation:
    """The leader of each view, from the leader sets the committed chain chose."""

    __slots__ = (
        "_failed",
        "_position",
        "_proposed",
        "_sets",
        "_signed",
        "_state",
        "benched_until_epoch",
        "enabled",
        "epoch_blocks",
        "minimum",
        "replicas",
        "root_proposer",
        "strikes",
        "views_per_leader",
    )

    def __init__(
        self,
        replicas: Sequence[NodeId],
        *,
        views_per_leader: int,
        epoch_blocks: int,
        minimum: int,
        enabled: bool = True,
        state: ReputationState | None = None,
    ) -> None:
        self.replicas = tuple(replicas)
        self._position = {r: i for i, r in enumerate(self.replicas)}
        self.views_per_leader = views_per_leader
        self.epoch_blocks = epoch_blocks
        self.minimum = min(minimum, len(self.replicas))
        self.enabled = enabled
        self._sets: list[tuple[int, tuple[NodeId, ...]]] = [(0, self.replicas)]
        """(first view, leader set), by first view; the last one leads on."""
        self._proposed: set[NodeId] = set()
        self._signed: set[NodeId] = set()
        self._failed: set[NodeId] = set()
        self.root_proposer = -1
        """The proposer of the last committed block (-1: genesis)."""
        self.strikes = [0] * len(self.replicas)
        self.benched_until_epoch = [0] * len(self.replicas)
        self._state: ReputationState | None = None
        if state is not None and enabled:
            self._load(state)

    # ------------------------------------------------------------------ queries

    def leader(self, view: int) -> NodeId:
        """The leader of ``view``: its leader set's members take turns,
        ``views_per_leader`` consecutive views each."""
        sets = self._sets
        leaders = sets[-1][1]
        if view < sets[-1][0]:
            for first, members in reversed(sets):
                leaders = members
                if first <= view:
                    break
        return leaders[(view // self.views_per_leader) % len(leaders)]

    @property
    def leaders(self) -> tuple[NodeId, ...]:
        """The newest leader set."""
        return self._sets[-1][1]

    @property
    def leaders_from_view(self) -> int:
        """The first view the newest leader set leads."""
        return self._sets[-1][0]

    def failed_leaders(self, parent_view: int, parent_proposer: int, view: int) -> bytes:
        """What a block of ``view`` whose parent is of ``parent_view`` and
        was proposed by ``parent_proposer`` records as ``failed_leaders``."""
        if not self.enabled:
            return b""
        failed = {self.leader(w) for w in entered_views(parent_view, view, self.views_per_leader)}
        failed.discard(NodeId(parent_proposer))
        return encode_signers(failed)

    # ------------------------------------------------------------------ accounting

    def on_commit(
        self,
        view: int,
        height: int,
        proposer: int,
        justify_signers: bytes,
        failed_leaders: bytes,
        trigger_view: int,
    ) -> None:
        """Account one committed block (called in commit order for every
        committed block); ``trigger_view`` is the view of the QC whose 3-chain
        committed it."""
        if not self.enabled:
            return
        self._state = None
        position = self._position
        if proposer in position:
            self._proposed.add(NodeId(proposer))
        self._signed.update(r for r in decode_signers(justify_signers) if r in position)
        self._failed.update(r for r in decode_signers(failed_leaders) if r in position)
        self.root_proposer = proposer
        if height % self.epoch_blocks == 0:
            self._close_epoch(height // self.epoch_blocks - 1, trigger_view + SET_SWITCH_VIEWS)
        # Only the set in force at the committed view and later ones can be asked about.
        sets = self._sets
        while len(sets) > 1 and sets[1][0] <= view:
            del sets[0]

    def _close_epoch(self, epoch: int, first_view: int) -> None:
        proposed, signed = frozenset(self._proposed), frozenset(self._signed)
        failed = frozenset(self._failed)
        next_epoch = epoch + 1
        for r in failed - proposed:
            i = self._position[r]
            self.strikes[i] += 1
            bench = min(1 << min(self.strikes[i] - 1, 30), MAX_BENCH_EPOCHS)
            self.benched_until_epoch[i] = next_epoch + bench
        benched = frozenset(r for r, i in self._position.items() if self.benched_until_epoch[i] > next_epoch)
        leaders = next_leader_set(
            self.replicas,
            proposed=proposed,
            signed=signed,
            failed=failed,
            benched=benched,
            strikes=self.strikes,
            minimum=self.minimum,
        )
        # Two epochs closed by one commit start at the same view: the later wins.
        while self._sets and self._sets[-1][0] >= first_view:
            self._sets.pop()
        self._sets.append((first_view, leaders))
        self._proposed.clear()
        self._signed.clear()
        self._failed.clear()

    # ------------------------------------------------------------------ durable state

    def state(self) -> ReputationState:
        """What to persist (it changes only when a block commits)."""
        if self._state is None:
            self._state = ReputationState(
                leader_sets=tuple((first, self._encode(members)) for first, members in self._sets),
                proposed=encode_signers(self._proposed),
                signed=encode_signers(self._signed),
                failed=encode_signers(self._failed),
                root_proposer=self.root_proposer,
                strikes=tuple(self.strikes),
                benched_until_epoch=tuple(self.benched_until_epoch),
            )
        return self._state

    def _encode(self, leaders: tuple[NodeId, ...]) -> bytes:
        return b"" if leaders == self.replicas else encode_signers(leaders)

    def _decode(self, bitmap: bytes) -> tuple[NodeId, ...]:
        if not bitmap:
            return self.replicas
        members = set(decode_signers(bitmap))
        leaders = tuple(r for r in self.replicas if r in members)
        return leaders or self.replicas

    def _load(self, state: ReputationState) -> None:
        sets = [(first, self._decode(bitmap)) for first, bitmap in state.leader_sets]
        if sets:
            self._sets = sorted(sets, key=lambda s: s[0])
        position = self._position
        self._proposed = {r for r in decode_signers(state.proposed) if r in position}
        self._signed = {r for r in decode_signers(state.signed) if r in position}
        self._failed = {r for r in decode_signers(state.failed) if r in position}
        self.root_proposer = state.root_proposer
        n = len(self.replicas)
        if len(state.strikes) == n and len(state.benched_until_epoch) == n:
            self.strikes = list(state.strikes)
            self.benched_until_epoch = list(state.benched_until_epoch)
