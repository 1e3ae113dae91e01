"""Analytic latency floors: what a protocol's message pattern alone costs on a network.

Theory of operation. A floor is not a measurement. It is the commit latency a
protocol would have on the paper's network if every node computed in zero
time, no link ever queued, no batch ever waited and the leader (primary)
stayed put: only the one-way delays of the messages on its critical path,
and the quorum sizes that decide which delays count. A measured latency below
its floor would mean the simulator drops part of the protocol, so the report
prints every floor beside the measurement it bounds, labelled *analytic*.

The network is the simulator's: ``n`` replicas spread round robin over
``regions`` (replica ``i`` in region ``i mod regions``), a client in each
region in turn, ``intra_region_ms`` one way inside a region and
``inter_region_ms`` between any two. A phase in which every replica sends to
every other and waits for ``k`` of them is computed exactly: replica ``j`` is
ready at the ``k``-th smallest of ``ready[i] + delay(i, j)`` over the senders
(its own message counts at no delay). The leader is replica 0 (region 0).

Patterns (one-way delays, ``→``):

- **Raft** (Ongaro & Ousterhout §5.3): client → leader; leader → followers
  (AppendEntries); followers → leader (acks); the leader commits with a
  majority (itself included) and replies: client → leader → majority round
  trip → client.
- **PBFT** (Castro & Liskov §4.2): client → primary; pre-prepare to all;
  each backup broadcasts a prepare; a replica is prepared with the
  pre-prepare and 2f prepares from others; each broadcasts a commit and
  executes with 2f + 1 commits; the client accepts f + 1 matching replies.
- **HotStuff, chained** (Yin et al. §5): client → leader; a block is
  committed when a three-chain of consecutive views forms on it: three
  rounds of proposal (leader → all) and votes (all → leader, 2f + 1), then
  the proposal carrying the third QC reaches the replicas, which execute and
  reply; the client accepts f + 1 matching replies.
- **Casper FFG** (Buterin & Griffith 2017): a transaction is final when the
  checkpoint after it is finalized: included by a proposer, then a
  justification round and a finalization round of votes by 2/3 of the
  stake, each an all-to-all broadcast; waiting for the next checkpoint
  (the protocol's own epoch length) is left out, so the floor is that of a
  transaction arriving just as a checkpoint is proposed.
- **HRB, intra-shard** (watched Raft): as Raft inside a shard whose members
  are spread over the regions like everything else.

Each floor is returned per client region and as the median over the
clients (each region equally likely), in milliseconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ANALYTIC_LABEL = "analytic floor (message pattern x one-way delays; zero CPU, no queuing, leader in region 0)"


@dataclass(frozen=True, slots=True)
class Network:
    """The paper's network, as the simulator builds it."""

    regions: int = 3
    inter_region_ms: float = 50.0
    intra_region_ms: float = 0.5

    def region_of_replica(self, i: int) -> int:
        return i % self.regions

    def delay_ms(self, a_region: int, b_region: int) -> float:
        return self.intra_region_ms if a_region == b_region else self.inter_region_ms


def max_faulty_bft(n: int) -> int:
    """f of a Byzantine fault tolerant group of n (n >= 3f + 1)."""
    return (n - 1) // 3


def _kth(values: list[float], k: int) -> float:
    """The k-th smallest (1-based) of ``values``."""
    return sorted(values)[k - 1]


def _all_to_all(network: Network, ready_ms: Sequence[float], k: int) -> list[float]:
    """When each replica holds k of the messages every replica sent at ``ready_ms``
    (its own at no delay)."""
    n = len(ready_ms)
    regions = [network.region_of_replica(i) for i in range(n)]
    out = []
    for j in range(n):
        arrivals = [ready_ms[i] + (0.0 if i == j else network.delay_ms(regions[i], regions[j])) for i in range(n)]
        out.append(_kth(arrivals, k))
    return out


def _leader_round(network: Network, n: int, start_ms: float, quorum: int) -> float:
    """Leader (replica 0) sends to all, collects ``quorum`` answers (its own included)."""
    leader = network.region_of_replica(0)
    round_trips = [
        0.0 if i == 0 else 2 * network.delay_ms(leader, network.region_of_replica(i)) for i in range(n)
    ]
    return start_ms + _kth(round_trips, quorum)


