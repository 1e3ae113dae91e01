"""What the dashboard shows, from rounds of node statuses.

Theory of operation. A sampler asks every node for its ``Status`` each
interval and times one linearizable read (a ReadIndex round: the leader
confirms its leadership with a quorum before answering), then hands the
round to ``ClusterView.observe`` with the time it was taken. The view keeps
each node's role, term, leader, commit and applied index and its lag behind
the highest commit index seen; the leader as the nodes report it (and a
*split* when answering nodes name different leaders: a partition or an
election in progress); commits per second from the commit index between
rounds; the read latency; a bounded history of both for the charts; and
the events worth a line — a leader change, a node that stopped answering
or came back, a BFT replica's new detections or exclusions. A cluster of
many groups (multi-Raft ranges, HRB's shards and core) also reports each
group's leader, term, commit index, replicas (and a range's key bounds), as
its leader or its members see them (``GroupReport``); a group whose leader changes, or that has none, is an
event too. Nothing here does I/O or reads a clock: times come in with each
round.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

HISTORY_POINTS = 240
"""Chart points kept (two minutes at the default half-second interval)."""
EVENTS_KEPT = 100
EXCLUDED_PREFIX = "bft.excluded."
CONVICTED_PREFIX = "hrb.convicted."
"""An HRB shard member's convictions (its leader proven lying): shown as exclusions."""


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One node's answer (``up`` False: it did not answer this round)."""

    node: int
    up: bool
    role: str = ""
    term: int = 0
    leader: int | None = None
    commit_index: int = 0
    applied_index: int = 0
    detections: int = 0
    excluded: tuple[str, ...] = ()

    @classmethod
    def from_status(cls, node: int, status: Any) -> NodeReport:
        """From a ``StatusReply`` (None: no answer)."""
        if status is None:
            return cls(node, False)
        metrics = status.metrics
        return cls(
            node=node,
            up=True,
            role=status.role,
            term=status.term,
            leader=status.leader,
            commit_index=status.commit_index,
            applied_index=status.applied_index,
            detections=int(metrics.get("bft.detections", 0)) + sum(1 for k in metrics if k.startswith(CONVICTED_PREFIX)),
            excluded=tuple(sorted(
                k.removeprefix(EXCLUDED_PREFIX).removeprefix(CONVICTED_PREFIX)
                for k in metrics
                if k.startswith((EXCLUDED_PREFIX, CONVICTED_PREFIX))
            )),
        )


@dataclass(frozen=True, slots=True)
class GroupReport:
    """One group (a multi-Raft range) as its leader reports it."""

    group: int
    leader: int | None
    term: int
    commit_index: int
    replicas: tuple[int, ...]
    start: str | None = None
    end: str | None = None
    quiesced: bool = False
    kind: str = "range"
    """``range`` (multi-Raft), ``shard`` or ``core`` (HRB)."""

    @classmethod
    def from_view(cls, view: Any) -> GroupReport:
        """From a ``RangeView`` of the replica that leads the range."""
        return cls(
            group=view.range_id,
            leader=view.leader,
            term=view.term,
            commit_index=view.commit_index,
            replicas=tuple(view.replicas),
            start=view.start,
            end=view.end,
            quiesced=view.quiesced,
        )


