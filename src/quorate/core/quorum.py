"""Quorum maths, as pure functions with a naive reference in the tests.

- Crash-fault (Raft): a quorum of ``n`` voters is a majority, ``n // 2 + 1``.
- Byzantine (PBFT/HotStuff): with ``f = (n - 1) // 3`` tolerated faults, a quorum
  is ``ceil((n + f + 1) / 2)``; for ``n = 3f + 1`` that is ``2f + 1``. Any two
  quorums then intersect in at least ``f + 1`` nodes, hence in an honest one.
- Commit index (Raft §5.3/§5.4): the largest index stored on a quorum, i.e. the
  quorum-th largest match index. Under joint consensus (thesis §4.3) an entry
  must be on a quorum of *both* configurations: the minimum of the two.
- Flexible quorums (Howard, Malkhi & Spiegelman 2016): an election quorum of
  size Q1 and a replication (commit) quorum of size Q2 over the same n voters
  always share a voter iff Q1 + Q2 > n. Over two voter sets A and B, every
  Q1-subset of A meets every Q2-subset of B iff Q1 + Q2 > |A ∪ B|
  (``quorums_intersect``): the Q1-subset can avoid B only in A - B, the
  Q2-subset then avoids it in the rest of B.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from quorate.ids import NodeId


def majority(n: int) -> int:
    """Votes needed among ``n`` voters (crash faults). ``majority(0) == 0``."""
    if n < 0:
        raise ValueError(f"voter count must be >= 0, got {n}")
    return n // 2 + 1 if n else 0


def max_faulty(n: int) -> int:
    """Byzantine faults ``n`` replicas tolerate: the largest f with 3f + 1 <= n."""
    if n < 1:
        raise ValueError(f"replica count must be >= 1, got {n}")
    return (n - 1) // 3


def bft_quorum(n: int) -> int:
    """Byzantine quorum size: ``ceil((n + f + 1) / 2)``, ``2f + 1`` when n = 3f+1."""
    f = max_faulty(n)
    return (n + f + 2) // 2


def commit_index(match: Mapping[NodeId, int] | Iterable[int], voters: int | None = None) -> int:
    """The largest index replicated on a majority, given each voter's match index.

    ``match`` holds one value per voter (missing voters count as 0 when
    ``voters`` is larger than the number given). Returns 0 for no voters.
    """
    values = sorted(match.values() if isinstance(match, Mapping) else match, reverse=True)
    n = len(values) if voters is None else voters
    if n == 0:
        return 0
    q = majority(n)
    return values[q - 1] if q <= len(values) else 0


def joint_commit_index(
    match: Mapping[NodeId, int],
    incoming: Iterable[NodeId],
    outgoing: Iterable[NodeId] = (),
) -> int:
    """Commit index under a (possibly joint) configuration.

    With an empty ``outgoing`` this is the plain majority rule over ``incoming``.
    An empty configuration places no constraint (it agrees to everything).
    """
    big = 1 << 62

    def one(cfg: list[NodeId]) -> int:
        if not cfg:
            return big
        return commit_index([match.get(v, 0) for v in cfg])

    result = min(one(list(incoming)), one(list(outgoing)))
    return 0 if result == big else result


def quorum_size_problem(voters: int, election: int, commit: int) -> str | None:
    """Why election quorum ``election`` (Q1) and commit quorum ``commit`` (Q2)
    cannot serve ``voters`` voters, or ``None`` when they can: both within
    1..voters and Q1 + Q2 > voters (every election quorum holds a voter of
    every commit quorum, so a new leader has every committed entry)."""
    if voters < 1:
        return "a configuration needs at least one voter"
    if not (isinstance(election, int) and isinstance(commit, int)):
        return f"quorum sizes must be integers, got {election!r} and {commit!r}"
    if not (1 <= election <= voters and 1 <= commit <= voters):
        return (
            f"quorum sizes Q1={election} (election) and Q2={commit} (commit) must lie "
            f"in 1..{voters} for {voters} voters"
        )
    if election + commit <= voters:
        return (
            f"Q1={election} + Q2={commit} <= {voters} voters: an election quorum could "
            "miss every voter holding a committed entry (need Q1 + Q2 > n)"
        )
    return None


def quorums_intersect(a: Iterable[NodeId], a_size: int, b: Iterable[NodeId], b_size: int) -> bool:
    """True iff every ``a_size``-subset of ``a`` shares a member with every
    ``b_size``-subset of ``b`` (sizes within the sets' sizes)."""
    union = set(a)
    union.update(b)
    return a_size + b_size > len(union)


def quorum_index(values: Mapping[NodeId, int], voters: Iterable[NodeId], size: int) -> int:
    """The largest value at least ``size`` of ``voters`` reach (a missing voter
    counts as 0): with match indices, the index a quorum of that size holds."""
    ordered = sorted((values.get(v, 0) for v in voters), reverse=True)
    if size < 1 or size > len(ordered):
        return 0
    return ordered[size - 1]
