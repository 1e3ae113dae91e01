"""Observations of a small cluster for the quorum tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from quorate.ids import NodeId
from quorate.quorum import NodeObservation, Observations

N = NodeId
REGIONS = {0: "a", 1: "b", 2: "c"}
INTRA_MS = 1.0
INTER_MS = 100.0


def cluster(
    nodes: int = 9,
    *,
    clients: Mapping[str, float] | None = None,
    cpu: Mapping[int, float] | None = None,
    down: Iterable[int] = (),
    slow_links: Mapping[int, float] | None = None,
    loss: Mapping[int, float] | None = None,
) -> Observations:
    """``nodes`` nodes, node i in region ``REGIONS[i % 3]``; RTT 1 ms within a
    region, 100 ms across (plus ``slow_links[i]`` on every link of node i)."""
    down = set(down)
    slow = slow_links or {}
    out = {}
    for i in range(nodes):
        rtts = {}
        for j in range(nodes):
            if j == i or j in down or i in down:
                continue
            base = INTRA_MS if i % 3 == j % 3 else INTER_MS
            rtts[N(j)] = base + slow.get(i, 0.0) + slow.get(j, 0.0)
        out[N(i)] = NodeObservation(
            N(i),
            REGIONS[i % 3],
            rtts,
            loss=(loss or {}).get(i, 0.0),
            uptime=0.0 if i in down else 1.0,
            cpu_load=(cpu or {}).get(i, 0.1),
            alive=i not in down,
        )
    return Observations(out, dict(clients if clients is not None else {"a": 1.0}))


def region_counts(voters: Iterable[NodeId]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in voters:
        counts[REGIONS[v % 3]] = counts.get(REGIONS[v % 3], 0) + 1
    return counts