class ClusterView:
    """The dashboard's state (see the module docstring)."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.nodes: dict[int, NodeReport] = {}
        self.leader: int | None = None
        self.split = False
        self.rounds = 0
        self.history: deque[dict[str, float | None]] = deque(maxlen=HISTORY_POINTS)
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self._last: tuple[float, int] | None = None  # (time, highest commit index)
        self.groups: dict[tuple[str, int], GroupReport] = {}
        self.leaderless: list[int] = []

    def observe(
        self,
        at_s: float,
        reports: list[NodeReport],
        read_latency_s: float | None,
        groups: list[GroupReport] | None = None,
        hosted: set[int] | None = None,
    ) -> None:
        """One sampling round taken at ``at_s`` (seconds, any monotonic
        origin); ``groups``: the groups that have a leader, ``hosted``: every
        group some answering node hosts (both ``None`` for a one-group
        cluster)."""
        self.rounds += 1
        if groups is not None:
            self._observe_groups(at_s, groups, hosted or set())
        for report in reports:
            previous = self.nodes.get(report.node)
            if previous is not None and previous.up != report.up:
                self._event(at_s, "node", f"n{report.node} {'answers again' if report.up else 'stopped answering'}")
            if previous is not None and report.up and report.detections > previous.detections:
                self._event(at_s, "detection", f"n{report.node} detected {report.detections - previous.detections} misbehaviour(s)")
            if previous is not None and report.up and set(report.excluded) - set(previous.excluded):
                newly = ", ".join(sorted(set(report.excluded) - set(previous.excluded)))
                self._event(at_s, "exclusion", f"n{report.node} excluded {newly}")
            self.nodes[report.node] = report
        named = {r.leader for r in reports if r.up and r.leader is not None}
        self.split = len(named) > 1
        leader = max(named, key=lambda n: max(r.term for r in reports if r.up and r.leader == n)) if named else None
        core = [g for g in groups or () if g.kind == "core"]
        if core or any(g.kind == "shard" for g in groups or ()):
            # HRB: nodes name their own shard's leader; the header shows the core's.
            self.split = False
            leader = core[0].leader if core else None
        if leader != self.leader and self.rounds > 1:
            self._event(at_s, "leader", f"leader is now n{leader}" if leader is not None else "no leader")
        self.leader = leader
        commit = max((r.commit_index for r in reports if r.up), default=None)
        rate = None
        if commit is not None:
            if self._last is not None and at_s > self._last[0]:
                rate = max(0.0, (commit - self._last[1]) / (at_s - self._last[0]))
            self._last = (at_s, commit)
        self.history.append({
            "t": round(at_s, 3),
            "commits_per_s": None if rate is None else round(rate, 1),
            "read_ms": None if read_latency_s is None else round(read_latency_s * 1e3, 2),
        })

    def _observe_groups(self, at_s: float, groups: list[GroupReport], hosted: set[int]) -> None:
        led = {(g.kind, g.group): g for g in groups}
        kinds = {g.kind for g in groups} or {"range"}
        for key, report in led.items():
            previous = self.groups.get(key)
            was_leaderless = previous is None and key[1] in self.leaderless
            if (previous is not None and previous.leader != report.leader) or was_leaderless:
                self._event(at_s, "leader", f"{key[0]} {key[1]}: leader is now {_name(report.leader)}")
        # Groups some node hosts but no one leads (``hosted`` names them by id).
        leaderless = sorted(g for g in hosted if not any((kind, g) in led for kind in kinds))
        for group in leaderless:
            for kind in kinds:
                if (kind, group) in self.groups:
                    self._event(at_s, "leader", f"{kind} {group}: no leader")
        self.groups = led
        self.leaderless = leaderless

    def _event(self, at_s: float, kind: str, text: str) -> None:
        self.events.append({"t": round(at_s, 3), "kind": kind, "text": text})

    def snapshot(self) -> dict[str, Any]:
        """Everything the page draws, as JSON-ready data."""
        high = max((r.commit_index for r in self.nodes.values() if r.up), default=0)
        leader_report = self.nodes.get(self.leader) if self.leader is not None else None
        return {
            "endpoints": self.endpoints,
            "leader": self.leader,
            "term": leader_report.term if leader_report is not None else None,
            "split": self.split,
            "nodes_up": sum(1 for r in self.nodes.values() if r.up),
            "nodes": [
                {
                    "node": r.node, "up": r.up, "role": r.role if r.up else "down", "term": r.term,
                    "leader": r.leader, "commit_index": r.commit_index, "applied_index": r.applied_index,
                    "lag": high - r.commit_index if r.up else None, "detections": r.detections,
                    "excluded": list(r.excluded),
                }
                for r in sorted(self.nodes.values(), key=lambda r: r.node)
            ],
            "history": list(self.history),
            "events": list(self.events),
            "rounds": self.rounds,
            "groups": [
                {
                    "group": g.group, "leader": g.leader, "term": g.term, "commit_index": g.commit_index,
                    "replicas": list(g.replicas), "start": g.start, "end": g.end, "quiesced": g.quiesced,
                    "kind": g.kind,
                }
                for g in self.groups.values()
            ],
            "groups_leaderless": list(self.leaderless),
            "leaders_per_node": self._leaders_per_node(),
        }

    def _leaders_per_node(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for g in self.groups.values():
            if g.leader is not None:
                counts[_name(g.leader)] = counts.get(_name(g.leader), 0) + 1
        return dict(sorted(counts.items()))


def _name(node: int | None) -> str:
    return "none" if node is None else f"n{node}"


__all__ = ["ClusterView", "GroupReport", "NodeReport"]
