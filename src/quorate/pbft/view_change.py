"""The new primary's decision procedure for PBFT's view change with MACs
(Castro & Liskov, TOCS 2002, section "BFT: an algorithm without signatures";
Castro's thesis, ch. 3), as pure functions of a set of view changes.

Theory of operation. With ``authentication="macs"`` the normal-case messages
carry MAC authenticators, which convince their receiver and nobody else, so a
view change cannot carry prepared certificates. Each replica instead states,
in its signed ``ViewChange``, what it saw above its stable checkpoint:

- P (``prepared_claims``): per sequence number n, the digest it prepared in
  the highest view, and that view;
- Q (``pre_prepared_claims``): per n and digest, the highest view in which it
  pre-prepared that digest (accepted a pre-prepare for it, from the primary
  or a new-view, or sent one as primary);
- the batches those digests name.

The view change stays signed, so no view-change acknowledgements are needed:
the signature binds the author to its claims, and a Byzantine author can
claim anything but cannot put words in an honest replica's mouth.

``decide_new_view`` is run by the new primary over the set S of valid view
changes it holds for view v (it uses every one it has, so waiting for more
can only help), and re-run by every backup over the S that the ``NewView``
carries; a backup accepts the new-view only if the result is complete and
equals its O. The procedure:

1. min-s: the highest stable checkpoint in S (each one comes with a signed
   proof) such that at least q messages of S have a stable checkpoint at or
   below it; O starts above it.
2. For each n in (min-s, min-s + L], choose digest d (first ordered in view
   ``origin_view``) if some message has a P claim (n, d, v') with

   - A1: at least q messages m of S have stable seq < n and either no P claim
     for n, or a P claim (n, d'', v'') with v'' < v', or v'' = v' and d'' = d;
   - A2: at least f + 1 messages of S have a Q claim (n, d, v''') with
     v''' >= v';
   - A3: some message of S carries the batch of d.

   If several claims qualify (possible only when nothing committed at n), the
   highest view wins, then the smallest digest: the choice is deterministic.
   Otherwise choose null (the empty batch) if at least q messages have stable
   seq < n and no P claim for n. Otherwise n is *undecided*: the primary
   waits for more view changes, and a backup rejects the new-view.
3. O holds the choices up to the highest non-null one; above it every n was
   decided null, and the new primary simply assigns those numbers afresh.

Safety (q = 2f + 1 when n = 3f + 1; any two quorums share an honest
replica). Suppose batch d committed at n in view v: q replicas prepared it
in v, so at least f + 1 honest ones did, and their P claim for n names d with
a view >= v (by induction over views, honest replicas prepare and pre-prepare
only d at n in later views, because every valid new-view for a later view
puts d at n). Any q messages of S with stable seq < n include one of those
honest replicas, hence:

- null cannot be chosen (it would need q messages without a P claim for n);
- a claim (n, d', v') with d' != d and v' <= v fails A1 (that honest replica's
  claim has a higher view, or the same view and digest d);
- a claim (n, d', v') with v' > v fails A2: f + 1 Q claims need one honest
  replica that pre-prepared d' at n in a view >= v' > v, which cannot happen.

So d (the only claim left) is chosen, and n is never left out of O (O reaches
the highest non-null choice, at least n). When min-s >= n, the stable
checkpoint, proven by q signed checkpoints, already includes d's execution.

Liveness. With the view changes of all honest replicas (at least q of them)
in S, every n is decided. Let (d*, v*) be the highest-view P claim of an
honest replica for n. Honest replicas never prepare different digests in
one view, so the honest messages satisfy A1 for it; d* prepared in v* means
q replicas, at least f + 1 honest, pre-prepared it in v*, which satisfies A2;
the honest claimant carries the batch (A3). With no honest P claim, the
honest messages make n null. Claims of Byzantine replicas can only add
choices, never remove these.

Bounding Q: an honest replica pre-prepares at most one digest per view and n,
and keeps, per n, the latest view of each digest and at most
``pre_prepared_claims_per_seq(n)`` digests, dropping the lowest views. Safety
does not depend on the bound: after d commits at n in v, honest replicas
pre-prepare nothing but d at n, so d keeps the highest view and is never the
one dropped. Liveness can suffer only if n replicas' worth of conflicting
digests were pre-prepared at one n by later primaries, none of them prepared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from quorate.pbft.messages import Checkpoint, ClaimedBatch, ViewChange

__all__ = [
    "NewViewDecision",
    "SlotChoice",
    "choose_checkpoint",
    "decide_new_view",
    "pre_prepared_claims_per_seq",
]


def pre_prepared_claims_per_seq(n: int) -> int:
    """Most digests a replica keeps (and a view change may claim) in Q for
    one sequence number, in a group of ``n`` replicas."""
    return n


@dataclass(frozen=True, slots=True)
class SlotChoice:
    """What O holds at ``seq``: a claimed batch, or null (``batch is None``)."""

    seq: int
    batch: ClaimedBatch | None


@dataclass(frozen=True, slots=True)
class NewViewDecision:
    """The outcome of the decision procedure over one set of view changes."""

    min_s: int
    checkpoint_proof: tuple[Checkpoint, ...]
    """The signed proof of min-s (empty for the initial state)."""
    pre_prepares: tuple[tuple[int, int, tuple[bytes, ...]], ...]
    """O: (seq, origin view, batch) for min-s < seq <= max-s; a null is
    (seq, new view, ())."""
    undecided: tuple[int, ...]
    """Sequence numbers the set left undecided; empty when complete."""

    @property
    def complete(self) -> bool:
        return not self.undecided


class _Claims:
    """One view change's claims, indexed by sequence number."""

    __slots__ = ("p", "q", "stable_seq")

    def __init__(self, vc: ViewChange) -> None:
        self.stable_seq = vc.stable_seq
        self.p: dict[int, tuple[bytes, int]] = {c.seq: (c.digest, c.view) for c in vc.prepared_claims}
        self.q: dict[int, dict[bytes, int]] = {}
        for c in vc.pre_prepared_claims:
            by_digest = self.q.setdefault(c.seq, {})
            if by_digest.get(c.digest, -1) < c.view:
                by_digest[c.digest] = c.view


