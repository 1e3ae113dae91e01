"""Lifeguard's dynamic suspicion timeout (Dadgar et al. 2018, §IV-B).

Theory of operation: when a member is suspected, the suspicion starts at the
maximum timeout and shrinks as *independent* accusers confirm it, so a member
that many others cannot reach is declared dead sooner, while a lone accuser
with a bad network of its own waits long enough for the suspect to refute:

    min_s = alpha · max(1, log10(n)) · period_s
    max_s = beta · min_s
    timeout(c) = max(min_s, max_s − (max_s − min_s) · log(c + 1) / log(K + 1))

after ``c`` of at most ``K`` confirmations (K is capped by the members that can
confirm: everyone but the suspect and ourselves). With K = 0 the timeout is
the minimum at once. Both functions are pure, so tests check them as a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from quorate.ids import NodeId


def suspicion_bounds(
    n_members: int, alpha: float, beta: float, period_s: float
) -> tuple[float, float]:
    """``(min_s, max_s)`` of the suspicion timeout in a group of ``n_members``."""
    min_s = alpha * max(1.0, math.log10(max(n_members, 1))) * period_s
    return min_s, beta * min_s


def suspicion_timeout(
    n_members: int,
    confirmations: int,
    k: int,
    min_s: float,
    max_s: float,
    elapsed_s: float = 0.0,
) -> float:
    """Seconds left before a suspicion with ``confirmations`` independent
    confirmations (beyond the first accuser) becomes a death, ``elapsed_s``
    after it started; never negative."""
    k_effective = min(k, max(n_members - 2, 0))
    if k_effective < 1:
        timeout = min_s
    else:
        c = min(max(confirmations, 0), k_effective)
        fraction = math.log(c + 1) / math.log(k_effective + 1)
        timeout = max(min_s, max_s - (max_s - min_s) * fraction)
    return max(timeout - elapsed_s, 0.0)


@dataclass(slots=True)
class Suspicion:
    """One running suspicion of ``member`` at ``incarnation``."""

    member: NodeId
    incarnation: int
    started: float
    accusers: set[NodeId] = field(default_factory=set)

    @property
    def confirmations(self) -> int:
        """Independent accusers beyond the first."""
        return max(len(self.accusers) - 1, 0)
