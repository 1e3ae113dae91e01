"""Quorum maths, as pure functions with a naive reference in the tests.

- Crash-fault (Raft): a quorum of ``n`` voters is a majority, ``n // 2 + 1``.
- Byzantine (PBFT/HotStuff): with ``f = (n - 1) // 3`` tolerated faults, a quorum
  is ``ceil((n + f + 1) / 2)``; for ``n = 3f + 1`` that is ``2f + 1``. Any two
  quorums then intersect in at least ``f + 1`` nodes, hence in an honest one.
- Commit index (Raft §5.3/§5.4): the largest index stored on a quorum, i.e. the
  quorum-th largest match index. Under joint consensus (thesis §4.3) an entry
  must be on a quorum of *both* configurations: the minimum of the two.
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