def choose_checkpoint(
    view_changes: Sequence[ViewChange], quorum: int
) -> tuple[int, tuple[Checkpoint, ...]]:
    """min-s and its proof: the highest stable checkpoint in the set such that
    at least ``quorum`` view changes have a stable checkpoint at or below it.
    With fewer than ``quorum`` view changes none qualifies; the highest is
    returned and the caller finds every slot undecided."""
    by_seq: dict[int, tuple[Checkpoint, ...]] = {}
    for vc in view_changes:
        by_seq.setdefault(vc.stable_seq, vc.checkpoint_proof)
    stables = sorted(vc.stable_seq for vc in view_changes)
    for candidate in sorted(by_seq, reverse=True):
        if sum(1 for s in stables if s <= candidate) >= quorum:
            return candidate, by_seq[candidate]
    top = max(by_seq, default=0)
    return top, by_seq.get(top, ())


def _decide_slot(
    seq: int,
    claims: Sequence[_Claims],
    batches: dict[bytes, ClaimedBatch],
    *,
    quorum: int,
    f: int,
) -> SlotChoice | None:
    """Rules A1-A3, then null, for one sequence number; ``None`` if undecided."""
    eligible = [c for c in claims if c.stable_seq < seq]
    candidates = sorted(
        {c.p[seq] for c in claims if seq in c.p}, key=lambda dv: (-dv[1], dv[0])
    )
    for digest, view in candidates:
        a1 = 0
        for c in eligible:
            p = c.p.get(seq)
            if p is None or p[1] < view or (p[1] == view and p[0] == digest):
                a1 += 1
        if a1 < quorum:
            continue
        a2 = sum(1 for c in claims if c.q.get(seq, {}).get(digest, -1) >= view)
        if a2 < f + 1:
            continue
        batch = batches.get(digest)
        if batch is None:
            continue
        return SlotChoice(seq, batch)
    if sum(1 for c in eligible if seq not in c.p) >= quorum:
        return SlotChoice(seq, None)
    return None


def decide_new_view(
    view: int,
    view_changes: Sequence[ViewChange],
    *,
    quorum: int,
    f: int,
    window: int,
) -> NewViewDecision:
    """The decision procedure over the (already validated) view changes S
    for ``view``: min-s, O, and the sequence numbers left undecided.
    Deterministic in S, so the primary and every backup agree."""
    min_s, proof = choose_checkpoint(view_changes, quorum)
    claims = [_Claims(vc) for vc in view_changes]
    batches: dict[bytes, ClaimedBatch] = {}
    for vc in view_changes:
        for b in vc.batches:
            batches.setdefault(b.digest(), b)
    choices: list[SlotChoice] = []
    undecided: list[int] = []
    for seq in range(min_s + 1, min_s + window + 1):
        choice = _decide_slot(seq, claims, batches, quorum=quorum, f=f)
        if choice is None:
            undecided.append(seq)
        else:
            choices.append(choice)
    max_s = max((c.seq for c in choices if c.batch is not None), default=min_s)
    o = tuple(
        (c.seq, c.batch.origin_view, c.batch.batch) if c.batch is not None else (c.seq, view, ())
        for c in choices
        if c.seq <= max_s
    )
    return NewViewDecision(min_s, proof, o, tuple(undecided))
