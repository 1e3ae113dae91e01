"""Byzantine fault tolerance in the simulator: who is faulty, what the honest
replicas commit and detect, and how clients talk to a BFT service.

Theory of operation.

- **Byzantine assignment.** ``--byzantine 1:equivocate,1:random`` names how
  many replicas run which behaviour (``quorate.pbft.BEHAVIOURS`` /
  ``quorate.hotstuff.BEHAVIOURS``); ``random`` draws one per replica.
  ``choose_byzantine`` picks the replicas and draws the behaviours from the
  run's seed, so a run stays a pure function of its configuration. More than
  f = (n - 1) // 3 Byzantine replicas void every guarantee (Castro & Liskov
  §4, Yin et al. §3): refused unless the caller explicitly allows it, which
  the tests use to show the safety check can fire.
- **Safety monitor** (``BftSafetyMonitor``). Agreement for state machine
  replication: no two *honest* replicas execute different entries at one
  index. Every honest replica's service reports each entry it applies; the
  first entry at an index is remembered and any later honest entry there must
  carry the same command. Byzantine replicas are not checked (they may claim
  anything). The first conflict raises ``InvariantViolation`` at once, like
  Raft's monitor, so the run stops where the violation happened.
- **Detections** (``DetectionLog``). Honest replicas convict equivocators with
  evidence (``quorate.core.evidence``). After every step the log compares
  the replica's evidence pool with what it saw before and records, per
  conviction (offender, statement kind, height, round), the simulated time of
  the first detection and which honest replicas made it.
- **Clients of a BFT service** (PBFT §4.1, "the client waits for f + 1
  replies with the same result"). A Byzantine replica may lie to a client,
  so a client sends each request to every replica and accepts a result only
  when f + 1 distinct replicas gave the same one (the workload does the
  counting). ``BftReplicaService`` lets every replica answer: it proposes the
  command with a time stamp that does not depend on the replica's clock, so
  all replicas propose the same bytes and the core orders the command once
  (PBFT and HotStuff both deduplicate by digest); a replica told "already
  pending" (it learnt the command from a peer first) still waits to answer.
  Refusals are not results: the BFT client codec (``runtime.sim.protocols``)
  reports them as "ask elsewhere", which a broadcasting client ignores.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from quorate.core.protocol import ProtocolCore, Queued, Refused
from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.errors import ConfigError, InvariantViolation
from quorate.ids import NodeId
from quorate.state.kv import Command, KVStore, decode_op, encode_command
from quorate.state.service import STATUS_ERROR, ClientRequest, ReplicaService

RANDOM_BEHAVIOUR = "random"
"""Stands for a behaviour drawn from the run's seed, per replica."""
BFT_COMMAND_TIME_S = 0.0
"""The log time stamp of BFT commands. Every replica must propose identical
bytes for one request (so the core orders it once); the replica's own clock
would differ between replicas. The simulated workload uses no TTLs."""


def max_byzantine(n: int) -> int:
    """f: Byzantine replicas ``n`` replicas tolerate (n >= 3f + 1)."""
    return (n - 1) // 3


def parse_byzantine(text: str, behaviours: Sequence[str]) -> list[tuple[int, str]]:
    """``"1:equivocate,2:random"`` -> ``[(1, "equivocate"), (2, "random")]``;
    ``ConfigError`` naming the bad part."""
    out: list[tuple[int, str]] = []
    text = text.strip()
    if not text or text == "none":
        return out
    allowed = (*behaviours, RANDOM_BEHAVIOUR)
    for part in text.split(","):
        count_text, sep, behaviour = part.strip().partition(":")
        if not sep:
            raise ConfigError(f"--byzantine wants COUNT:BEHAVIOUR, got {part.strip()!r}")
        try:
            count = int(count_text)
        except ValueError:
            raise ConfigError(f"--byzantine count must be an integer, got {count_text!r}") from None
        behaviour = behaviour.strip()
        if count < 0:
            raise ConfigError(f"--byzantine count must be >= 0, got {count}")
        if behaviour not in allowed:
            raise ConfigError(f"unknown Byzantine behaviour {behaviour!r}; choose one of {', '.join(allowed)}")
        if count:
            out.append((count, behaviour))
    return out


def choose_byzantine(
    rng: random.Random,
    nodes: int,
    wanted: Sequence[tuple[int, str]],
    behaviours: Sequence[str],
) -> dict[NodeId, str]:
    """Which replicas misbehave and how, drawn from ``rng``."""
    total = sum(count for count, _ in wanted)
    if total > nodes:
        raise ConfigError(f"{total} Byzantine replicas asked for, but the cluster has only {nodes}")
    chosen = sorted(rng.sample(range(nodes), total))
    # Shuffle which replica gets which behaviour, so that the first behaviour
    # listed is not always on the lowest id (view 0's primary).
    rng.shuffle(chosen)
    out: dict[NodeId, str] = {}
    it = iter(chosen)
    for count, behaviour in wanted:
        for _ in range(count):
            node = NodeId(next(it))
            out[node] = rng.choice(list(behaviours)) if behaviour == RANDOM_BEHAVIOUR else behaviour
    return dict(sorted(out.items()))


