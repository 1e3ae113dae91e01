"""Honest scope: how often a randomly dealt shard holds too many Byzantine
members for its commit rule (docs/hrb.md section 6).

Theory of operation. N nodes, of which f = ⌊(N − 1)/3⌋ are Byzantine (the
most a system of N tolerates as a whole), are dealt into shards by a
permutation the adversary cannot choose (the genesis beacon, later the
core's). A shard of s members drawn that way holds k Byzantine ones with the
hypergeometric probability

    P(k) = C(f, k) · C(N − f, s − k) / C(N, s).

Two thresholds matter:

- **a Byzantine third**: k > ⌊(s − 1)/3⌋, more than a shard of s tolerates
  with ``quorum = "byzantine"`` (2f + 1 signed acknowledgements of 3f + 1);
  such a shard can certify a log entry its honest members never stored;
- **a Byzantine majority**: k > ⌊s/2⌋, enough to commit alone under
  ``quorum = "majority"``. That mode assumes crash-only followers anyway:
  even one lying follower can acknowledge an entry it does not store, so
  its row is an upper bound on how safe it is, not a guarantee.

``shard_risk`` gives both probabilities for one shard, exactly (integer
binomials, ``fractions.Fraction``; no sampling). ``deployment_risk`` gives the
probability that *any* shard of a whole deal (⌈N/s⌉ shards whose sizes
differ by at most one) crosses a threshold, also exactly: a dynamic program
over the shards counts the ways to place the f Byzantine nodes so that every
shard stays within its bound. ``shard_byzantine_share`` is what the simulator
reports for the placement it actually dealt (largest Byzantine share, and a
histogram of Byzantine members per shard).

What HRB does about a bad draw: shards are assigned by a beacon the
adversary cannot choose, reshuffled periodically (so a bad placement does not
last), larger shards make the tail thinner (the table shows how much), and
``quorum = "byzantine"`` raises the bar from a majority to a third.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from quorate.errors import ConfigError

__all__ = [
    "DeploymentRisk",
    "ShardRisk",
    "ShareReport",
    "byzantine_nodes",
    "deployment_risk",
    "format_table",
    "hypergeometric",
    "majority_bound",
    "shard_byzantine_share",
    "shard_risk",
    "shard_sizes",
    "table",
    "third_bound",
]


def byzantine_nodes(nodes: int) -> int:
    """f = ⌊(N − 1)/3⌋: the most Byzantine nodes a system of N tolerates."""
    if nodes < 1:
        raise ConfigError(f"a deployment has at least one node, got {nodes}")
    return (nodes - 1) // 3


def third_bound(shard_size: int) -> int:
    """The most Byzantine members a shard of ``shard_size`` tolerates with
    ``quorum = "byzantine"``: ⌊(s − 1)/3⌋."""
    return (shard_size - 1) // 3


def majority_bound(shard_size: int) -> int:
    """The most Byzantine members that are still not a majority: ⌊s/2⌋."""
    return shard_size // 2


def hypergeometric(nodes: int, byzantine: int, shard_size: int, k: int) -> Fraction:
    """P(a shard of ``shard_size`` drawn from ``nodes`` holds exactly ``k``
    of the ``byzantine`` ones), exactly."""
    _check(nodes, shard_size)
    if not 0 <= byzantine <= nodes:
        raise ConfigError(f"byzantine must be within 0..{nodes}, got {byzantine}")
    if k < 0 or k > shard_size:
        return Fraction(0)
    return Fraction(
        math.comb(byzantine, k) * math.comb(nodes - byzantine, shard_size - k),
        math.comb(nodes, shard_size),
    )


def _check(nodes: int, shard_size: int) -> None:
    if nodes < 1:
        raise ConfigError(f"a deployment has at least one node, got {nodes}")
    if not 1 <= shard_size <= nodes:
        raise ConfigError(f"a shard size must be within 1..{nodes}, got {shard_size}")


def _tail(nodes: int, byzantine: int, shard_size: int, above: int) -> Fraction:
    """P(k > above)."""
    return sum(
        (hypergeometric(nodes, byzantine, shard_size, k) for k in range(above + 1, shard_size + 1)),
        Fraction(0),
    )


@dataclass(frozen=True, slots=True)
class ShardRisk:
    """One shard of ``shard_size`` drawn from ``nodes`` with ``byzantine`` Byzantine."""

    nodes: int
    shard_size: int
    byzantine: int
    expected_byzantine: Fraction
    p_over_third: Fraction
    """P(k > ⌊(s − 1)/3⌋): ``quorum = "byzantine"`` is broken in this shard."""
    p_majority: Fraction
    """P(k > ⌊s/2⌋): a Byzantine majority."""


def shard_risk(nodes: int, shard_size: int, byzantine: int | None = None) -> ShardRisk:
    """The risk of one shard (``byzantine`` defaults to ⌊(N − 1)/3⌋)."""
    _check(nodes, shard_size)
    f = byzantine_nodes(nodes) if byzantine is None else byzantine
    return ShardRisk(
        nodes=nodes,
        shard_size=shard_size,
        byzantine=f,
        expected_byzantine=Fraction(f * shard_size, nodes),
        p_over_third=_tail(nodes, f, shard_size, third_bound(shard_size)),
        p_majority=_tail(nodes, f, shard_size, majority_bound(shard_size)),
    )


def shard_sizes(nodes: int, shard_size: int) -> list[int]:
    """The sizes of the ⌈N/s⌉ shards a deal of ``nodes`` makes (round robin
    over a permutation: sizes differ by at most one, larger shards first)."""
    _check(nodes, shard_size)
    count = -(-nodes // shard_size)
    base, extra = divmod(nodes, count)
    return [base + 1 if i < extra else base for i in range(count)]


@dataclass(frozen=True, slots=True)
class DeploymentRisk:
    """A whole deal of ``nodes`` into shards of about ``shard_size``."""

    nodes: int
    shard_size: int
    shards: int
    byzantine: int
    p_any_over_third: Fraction
    """P(at least one shard has more Byzantine members than ⌊(s_i − 1)/3⌋)."""
    p_any_majority: Fraction
    """P(at least one shard has a Byzantine majority)."""


def _ways_all_within(sizes: Sequence[int], byzantine: int, bounds: Sequence[int]) -> int:
    """The number of ways to choose which ``byzantine`` of sum(sizes) nodes
    are Byzantine so that shard i holds at most ``bounds[i]`` of them."""
    ways = [1] + [0] * byzantine  # ways[j]: j Byzantine placed in the shards so far
    for size, bound in zip(sizes, bounds, strict=True):
        nxt = [0] * (byzantine + 1)
        for placed, count in enumerate(ways):
            if not count:
                continue
            for k in range(min(bound, size, byzantine - placed) + 1):
                nxt[placed + k] += count * math.comb(size, k)
        ways = nxt
    return ways[byzantine]


def deployment_risk(nodes: int, shard_size: int, byzantine: int | None = None) -> DeploymentRisk:
    """The risk of a whole deal, exactly (see the module docstring)."""
    sizes = shard_sizes(nodes, shard_size)
    f = byzantine_nodes(nodes) if byzantine is None else byzantine
    if not 0 <= f <= nodes:
        raise ConfigError(f"byzantine must be within 0..{nodes}, got {f}")
    total = math.comb(nodes, f)
    within_third = _ways_all_within(sizes, f, [third_bound(s) for s in sizes])
    within_majority = _ways_all_within(sizes, f, [majority_bound(s) for s in sizes])
    return DeploymentRisk(
        nodes=nodes,
        shard_size=shard_size,
        shards=len(sizes),
        byzantine=f,
        p_any_over_third=1 - Fraction(within_third, total),
        p_any_majority=1 - Fraction(within_majority, total),
    )


def table(
    nodes: int, shard_sizes_used: Iterable[int], byzantine: int | None = None
) -> list[tuple[ShardRisk, DeploymentRisk]]:
    """One row per shard size: the risk of one shard and of the whole deal."""
    return [
        (shard_risk(nodes, s, byzantine), deployment_risk(nodes, s, byzantine))
        for s in shard_sizes_used
    ]


def _percent(p: Fraction) -> str:
    if p == 1:
        return "100 (certain)"
    value = float(p) * 100
    if value == 0:
        return "0"
    if value < 1e-3:
        return f"{value:.1e}"
    return f"{value:.3f}"


def format_table(nodes: int, shard_sizes_used: Iterable[int], byzantine: int | None = None) -> str:
    """The honest-scope table, for a person (percentages). When the shards'
    ⌊(s − 1)/3⌋ bounds add up to less than f (always the case for
    f = ⌊(N − 1)/3⌋), some shard is certain to hold a Byzantine third
    (pigeonhole): the row says "certain"."""
    f = byzantine_nodes(nodes) if byzantine is None else byzantine
    rows = table(nodes, shard_sizes_used, f)
    lines = [
        f"N = {nodes} nodes, f = {f} Byzantine; probabilities in percent",
        "shard size | shards | > third (one shard) | > third (any shard) | majority (one shard) | majority (any shard)",
        "---|---|---|---|---|---",
    ]
    for one, whole in rows:
        lines.append(
            f"{one.shard_size} | {whole.shards} | {_percent(one.p_over_third)} | "
            f"{_percent(whole.p_any_over_third)} | {_percent(one.p_majority)} | "
            f"{_percent(whole.p_any_majority)}"
        )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ShareReport:
    """The Byzantine placement a run actually dealt (``shard_byzantine_share``
    of the simulator's JSON)."""

    max_share: float
    """The largest fraction of Byzantine members in any shard."""
    histogram: dict[int, int]
    """Byzantine members per shard -> how many shards have that many."""
    shards_over_third: tuple[int, ...]
    """Shards with more Byzantine members than ``quorum = "byzantine"`` tolerates."""
    shards_with_majority: tuple[int, ...]
    """Shards with a Byzantine majority."""

    def to_json(self) -> dict[str, object]:
        return {
            "max": self.max_share,
            "histogram": {str(k): v for k, v in sorted(self.histogram.items())},
            "shards_over_third": list(self.shards_over_third),
            "shards_with_majority": list(self.shards_with_majority),
        }


def shard_byzantine_share(
    assignment: Mapping[int, Sequence[int]], byzantine: Collection[int]
) -> ShareReport:
    """The Byzantine share of each shard of ``assignment`` (shard -> members)."""
    bad = set(byzantine)
    counts: dict[int, int] = {}
    share = 0.0
    for shard, members in assignment.items():
        k = sum(1 for m in members if m in bad)
        counts[shard] = k
        if members:
            share = max(share, k / len(members))
    return ShareReport(
        max_share=share,
        histogram=dict(sorted(Counter(counts.values()).items())),
        shards_over_third=tuple(
            sorted(s for s, k in counts.items() if k > third_bound(len(assignment[s])))
        ),
        shards_with_majority=tuple(
            sorted(s for s, k in counts.items() if k > majority_bound(len(assignment[s])))
        ),
    )
