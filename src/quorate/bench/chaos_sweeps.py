"""The chaos sweeps: every protocol, with and without Byzantine replicas.

One sweep is (protocol, n, Byzantine or not); one run is a sweep and a seed.
Each run loads the cluster with open-loop clients through a chaos phase
(crashes and restarts, partitions, one-way cuts, loss, reordering, slow
nodes, clock skew), heals everything, and must then:

- break no safety invariant (the protocol's own monitor, agreement on
  commands, results and state at every index, and no acknowledged write
  lost, all checked online);
- leave a linearizable client history (``quorate.check``, offline);
- commit again within ``LIVENESS_BOUND_S`` of the heal.

"With Byzantine replicas" means f = (n - 1) // 3 replicas each running a
behaviour drawn from the seed; chaos then crashes none of the others (f is
used up). "Without" means no Byzantine replica, and chaos crashes up to what
the protocol tolerates: f for the BFT protocols, a minority for Raft. The
second is where restart bugs live, and the first cannot find them: both run.

Multi-Raft sweeps (``MULTIRAFT_SWEEPS``) run the same phases over many
range groups per node, with splits and replica moves going on.

HRB sweeps (``HRB_SWEEPS``) run a small deployment (two shards of seven,
a core of four, two regions, the bank workload with cross-shard transfers)
in each shard quorum mode, with and without Byzantine shard members within
what the mode claims to tolerate: ``byzantine`` mode f = 2 members per shard
of any behaviour, ``majority`` mode Byzantine leaders only (its followers are
assumed crash-only), one per run; the behaviours are a function of the seed
given to ``HrbSweep.config`` (``quorate sweep --sweep`` replaces only the
seed of ``config(0)``, so it keeps seed 0's). Each run must also keep
atomicity across shards (``quorate.bench.hrb_sim``).

These definitions are shared by the test suite (``tests/sim``) and by
``quorate sweep --sweep NAME``, which runs the same seeds in parallel
(``quorate.bench.sweep``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quorate.bench.hrb_sim import HrbRunConfig
from quorate.errors import ConfigError
from quorate.runtime.sim import SimConfig
from quorate.runtime.sim.multiraft import MultiRaftConfig

DURATION_S = 12.0
"""Simulated seconds of load per run."""
HEAL_AT_S = 6.0
"""Chaos until here (restarts included); then everything heals."""
LIVENESS_BOUND_S = 4.0
"""From the heal to the first operation completed."""
RATE_OPS = 40.0
"""Open-loop client load: enough operations to check, cheap to simulate."""
CLIENTS = 4
OP_TIMEOUT_S = 1.5
# Short timeouts let a BFT cluster rotate past f faulty leaders within the
# liveness bound (see tests/sim/test_sim_bft.py for how the caps were found).
OPTIONS: dict[str, dict[str, Any]] = {
    "raft": {},
    "pbft": {"view_change_timeout_s": 0.5, "retransmit_interval_s": 0.125},
    "hotstuff": {"view_timeout_s": 0.25, "max_view_timeout_s": 0.5},
    "casper": {"slot_timeout_s": 0.25, "max_slot_timeout_s": 0.5, "justify_wait_s": 0.1},
}


@dataclass(frozen=True)
class Sweep:
    protocol: str
    nodes: int
    byzantine: bool
    reconfigure: bool = False
    """Raft: a random membership change every ``RECONFIGURE_EVERY_S`` until
    the heal (random voter sets, flexible quorums, one step or joint)."""

    def __str__(self) -> str:
        kind = "byzantine" if self.byzantine else "crash"
        return f"{self.protocol}-n{self.nodes}-{kind}{'-joint' if self.reconfigure else ''}"

    def config(self, seed: int) -> SimConfig:
        f = (self.nodes - 1) // 3
        return SimConfig(
            protocol=self.protocol,
            nodes=self.nodes,
            clients=CLIENTS,
            rate_ops=RATE_OPS,
            duration_s=DURATION_S,
            op_timeout_s=OP_TIMEOUT_S,
            faults="chaos",
            heal_at_s=HEAL_AT_S,
            byzantine=f"{f}:random" if self.byzantine else "",
            liveness_bound_s=LIVENESS_BOUND_S,
            seed=seed,
            protocol_options=dict(OPTIONS[self.protocol]),
            reconfigure_every_s=RECONFIGURE_EVERY_S if self.reconfigure else 0.0,
        )


SWEEPS = (
    *(Sweep("raft", n, False) for n in (4, 5, 7)),
    *(Sweep(p, n, byz) for p in ("pbft", "hotstuff", "casper") for n in (4, 7) for byz in (False, True)),
)
RECONFIGURE_EVERY_S = 0.5
"""A random membership change this often (``JOINT_SWEEPS``)."""
JOINT_SWEEPS = tuple(Sweep("raft", n, False, reconfigure=True) for n in (5, 7))
"""Raft with random joint-consensus changes and flexible quorums through the
chaos phase; the monitor then also checks election quorums, quorum
intersection between consecutive configurations and one change at a time."""


@dataclass(frozen=True)
class MultiRaftSweep:
    """Multi-Raft under the same chaos: ``groups`` ranges of 3 replicas on
    ``nodes`` nodes, splitting (and moving a replica after each split) every
    ``MULTIRAFT_SPLIT_AT_OPS`` commands a range applies."""

    nodes: int
    groups: int

    def __str__(self) -> str:
        return f"multiraft-n{self.nodes}-g{self.groups}"

    def config(self, seed: int) -> MultiRaftConfig:
        return MultiRaftConfig(
            nodes=self.nodes,
            groups=self.groups,
            replicas=3,
            split_at_ops=MULTIRAFT_SPLIT_AT_OPS,
            clients=CLIENTS,
            rate_ops=MULTIRAFT_RATE_OPS,
            duration_s=DURATION_S,
            op_timeout_s=OP_TIMEOUT_S,
            faults="chaos",
            heal_at_s=HEAL_AT_S,
            liveness_bound_s=LIVENESS_BOUND_S,
            seed=seed,
        )


MULTIRAFT_SPLIT_AT_OPS = 20
MULTIRAFT_RATE_OPS = 80.0
"""Twice the single-group load: spread over the ranges, enough to split them."""
MULTIRAFT_SWEEPS = (MultiRaftSweep(5, 8), MultiRaftSweep(9, 24))


HRB_SHARD_BEHAVIOURS = {
    "byzantine": ("equivocating-leader", "censoring-leader", "forging-leader", "slow-leader", "silent-leader", "lying-follower"),
    "majority": ("equivocating-leader", "censoring-leader", "forging-leader", "slow-leader", "silent-leader"),
}
"""What each shard quorum mode claims to tolerate (``majority``: no lying follower)."""


@dataclass(frozen=True)
class HrbSweep:
    quorum: str
    byzantine: bool

    def __str__(self) -> str:
        return f"hrb-{self.quorum}-{'byzantine' if self.byzantine else 'crash'}"

    def config(self, seed: int) -> HrbRunConfig:
        behaviours = HRB_SHARD_BEHAVIOURS[self.quorum]
        byzantine = ""
        if self.byzantine:
            # Drawn from the seed, but a pure function of it (a sweep replaces only the seed).
            first, second = behaviours[seed % len(behaviours)], behaviours[(seed // len(behaviours)) % len(behaviours)]
            count = 2 if self.quorum == "byzantine" else 1
            byzantine = f"{count}:{first}" if first == second or count == 1 else f"1:{first},1:{second}"
        return HrbRunConfig(
            nodes=14,
            shard_size=7,
            core=4,
            regions=2,
            inter_region_ms=20.0,
            quorum=self.quorum,
            byzantine=byzantine,
            faults="chaos",
            heal_at_s=HEAL_AT_S,
            duration_s=DURATION_S,
            liveness_bound_s=LIVENESS_BOUND_S + 4.0,
            drain_s=6.0,
            seed=seed,
        )


HRB_SWEEPS = tuple(HrbSweep(q, b) for q in ("byzantine", "majority") for b in (False, True))


def sweep_named(name: str) -> Sweep | MultiRaftSweep | HrbSweep:
    """The sweep called ``name`` (``raft-n5-crash``, ``pbft-n4-byzantine``,
    ``multiraft-n5-g8``, ``hrb-byzantine-byzantine``...)."""
    every: tuple[Sweep | MultiRaftSweep | HrbSweep, ...] = (*SWEEPS, *MULTIRAFT_SWEEPS, *HRB_SWEEPS)
    for sweep in every:
        if str(sweep) == name:
            return sweep
    raise ConfigError(f"no sweep named {name!r}; the sweeps are {', '.join(map(str, every))}")
