"""Reputation: a score every node computes identically from what the core log
records, and the choice of the next core from it (docs/hrb.md section 5).

Theory of operation. The core state machine (``quorate.hrb.core.state``)
records **facts** about nodes as it applies its log, and only there, so every
core member — and every later core, which starts from the same state — holds
the same facts. The facts are counts (``NodeFacts``):

- good, as uptime proxies: ``served`` (epochs served in the core),
  ``requests`` (valid transaction requests and shard votes the node signed as
  its shard's leader), ``acks`` (its signed acknowledgement inside a
  byzantine-mode vote proof), ``answered`` (challenges answered, as its
  shard's leader reports them);
- bad: ``missed`` (challenges missed, a key generation it was chosen for and
  sat out), ``invalid`` (signed inputs the core refused as invalid: a
  malformed transaction, a vote for a transaction the core never began, a
  vote contradicting its shard's earlier one), ``failed_accusations``
  (removal proposals whose evidence did not verify);
- ``evicted``: verified evidence convicted the node. It is never chosen again.

A score (``score``) is an integer: the good counts, summed and **capped**
(``ReputationWeights.good_cap``) then divided into coarse buckets, minus the
weighted bad counts (not capped). The cap is deliberate: every node that
behaves well reaches the same top score, so the core rotates among them
(ties are broken by a beacon hash that changes each epoch) instead of the
longest-serving nodes keeping it forever; misbehaviour always costs. Since
the facts are counts, the order in which they were recorded never matters.

Selection (``select_core``): the nodes by decreasing score, ties by
SHA-256(beacon ‖ node), taking at most ⌈C/S⌉ nodes of any one shard so the
core is spread over the shards. Evicted nodes are never candidates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from quorate.errors import ConfigError
from quorate.ids import NodeId

__all__ = [
    "FACT_KINDS",
    "NodeFacts",
    "ReputationSummary",
    "ReputationWeights",
    "beacon_rank",
    "record",
    "score",
    "select_core",
    "summary",
]

FACT_KINDS = (
    "served",
    "requests",
    "acks",
    "answered",
    "missed",
    "invalid",
    "failed_accusations",
)
"""The counters of ``NodeFacts`` a fact may add to."""


class NodeFacts(msgspec.Struct, array_like=True):
    """What the core log recorded about one node (counts; see the module docstring)."""

    served: int = 0
    requests: int = 0
    acks: int = 0
    answered: int = 0
    missed: int = 0
    invalid: int = 0
    failed_accusations: int = 0
    evicted: bool = False


class ReputationWeights(msgspec.Struct, array_like=True, frozen=True):
    """How facts turn into a score (part of the core's rules: every member
    uses the same)."""

    good_cap: int = 64
    """Good counts beyond this add nothing (every well-behaved node ties)."""
    good_bucket: int = 16
    """Good counts are divided by this: the score tells apart a new node from
    a proven one, not one request from the next."""
    missed: int = 1
    invalid: int = 4
    failed_accusation: int = 8

    def validate(self) -> ReputationWeights:
        for name in ("good_cap", "good_bucket"):
            if getattr(self, name) < 1:
                raise ConfigError(f"reputation {name} must be >= 1, got {getattr(self, name)}")
        for name in ("missed", "invalid", "failed_accusation"):
            if getattr(self, name) < 0:
                raise ConfigError(f"reputation weight {name} must be >= 0, got {getattr(self, name)}")
        return self


def record(table: dict[int, NodeFacts], node: int, kind: str, count: int = 1) -> None:
    """Add ``count`` to ``node``'s ``kind`` counter (``FACT_KINDS``), or, with
    ``kind == "evicted"``, mark it evicted."""
    facts = table.get(node)
    if facts is None:
        facts = table[node] = NodeFacts()
    if kind == "evicted":
        facts.evicted = True
        return
    if kind not in FACT_KINDS:
        raise ValueError(f"unknown reputation fact {kind!r}")
    if count < 0:
        raise ValueError(f"a fact counts up, got {count}")
    setattr(facts, kind, getattr(facts, kind) + count)


def score(facts: NodeFacts | None, weights: ReputationWeights) -> int | None:
    """The node's score, or None if it is evicted (never eligible)."""
    if facts is None:
        return 0
    if facts.evicted:
        return None
    good_total = facts.served + facts.requests + facts.acks + facts.answered
    good = min(good_total, weights.good_cap) // weights.good_bucket
    bad = (
        facts.missed * weights.missed
        + facts.invalid * weights.invalid
        + facts.failed_accusations * weights.failed_accusation
    )
    return good - bad


def beacon_rank(beacon: bytes, node: int) -> bytes:
    """The tie-breaker of ``node`` under ``beacon``: unpredictable without
    the beacon, the same at every node."""
    return hashlib.sha256(b"quorate/hrb/core-rank/v1" + beacon + int(node).to_bytes(8, "big")).digest()


def select_core(
    candidates: Iterable[int],
    facts: Mapping[int, NodeFacts],
    shard_of: Mapping[int, int],
    size: int,
    shards: int,
    beacon: bytes,
    weights: ReputationWeights,
) -> tuple[NodeId, ...]:
    """The next core: up to ``size`` of ``candidates`` by score, ties by
    ``beacon_rank``, at most ⌈size/shards⌉ from any shard; sorted by id.
    Fewer than ``size`` when too few nodes are eligible."""
    if size < 1 or shards < 1:
        raise ConfigError(f"a core needs size >= 1 and shards >= 1, got {size} and {shards}")
    per_shard = -(-size // shards)
    ranked = []
    for node in set(candidates):
        s = score(facts.get(node), weights)
        if s is None:
            continue
        ranked.append((-s, beacon_rank(beacon, node), node))
    ranked.sort()
    chosen: list[NodeId] = []
    taken: dict[int, int] = {}
    for _, _, node in ranked:
        shard = shard_of.get(node, 0)
        if taken.get(shard, 0) >= per_shard:
            continue
        taken[shard] = taken.get(shard, 0) + 1
        chosen.append(NodeId(node))
        if len(chosen) == size:
            break
    return tuple(sorted(chosen))


@dataclass(frozen=True, slots=True)
class ReputationSummary:
    """A run's reputation, for reports."""

    nodes: int
    evicted: tuple[int, ...]
    min_score: int | None
    max_score: int | None
    penalised: tuple[int, ...]
    """Nodes with a negative score (misbehaviour recorded, not evicted)."""

    def to_json(self) -> dict[str, object]:
        return {
            "nodes": self.nodes,
            "evicted": list(self.evicted),
            "min_score": self.min_score,
            "max_score": self.max_score,
            "penalised": list(self.penalised),
        }


def summary(facts: Mapping[int, NodeFacts], weights: ReputationWeights) -> ReputationSummary:
    scores = {n: score(f, weights) for n, f in facts.items()}
    live = [s for s in scores.values() if s is not None]
    return ReputationSummary(
        nodes=len(facts),
        evicted=tuple(sorted(n for n, s in scores.items() if s is None)),
        min_score=min(live) if live else None,
        max_score=max(live) if live else None,
        penalised=tuple(sorted(n for n, s in scores.items() if s is not None and s < 0)),
    )