class BftSafetyMonitor:
    """Agreement among honest replicas (see the module docstring)."""

    __slots__ = ("byzantine", "checked_entries", "committed")

    def __init__(self, byzantine: frozenset[NodeId] = frozenset()) -> None:
        self.byzantine = byzantine
        self.committed: dict[int, tuple[bytes, NodeId]] = {}
        """Index -> (command, first honest replica that executed it)."""
        self.checked_entries = 0

    def record(self, node: NodeId, entry: Entry) -> None:
        """``node`` executed ``entry``; raise ``InvariantViolation`` on a conflict."""
        if node in self.byzantine:
            return
        self.checked_entries += 1
        first = self.committed.get(entry.index)
        if first is None:
            self.committed[entry.index] = (entry.data, node)
            return
        if first[0] != entry.data:
            raise InvariantViolation(
                f"agreement violated: honest replicas {first[1]} and {node} executed "
                f"different commands at index {entry.index}"
            )


def _evidence_count(core: Any) -> int:
    pool = getattr(core, "pool", None) or getattr(core, "evidence", None)
    if pool is None:
        return 0
    return len(pool.detections)


def _evidence_list(core: Any) -> list[Any]:
    pool = getattr(core, "pool", None) or getattr(core, "evidence", None)
    return [] if pool is None else list(pool.detections)


@dataclass(slots=True)
class _Detection:
    offender: int
    kind: str
    height: int
    round: int
    first_detected_s: float
    detected_by: set[int] = field(default_factory=set)


class DetectionLog:
    """Convictions of equivocators by honest replicas, with simulated times."""

    __slots__ = ("_by_key", "_seen", "byzantine")

    def __init__(self, byzantine: frozenset[NodeId]) -> None:
        self.byzantine = byzantine
        self._seen: dict[int, tuple[int, int]] = {}  # node -> (id(core), detections seen)
        self._by_key: dict[tuple[int, str, int, int], _Detection] = {}

    def observe(self, core: ProtocolCore, sim_s: float) -> None:
        """Called after each step of ``core``; cheap when nothing changed."""
        node = core.id
        if node in self.byzantine:
            return
        count = _evidence_count(core)
        marker = id(core)
        seen_core, seen = self._seen.get(node, (marker, 0))
        if seen_core != marker:
            seen = 0  # a restarted replica: its pool starts empty
        if count == seen:
            if seen_core != marker:
                self._seen[node] = (marker, 0)
            return
        for evidence in _evidence_list(core)[seen:]:
            first = evidence.first
            key = (int(first.signer), str(first.kind), int(first.height), int(first.round))
            record = self._by_key.get(key)
            if record is None:
                record = self._by_key[key] = _Detection(*key, first_detected_s=round(sim_s, 6))
            record.detected_by.add(int(node))
        self._seen[node] = (marker, count)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "offender": d.offender,
                "kind": d.kind,
                "height": d.height,
                "round": d.round,
                "first_detected_s": d.first_detected_s,
                "detected_by": len(d.detected_by),
                "detected_by_nodes": sorted(d.detected_by),
            }
            for d in sorted(self._by_key.values(), key=lambda d: (d.first_detected_s, d.offender))
        ]


def excluded_of(core: ProtocolCore | None) -> list[int]:
    """The replicas ``core`` has convicted and excluded (empty for a crashed node)."""
    excluded = getattr(core, "excluded", None)
    return sorted(int(x) for x in excluded) if excluded else []


class BftReplicaService(ReplicaService):
    """``ReplicaService`` for a BFT core: proposes replica-independent bytes,
    reports executed entries to the safety monitor (see the module docstring)."""

    __slots__ = ("_record",)

    def __init__(self, core: ProtocolCore, *, record: Callable[[NodeId, Entry], None] | None) -> None:
        super().__init__(core, KVStore(), read_mode="log")
        self._record = record

    def on_client_request(self, sender: NodeId, req: ClientRequest, now: float) -> None:
        try:
            op = decode_op(req.op)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._reply(sender, req, STATUS_ERROR, error="malformed operation")
            return
        command = Command(req.client, req.seq, op, BFT_COMMAND_TIME_S)
        outcome = self.core.propose(encode_command(command), now)
        if isinstance(outcome, Queued) or (
            isinstance(outcome, Refused) and ("already pending" in outcome.reason or "already waiting" in outcome.reason)
        ):
            self._by_session[(req.client, req.seq)] = (sender, req)
        else:
            self._refuse(sender, req, outcome)

    def apply(self, entry: Entry) -> None:
        if self._record is not None and entry.kind == ENTRY_NORMAL:
            self._record(self.core.id, entry)
        super().apply(entry)


def honest_nodes(nodes: int, byzantine: Mapping[NodeId, str]) -> list[NodeId]:
    return [NodeId(i) for i in range(nodes) if NodeId(i) not in byzantine]
