"""What a quorum manager knows about the nodes: measurements, and the scores
computed from them.

Theory of operation
-------------------
A runtime measures each node over an observation window and hands the
results over as ``Observations``: per node its region, the round-trip times
it measured to each peer it reached (probes, or its transport's own
figures), the share of probes lost, the share of the window it was up, and
how busy its CPU was; for the cluster, where the clients are (the share of
requests from each region). Nothing here reads a clock or a socket: the
same observations always give the same scores and plans.

Derived measures (all from those numbers, never from configuration):

- ``rtt_ms(a, b)``: the mean of what ``a`` measured to ``b`` and ``b`` to
  ``a`` (either alone if only one side measured); ``None`` if neither did.
- ``distance_ms(node, region)``: the median RTT from ``node`` to the live
  nodes of ``region`` (0 for a node alone in its own region).
- ``client_distance_ms(node)``: the RTT measured from the clients to the node
  when there is one (``client_rtt_ms``), else ``distance_ms`` to each client
  region, weighted by that region's share of the requests (0 when clients
  are unknown: no preference).
- ``centrality_ms(node)``: the median RTT to every other live node.
- Scores in [0, 1] (higher is better): ``latency_score`` =
  1 / (1 + (client distance + centrality) / ``LATENCY_SCALE_MS``);
  ``performance_score`` = (1 - CPU load) / (1 + centrality / scale);
  ``reliability_score`` = uptime x (1 - loss). ``connectivity`` is the share
  of the other nodes a node measured an RTT to.

A measurement that is missing counts as ``UNREACHABLE_MS``: a node nobody
can reach never looks close.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import median

from quorate.errors import ConfigError
from quorate.ids import NodeId

UNREACHABLE_MS = 10_000.0
"""RTT assumed where none was measured (a node no probe reached)."""
LATENCY_SCALE_MS = 50.0
"""RTT at which a latency score halves (one inter-region hop, roughly)."""


@dataclass(frozen=True, slots=True)
class NodeObservation:
    """One node over the observation window."""

    node: NodeId
    region: str
    rtt_ms: Mapping[NodeId, float] = field(default_factory=dict)
    """Measured round-trip time to each peer it reached (ms)."""
    loss: float = 0.0
    """Share of its probes that got no answer, in [0, 1]."""
    uptime: float = 1.0
    """Share of the window it was up, in [0, 1]."""
    cpu_load: float = 0.0
    """Share of the window its CPU was busy, in [0, 1]."""
    alive: bool = True
    """Up at the end of the window."""
    client_rtt_ms: float | None = None
    """Round trip measured from where the clients are, when someone measured
    it (an operator's host, a load balancer); else estimated by region."""

    def problem(self) -> str | None:
        """Why this observation is not usable, or ``None``."""
        rtt = self.client_rtt_ms
        if rtt is not None and not (isinstance(rtt, int | float) and math.isfinite(rtt) and rtt >= 0):
            return f"node {self.node}: client_rtt_ms must be a finite number >= 0 ms, got {rtt!r}"
        for name in ("loss", "uptime", "cpu_load"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                return f"node {self.node}: {name} must be in [0, 1], got {value!r}"
        for peer, rtt in self.rtt_ms.items():
            if not (isinstance(rtt, int | float) and math.isfinite(rtt) and rtt >= 0):
                return f"node {self.node}: RTT to {peer} must be a finite number >= 0 ms, got {rtt!r}"
        return None


@dataclass(frozen=True, slots=True)
class Observations:
    """Every node's observation, and where the clients are."""

    nodes: Mapping[NodeId, NodeObservation]
    client_regions: Mapping[str, float] = field(default_factory=dict)
    """Region -> share of client requests (normalised when used)."""

    def problem(self) -> str | None:
        """Why these observations cannot be planned from, or ``None``."""
        if not self.nodes:
            return "no node was observed"
        for node, observation in self.nodes.items():
            if observation.node != node:
                return f"observation of node {observation.node} filed under {node}"
            problem = observation.problem()
            if problem is not None:
                return problem
        for region, share in self.client_regions.items():
            if not (isinstance(share, int | float) and math.isfinite(share) and share >= 0):
                return f"client share of region {region!r} must be >= 0, got {share!r}"
        return None

    def check(self) -> Observations:
        """Raise ``ConfigError`` naming the first problem; return self."""
        problem = self.problem()
        if problem is not None:
            raise ConfigError(problem)
        return self

    # ------------------------------------------------------------ measures
    def region(self, node: NodeId) -> str:
        return self.nodes[node].region

    def regions(self) -> dict[str, list[NodeId]]:
        """Region -> its nodes (sorted)."""
        out: dict[str, list[NodeId]] = {}
        for node in sorted(self.nodes):
            out.setdefault(self.nodes[node].region, []).append(node)
        return out

    def rtt_ms(self, a: NodeId, b: NodeId) -> float | None:
        if a == b:
            return 0.0
        there = self.nodes[a].rtt_ms.get(b) if a in self.nodes else None
        back = self.nodes[b].rtt_ms.get(a) if b in self.nodes else None
        if there is None:
            return back
        if back is None:
            return there
        return (there + back) / 2

    def rtt_or_unreachable(self, a: NodeId, b: NodeId) -> float:
        rtt = self.rtt_ms(a, b)
        return UNREACHABLE_MS if rtt is None else rtt

    def distance_ms(self, node: NodeId, region: str) -> float:
        peers = [
            p for p in self.nodes if p != node and self.nodes[p].alive and self.nodes[p].region == region
        ]
        if not peers:
            return 0.0 if self.nodes[node].region == region else UNREACHABLE_MS
        return float(median(self.rtt_or_unreachable(node, p) for p in peers))

    def client_distance_ms(self, node: NodeId) -> float:
        measured = self.nodes[node].client_rtt_ms
        if measured is not None:
            return float(measured)
        shares = {r: s for r, s in self.client_regions.items() if s > 0}
        total = sum(shares.values())
        if not total:
            return 0.0
        return sum(self.distance_ms(node, r) * s for r, s in shares.items()) / total

    def centrality_ms(self, node: NodeId) -> float:
        others = [p for p in self.nodes if p != node and self.nodes[p].alive]
        if not others:
            return 0.0
        return float(median(self.rtt_or_unreachable(node, p) for p in others))

    def connectivity(self, node: NodeId) -> float:
        others = [p for p in self.nodes if p != node]
        if not others:
            return 1.0
        return sum(1 for p in others if self.rtt_ms(node, p) is not None) / len(others)

    # ------------------------------------------------------------ scores
    def latency_score(self, node: NodeId) -> float:
        cost = self.client_distance_ms(node) + self.centrality_ms(node)
        return 1.0 / (1.0 + cost / LATENCY_SCALE_MS)

    def performance_score(self, node: NodeId) -> float:
        o = self.nodes[node]
        return (1.0 - o.cpu_load) / (1.0 + self.centrality_ms(node) / LATENCY_SCALE_MS)

    def reliability_score(self, node: NodeId) -> float:
        o = self.nodes[node]
        return o.uptime * (1.0 - o.loss) if o.alive else 0.0


def observations_from_json(data: object) -> Observations:
    """``Observations`` from their JSON form::

        {"nodes": {"1": {"region": "a", "rtt_ms": {"2": 1.2}, "loss": 0.0,
                         "uptime": 1.0, "cpu_load": 0.1, "alive": true,
                         "client_rtt_ms": 3.0}, ...},
         "client_regions": {"a": 1.0}}

    Every field but ``region`` may be left out. ``ConfigError`` names the
    first thing that is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        raise ConfigError('observations must be an object with a "nodes" object')
    nodes: dict[NodeId, NodeObservation] = {}
    try:
        for key, raw in data["nodes"].items():
            node = NodeId(int(key))
            if not isinstance(raw, dict) or not isinstance(raw.get("region"), str):
                raise ConfigError(f'node {key}: an object with a "region" string is needed')
            rtts = raw.get("rtt_ms", {})
            if not isinstance(rtts, dict):
                raise ConfigError(f"node {key}: rtt_ms must be an object of peer -> ms")
            nodes[node] = NodeObservation(
                node,
                raw["region"],
                {NodeId(int(peer)): float(ms) for peer, ms in rtts.items()},
                loss=float(raw.get("loss", 0.0)),
                uptime=float(raw.get("uptime", 1.0)),
                cpu_load=float(raw.get("cpu_load", 0.0)),
                alive=bool(raw.get("alive", True)),
                client_rtt_ms=None if raw.get("client_rtt_ms") is None else float(raw["client_rtt_ms"]),
            )
        clients = data.get("client_regions", {})
        if not isinstance(clients, dict):
            raise ConfigError("client_regions must be an object of region -> share")
        shares = {str(region): float(share) for region, share in clients.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad observations: {exc}") from None
    return Observations(nodes, shares).check()
