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
- **Safety monitor.** Agreement among *honest* replicas (the same command,
  result and state at every index) is checked as entries execute by
  ``runtime.sim.agreement.AgreementMonitor``, which skips the Byzantine
  replicas (they may claim anything).
- **Detections** (``DetectionLog``). Honest replicas convict equivocators with
  evidence (``quorate.core.evidence``). After every step the log compares
  the replica's evidence pool with what it saw before and records, per
  conviction (offender, statement kind, height, round), the simulated time of
  the first detection and which honest replicas made it.
- **Clients of a BFT service** (PBFT §4.1, "the client waits for f + 1
  replies with the same result"). A Byzantine replica may lie to a client,
  so a client accepts a result only when f + 1 distinct replicas gave the
  same one (the workload does the counting, ``runtime.sim.workload``). It
  sends a request to the primary that f + 1 replies named, or to every
  replica when it knows none (HotStuff, whose leader rotates; a fresh
  client), and to every replica after its resend timeout.
- **Every replica answers what it executes** (§4.1: replicas send the reply
  "directly to the client"). A backup usually learns a command from the
  pre-prepare, not from the client, so the command must say where its
  client is: the session id the client codec puts in a request
  (``session_id``) carries the client's endpoint in its low
  ``SESSION_ENDPOINT_BITS`` bits, as PBFT's request carries the client's
  identity c. ``BftReplicaService`` answers every command it executes at
  the endpoint its session names, if that is one of the run's client
  endpoints (a forged command naming a replica or nothing gets no answer);
  it knows nothing else about the client. Replies name the replica's
  primary (PBFT; ``None`` for HotStuff) so clients learn where to send; a
  Byzantine replica names itself, which cannot steer a client on its own.
- **One command, one order.** The service proposes a command with a time
  stamp that does not depend on the replica's clock, so all replicas that
  receive a request propose the same bytes and the core orders it once
  (PBFT and HotStuff both deduplicate by digest); a replica told "already
  pending" (it learnt the command from a peer first) answers when it
  executes it, like any other. A resend of a command already executed is
  answered from the result remembered for its session (the most recent
  ``MAX_REMEMBERED_RESULTS`` sessions per replica). Refusals are not
  results: the BFT client codec (``runtime.sim.protocols``) reports them
  as "ask elsewhere", which a BFT client ignores.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quorate.core.binding import parse_byzantine_spec
from quorate.core.protocol import ProtocolCore
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.state.kv import KVStore
from quorate.state.replica_time import ReplicaClock
from quorate.state.service import BftService, ClientRequest

RANDOM_BEHAVIOUR = "random"
"""Stands for a behaviour drawn from the run's seed, per replica."""
SESSION_ENDPOINT_BITS = 20
"""Low bits of a BFT client session id that hold the client's endpoint id
(room for 2**20 endpoints, replicas included)."""
_ENDPOINT_MASK = (1 << SESSION_ENDPOINT_BITS) - 1
MAX_REMEMBERED_RESULTS = 1 << 12
"""Sessions whose latest result a replica keeps to answer resends of
commands it already executed (oldest forgotten). A client resends only
while its operation is outstanding, so the sessions executed within one
operation timeout are the ones that matter."""


def session_id(process: int, endpoint: int) -> int:
    """The session id of workload ``process`` on client ``endpoint`` (a
    network id): never 0, which means "no session" to the store."""
    if not 0 <= endpoint <= _ENDPOINT_MASK:
        raise ConfigError(f"client endpoint ids must fit in {SESSION_ENDPOINT_BITS} bits, got {endpoint}")
    return ((process + 1) << SESSION_ENDPOINT_BITS) | endpoint


def session_process(session: int) -> int:
    """The workload process of a ``session_id``."""
    return (session >> SESSION_ENDPOINT_BITS) - 1


def session_endpoint(session: int) -> int:
    """The client endpoint a ``session_id`` names."""
    return session & _ENDPOINT_MASK


def max_byzantine(n: int) -> int:
    """f: Byzantine replicas ``n`` replicas tolerate (n >= 3f + 1)."""
    return (n - 1) // 3


def parse_byzantine(text: str, behaviours: Sequence[str]) -> list[tuple[int, str]]:
    """``"1:equivocate,2:random"`` -> ``[(1, "equivocate"), (2, "random")]``;
    ``ConfigError`` naming the bad part."""
    return parse_byzantine_spec(text, (*behaviours, RANDOM_BEHAVIOUR))


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
    chosen = sorted(rng.sample(range(1, nodes + 1), total))  # replicas are 1..n
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


def _evidence_pool(core: Any) -> Any:
    """The core's evidence pool (``detections``), or None if it keeps none."""
    pool = getattr(core, "pool", None)
    return getattr(core, "evidence", None) if pool is None else pool


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

    __slots__ = ("_by_key", "_watch", "byzantine")

    def __init__(self, byzantine: frozenset[NodeId]) -> None:
        self.byzantine = byzantine
        self._watch: dict[int, list[Any]] = {}
        """id(core) -> [core, its evidence pool (None: not watched), detections
        seen]. Runs after every step of every replica, so the common case is
        one look-up and one length; holding the core keeps its id unique."""
        self._by_key: dict[tuple[int, str, int, int], _Detection] = {}

    def observe(self, core: ProtocolCore, sim_s: float) -> None:
        """Called after each step of ``core``; cheap when nothing changed."""
        watch = self._watch.get(id(core))
        if watch is None or watch[0] is not core:
            # A new core (a restarted replica's pool starts empty).
            pool = None if core.id in self.byzantine else _evidence_pool(core)
            watch = self._watch[id(core)] = [core, pool, 0]
        pool = watch[1]
        if pool is None:
            return
        detections = pool.detections
        seen = watch[2]
        if len(detections) == seen:
            return
        node = int(core.id)
        for evidence in detections[seen:]:
            first = evidence.first
            key = (int(first.signer), str(first.kind), int(first.height), int(first.round))
            record = self._by_key.get(key)
            if record is None:
                record = self._by_key[key] = _Detection(*key, first_detected_s=round(sim_s, 6))
            record.detected_by.add(node)
        watch[2] = len(detections)

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


class BftReplicaService(BftService):
    """``BftService`` in the simulator: answers every command it executes at
    the endpoint its session names (see the module docstring). ``clients``
    are the run's client endpoint ids; ``clock`` signs and checks the
    replicas' time entries (``quorate.state.replica_time``) with the run's
    cost-model keys."""

    __slots__ = ("_clients", "_liar")

    def __init__(
        self,
        core: ProtocolCore,
        *,
        clients: range = range(0),
        replicas: int = 1,
        clock: ReplicaClock | None = None,
    ) -> None:
        super().__init__(core, KVStore(replicas=replicas), max_results=MAX_REMEMBERED_RESULTS, clock=clock)
        self._clients = clients
        self._liar = self._honest is not core

    def _primary_hint(self) -> int | None:
        """As ``BftService``, except that a Byzantine replica names itself."""
        primary = super()._primary_hint()
        return int(self.core.id) if primary is not None and self._liar else primary

    def _wait(self, sender: NodeId, req: ClientRequest) -> None:
        """Nothing to remember: the session names the endpoint to answer."""

    def _answer_to(self, client: int, waiting: tuple[NodeId, ClientRequest] | None) -> NodeId | None:
        endpoint = session_endpoint(client)
        return NodeId(endpoint) if endpoint in self._clients else None


def honest_nodes(nodes: int, byzantine: Mapping[NodeId, str]) -> list[NodeId]:
    return [NodeId(i) for i in range(1, nodes + 1) if NodeId(i) not in byzantine]
