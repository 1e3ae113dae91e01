"""Elastic scaling decisions: which shard to split, which shards to merge,
and how many keys a change of the map moves (issue 13).

Theory of operation. All inputs are observations of one window: the load
of each shard and the traffic between shards (interaction weight whose two
agents sit in the two shards, ``shard_traffic``).

- ``hot_shards``: shards whose load exceeds ``split_factor`` × the mean
  shard load, hottest first: each is split in two (``HashRing.split``).
- ``merge_plan``: while some pair fits the capacity, merge first the shards
  with the lowest traffic: the coldest shard (least load plus traffic in and
  out, i.e. the least used) is merged into the partner it exchanges the
  most traffic with among those whose combined load stays within
  ``capacity`` (so the merge also turns the most cross-shard traffic into
  intra-shard work). A shard takes part in one merge per plan, so the
  plan's merges are independent and can be ordered in any order.
- ``moved_keys``: the keys whose owner differs between two maps, with the
  (source, target) of each move, so a split can be checked to move keys
  only to the new shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import msgspec

from quorate.errors import ConfigError
from quorate.sharding.graph import InteractionGraph

__all__ = ["KeyMoves", "MergeStep", "hot_shards", "merge_plan", "moved_keys", "shard_traffic"]


class MergeStep(msgspec.Struct, frozen=True, array_like=True):
    """Shard ``absorbed`` merges into shard ``into``."""

    absorbed: int
    into: int
    combined_load: int
    traffic_between: int


class KeyMoves(msgspec.Struct, frozen=True):
    keys: int
    moved: int
    by_route: dict[str, int]
    """"source->target" -> number of keys moved that way."""

    @property
    def moved_fraction(self) -> float:
        return self.moved / self.keys if self.keys else 0.0


def shard_traffic(graph: InteractionGraph, placement: Mapping[str, int]) -> dict[tuple[int, int], int]:
    """Interaction weight between each pair of shards (a < b)."""
    out: dict[tuple[int, int], int] = {}
    for a, b, weight in graph.edges():
        sa, sb = placement[a], placement[b]
        if sa != sb:
            pair = (min(sa, sb), max(sa, sb))
            out[pair] = out.get(pair, 0) + weight
    return out


def hot_shards(loads: Mapping[int, int], split_factor: float = 1.5) -> list[int]:
    """Shards above ``split_factor`` × mean load, hottest first."""
    if split_factor <= 1.0:
        raise ConfigError(f"split_factor is above 1, got {split_factor}")
    if not loads:
        return []
    mean = sum(loads.values()) / len(loads)
    hot = [s for s, load in loads.items() if load > split_factor * mean]
    return sorted(hot, key=lambda s: (-loads[s], s))


def merge_plan(
    loads: Mapping[int, int], traffic: Mapping[tuple[int, int], int], capacity: int
) -> list[MergeStep]:
    """Independent merges, coldest shard first (module doc)."""
    if capacity < 1:
        raise ConfigError(f"capacity is a positive integer, got {capacity}")
    between: dict[int, dict[int, int]] = {s: {} for s in loads}
    for (a, b), weight in traffic.items():
        if a in between and b in between:
            between[a][b] = between[a].get(b, 0) + weight
            between[b][a] = between[b].get(a, 0) + weight
    usage = {s: loads[s] + sum(between[s].values()) for s in loads}
    free = set(loads)
    plan: list[MergeStep] = []
    for shard in sorted(loads, key=lambda s: (usage[s], s)):
        if shard not in free:
            continue
        partners = [p for p in free if p != shard and loads[shard] + loads[p] <= capacity]
        if not partners:
            continue
        into = max(partners, key=lambda p: (between[shard].get(p, 0), -usage[p], -p))
        free -= {shard, into}
        plan.append(MergeStep(shard, into, loads[shard] + loads[into], between[shard].get(into, 0)))
    return plan


def moved_keys(keys: Iterable[str], before: Callable[[str], int], after: Callable[[str], int]) -> KeyMoves:
    """Count the keys whose owner differs between ``before`` and ``after``."""
    total = moved = 0
    routes: dict[str, int] = {}
    for key in keys:
        total += 1
        old, new = before(key), after(key)
        if old != new:
            moved += 1
            route = f"{old}->{new}"
            routes[route] = routes.get(route, 0) + 1
    return KeyMoves(total, moved, dict(sorted(routes.items())))