def _to_client(network: Network, ready_ms: Sequence[float], client_region: int, replies: int) -> float:
    arrivals = [t + network.delay_ms(network.region_of_replica(i), client_region) for i, t in enumerate(ready_ms)]
    return _kth(arrivals, replies)


def raft_floor_ms(network: Network, n: int, client_region: int) -> float:
    leader = network.region_of_replica(0)
    at_leader = network.delay_ms(client_region, leader)
    committed = _leader_round(network, n, at_leader, n // 2 + 1)
    return committed + network.delay_ms(leader, client_region)


def pbft_floor_ms(network: Network, n: int, client_region: int) -> float:
    f = max_faulty_bft(n)
    primary = network.region_of_replica(0)
    at_primary = network.delay_ms(client_region, primary)
    pre_prepared = [
        at_primary + (0.0 if i == 0 else network.delay_ms(primary, network.region_of_replica(i))) for i in range(n)
    ]
    # Prepares come from backups only; a replica needs the pre-prepare and 2f of them.
    regions = [network.region_of_replica(i) for i in range(n)]
    prepared = []
    for j in range(n):
        others = [pre_prepared[i] + (0.0 if i == j else network.delay_ms(regions[i], regions[j])) for i in range(1, n)]
        prepared.append(max(pre_prepared[j], _kth(others, 2 * f)) if f > 0 else pre_prepared[j])
    committed = _all_to_all(network, prepared, 2 * f + 1)
    return _to_client(network, committed, client_region, f + 1)


def hotstuff_floor_ms(network: Network, n: int, client_region: int) -> float:
    f = max_faulty_bft(n)
    leader = network.region_of_replica(0)
    t = network.delay_ms(client_region, leader)
    for _ in range(3):
        t = _leader_round(network, n, t, 2 * f + 1)
    # The proposal carrying the third QC reaches the replicas; they execute and reply.
    executed = [t + (0.0 if i == 0 else network.delay_ms(leader, network.region_of_replica(i))) for i in range(n)]
    return _to_client(network, executed, client_region, f + 1)


def casper_floor_ms(network: Network, n: int, client_region: int) -> float:
    stake_quorum = -(-2 * n // 3)  # ceil(2n/3) validators of equal stake
    proposer = network.region_of_replica(0)
    t = network.delay_ms(client_region, proposer)
    included = [t + (0.0 if i == 0 else network.delay_ms(proposer, network.region_of_replica(i))) for i in range(n)]
    justified = _all_to_all(network, included, stake_quorum)
    finalized = _all_to_all(network, justified, stake_quorum)
    return _to_client(network, finalized, client_region, 1)


FLOORS: dict[str, Callable[[Network, int, int], float]] = {
    "raft": raft_floor_ms,
    "pbft": pbft_floor_ms,
    "hotstuff": hotstuff_floor_ms,
    "casper": casper_floor_ms,
    "hrb": raft_floor_ms,
}
"""Protocol -> its floor; HRB's is its intra-shard (watched Raft) path."""

PATTERNS: dict[str, str] = {
    "raft": "client -> leader -> majority round trip -> client",
    "pbft": "client -> primary -> pre-prepare -> prepare (2f) -> commit (2f+1) -> f+1 replies",
    "hotstuff": "client -> leader -> 3 x (proposal + 2f+1 votes) -> proposal with 3rd QC -> f+1 replies",
    "casper": "client -> proposer -> inclusion -> justify (2/3 stake) -> finalize (2/3 stake) -> reply",
    "hrb": "intra-shard: client -> shard leader -> majority round trip -> client",
}


def floor_ms(protocol: str, network: Network, n: int) -> dict[str, float] | None:
    """``{"p50": ..., "by_client_region": ...}`` for ``protocol`` at ``n``
    replicas (``n`` is the shard size for HRB), or None for a protocol
    without a known pattern."""
    floor = FLOORS.get(protocol)
    if floor is None:
        return None
    by_region = [round(floor(network, n, r), 3) for r in range(network.regions)]
    return {"p50_ms": round(statistics.median(by_region), 3), "min_ms": min(by_region), "max_ms": max(by_region)}
