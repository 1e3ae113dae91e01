"""Range descriptors: which part of the key space a range holds, and where.

Theory of operation. The key space (every string key, ordered by code
point) is cut into *ranges* ``[start, end)``; ``end`` None is the end of the
key space, ``start`` "" its beginning. A ``RangeDescriptor`` names one range:
its id (which is also the id of the Raft group that replicates it), its
bounds, the nodes holding its replicas and its ``generation``, which grows by
one at every split of the range (so a stale request about the range is told
apart from a current one, as CockroachDB's range generation does).

``check_tiling`` is the rule every range table keeps: the ranges, sorted by
start, begin at "" and each ends where the next begins, the last at the end
of the key space, with distinct valid ids and non-empty, duplicate-free
replica lists. A table that breaks it is refused with the first reason found.

A range group starts from the same state on every replica
(``bootstrap_state``): a Raft state recovered from a snapshot at
``BOOTSTRAP_INDEX`` of ``BOOTSTRAP_TERM`` whose data is the range's image,
with the replicas as voters. So a group created by a split, on every replica
of it, begins with identical logs and identical state machines, and no data
crosses the network (a replica added later gets the snapshot from the
leader, like any lagging follower).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

import msgspec

from quorate.core.host import MAX_GROUP_ID, valid_group_id
from quorate.errors import ConfigError

__all__ = [
    "BOOTSTRAP_INDEX",
    "BOOTSTRAP_TERM",
    "META_GROUP",
    "REGISTRY_GROUP",
    "RangeDescriptor",
    "check_tiling",
    "contains",
    "hex_split_keys",
    "initial_ranges",
    "rebalance_for",
]

META_GROUP = 0
"""The group of the range table (CockroachDB's meta ranges)."""
REGISTRY_GROUP = MAX_GROUP_ID - 1
"""The group of the key registry (and private votes, DKG): every node of the
cluster is a voter, so every node applies its decisions at the same index.
Range ids stay far below it (the liveness detector has ``MAX_GROUP_ID``)."""
BOOTSTRAP_INDEX = 5
BOOTSTRAP_TERM = 5
"""A range group's log begins after a snapshot at this index and term (any
constants do, as long as every replica uses the same; CockroachDB uses 10 and 5)."""


class RangeDescriptor(msgspec.Struct, array_like=True, frozen=True):
    """Range ``range_id`` holds keys in ``[start, end)`` (``end`` None: no upper bound)."""

    range_id: int
    start: str
    end: str | None
    replicas: tuple[int, ...]
    generation: int = 1


def contains(descriptor: RangeDescriptor, key: str) -> bool:
    """True if ``key`` lies in ``descriptor``'s bounds."""
    return descriptor.start <= key and (descriptor.end is None or key < descriptor.end)


def describe(descriptor: RangeDescriptor) -> str:
    """``range 3 ["b", "d")`` for messages."""
    end = "end" if descriptor.end is None else repr(descriptor.end)
    return f"range {descriptor.range_id} [{descriptor.start!r}, {end})"


def check_replicas(replicas: Sequence[int], nodes: Collection[int] | None = None) -> str | None:
    """Why ``replicas`` cannot hold a range, or None; ``nodes`` are the
    cluster's node ids (None: any node id >= 1)."""
    if not replicas:
        return "a range needs at least one replica"
    if len(set(replicas)) != len(replicas):
        return f"replicas {list(replicas)} repeat a node"
    for node in replicas:
        if type(node) is not int or node < 1 or (nodes is not None and node not in nodes):
            return f"replica {node!r} is not a node of this cluster"
    return None


def check_tiling(descriptors: Iterable[RangeDescriptor], nodes: Collection[int] | None = None) -> str | None:
    """Why ``descriptors`` do not tile the key space, or None (module docstring)."""
    ordered = sorted(descriptors, key=lambda d: d.start)
    if not ordered:
        return "a range table needs at least one range"
    seen: set[int] = set()
    expected_start = ""
    for i, d in enumerate(ordered):
        if not valid_group_id(d.range_id) or d.range_id == META_GROUP:
            return f"range id {d.range_id!r} is not a group id within 1..{MAX_GROUP_ID}"
        if d.range_id in seen:
            return f"range id {d.range_id} appears twice"
        seen.add(d.range_id)
        if d.end is not None and d.end <= d.start:
            return f"{describe(d)} is empty"
        if d.start != expected_start:
            if d.start < expected_start:
                return f"{describe(d)} overlaps {describe(ordered[i - 1])}"
            return f"keys [{expected_start!r}, {d.start!r}) belong to no range"
        why = check_replicas(d.replicas, nodes)
        if why is not None:
            return f"{describe(d)}: {why}"
        if d.generation < 1:
            return f"{describe(d)} has generation {d.generation} (must be >= 1)"
        if d.end is None:
            if i != len(ordered) - 1:
                return f"{describe(d)} overlaps {describe(ordered[i + 1])}"
            return None
        expected_start = d.end
    return f"keys from {expected_start!r} on belong to no range"


def initial_ranges(
    split_keys: Sequence[str], nodes: Sequence[int], replicas: int, first_id: int = 1
) -> list[RangeDescriptor]:
    """Ranges cut at ``split_keys`` (sorted, distinct, none empty), ids from
    ``first_id``; range ``k``'s replicas are ``nodes[k], nodes[k+1], ...,
    nodes[k+replicas-1]`` (indices mod ``len(nodes)``), so every node holds
    about as many replicas as any other and is the first replica (the
    preferred leader) of about as many ranges."""
    count = len(nodes)
    if not 1 <= replicas <= count:
        raise ConfigError(f"replicas must be within 1..{count} (the nodes), got {replicas}")
    if any(not key for key in split_keys) or list(split_keys) != sorted(set(split_keys)):
        raise ConfigError("split keys must be distinct, non-empty and sorted")
    bounds = ["", *split_keys]
    out = []
    for k, start in enumerate(bounds):
        end = bounds[k + 1] if k + 1 < len(bounds) else None
        out.append(RangeDescriptor(first_id + k, start, end, tuple(nodes[(k + j) % count] for j in range(replicas))))
    why = check_tiling(out, nodes)
    if why is not None:
        raise ConfigError(why)
    return out


HEX_KEY_DIGITS = 4
"""``hex_split_keys`` cuts the space of keys that begin with this many hex digits."""


def hex_split_keys(ranges: int) -> list[str]:
    """Keys that cut the key space into ``ranges`` ranges of equal share of
    keys beginning with ``HEX_KEY_DIGITS`` lower-case hex digits (hashed
    keys, say: ``0000...`` to ``ffff...``); other keys fall into the ranges
    by their order (any key from ``g`` on into the last)."""
    space = 16**HEX_KEY_DIGITS
    if not 1 <= ranges <= space:
        raise ConfigError(f"ranges must be within 1..{space}, got {ranges}")
    return [format(k * space // ranges, f"0{HEX_KEY_DIGITS}x") for k in range(1, ranges)]


def rebalance_for(nodes: Sequence[int]) -> Callable[[RangeDescriptor], tuple[int, int] | None]:
    """The move a range created by a split makes: its last replica goes to the
    first node, in an order drawn from the range id, that holds none of it
    (a pure function: every replica computes the same)."""
    count = len(nodes)

    def rebalance(descriptor: RangeDescriptor) -> tuple[int, int] | None:
        if count <= len(descriptor.replicas) or len(descriptor.replicas) < 2:
            return None
        for k in range(count):
            target = nodes[(descriptor.range_id * 7919 + k) % count]
            if target not in descriptor.replicas:
                return descriptor.replicas[-1], target
        return None

    return rebalance
