"""The shard's binding, as the registry and the simulator see it: options
parsed and refused with a reason, cores built by the simulator's own spec
(its cost-model keys, its Byzantine wrappers) that elect, commit, and
convict an equivocating leader under the binding's safety monitor."""

from __future__ import annotations

import random
from typing import Any

import pytest
from tests.unit.hrb.shard_net import StubCore, client_txn, txn

from quorate.core.protocol import Accepted
from quorate.errors import ConfigError
from quorate.hrb.messages import TxnOp
from quorate.hrb.shard.binding import ShardSettings
from quorate.hrb.shard.byzantine import BEHAVIOURS
from quorate.ids import NodeId
from quorate.protocols import binding, names
from quorate.runtime.aio.protocols import protocol_names
from quorate.runtime.sim.protocols import SpecContext, protocol_spec

MEMBERS = tuple(NodeId(n) for n in (1, 2, 3, 4))
STEP_S = 0.05


def _options(**more: Any) -> dict[str, Any]:
    genesis = StubCore().genesis
    return {
        "quorum": "byzantine",
        "shards": 2,
        "core_public_key": genesis.group_public_key.hex(),
        "core_threshold": genesis.threshold,
        "core_members": list(genesis.members),
        "election_timeout_s": 1.0,
        "heartbeat_interval_s": 0.1,
        **more,
    }


def test_the_registry_knows_the_shard_for_the_simulator_only() -> None:
    assert "hrb-shard" in names()
    assert "hrb-shard" not in protocol_names()
    b = binding("hrb-shard")
    assert b.fault_model == "byzantine" and b.simulator_only
    assert set(b.behaviours) == set(BEHAVIOURS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"quorum": "most"}, "quorum"),
        ({"no_such_option": 1}, "unknown HRB shard option"),
        ({"core_public_key": "zz"}, "hex"),
        ({"check_quorum": False}, "check_quorum"),
    ],
)
def test_bad_options_are_refused_with_a_reason(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        binding("hrb-shard").parse_config(_options(**options))


def test_a_shard_needs_its_genesis_core_key() -> None:
    settings = binding("hrb-shard").parse_config({"quorum": "byzantine"})
    assert isinstance(settings, ShardSettings) and settings.genesis is None
    with pytest.raises(ConfigError, match="core_public_key"):
        protocol_spec("hrb-shard", {"quorum": "byzantine"}, SpecContext(seed=1))


class _SpecNet:
    """Cores from the simulator's spec, messages delivered in FIFO order."""

    def __init__(self, byzantine: dict[NodeId, str] | None = None) -> None:
        self.spec = protocol_spec("hrb-shard", _options(), SpecContext(seed=5, byzantine=byzantine or {}))
        self.now = 0.0
        self.cores = {n: self.spec.build_core(n, MEMBERS, random.Random(n), 0.0, None) for n in MEMBERS}
        new_monitor = self.spec.new_monitor
        assert new_monitor is not None
        self.monitor = new_monitor()
        self.queue: list[tuple[NodeId, NodeId, Any]] = []
        for n in MEMBERS:
            self.collect(n)

    def collect(self, n: NodeId) -> None:
        core = self.cores[n]
        while core.has_ready():
            ready = core.ready()
            for to, m in [*ready.early_messages, *ready.messages]:
                self.queue.append((n, to, m))
            core.advance(ready)
        if self.monitor is not None:
            self.monitor(core, self.now)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now += STEP_S
            for n, core in self.cores.items():
                core.tick(self.now)
                self.collect(n)
            while self.queue:
                src, dst, m = self.queue.pop(0)
                self.cores[dst].step(src, m, self.now)
                self.collect(dst)

    def status(self, n: int) -> Any:
        return self.spec.binding.status(self.cores[NodeId(n)])  # type: ignore[misc]


def test_cores_built_by_the_simulators_spec_elect_and_commit() -> None:
    net = _SpecNet()
    net.run(3.0)
    leaders = [n for n in MEMBERS if net.status(n).role == "leader"]
    assert len(leaders) == 1
    leader = leaders[0]
    outcome = net.cores[leader].propose(client_txn(txn("spec", TxnOp("a-spec", "put", value="1"))), net.now)
    assert isinstance(outcome, Accepted)
    net.collect(leader)
    net.run(1.0)
    for n in MEMBERS:
        status = net.status(n)
        assert status.commit_index >= outcome.index
        assert status.metrics["shard.applied"] >= outcome.index
        assert status.metrics["shard.byzantine_quorum"] == 1


def test_the_simulators_byzantine_wrapper_is_caught() -> None:
    """An equivocating leader built by the spec's wrapper is convicted by
    every honest member, and an honest member leads a later term."""
    net = _SpecNet(byzantine={NodeId(1): "equivocating-leader"})
    offender = net.cores[NodeId(1)]
    offender.inner.raft.campaign(net.now)  # type: ignore[attr-defined]
    offender.tick(net.now)
    net.collect(NodeId(1))
    net.run(1.0)
    assert net.status(1).role == "leader"
    for i in range(4):
        follower = NodeId(2 + i % 3)
        net.cores[follower].propose(client_txn(txn(f"eq{i}", TxnOp(f"a-eq{i}", "put", value="1"))), net.now)
        net.collect(follower)
        net.run(0.5)
    net.run(4.0)
    for n in (2, 3, 4):
        status = net.status(n)
        assert status.metrics["shard.convicted"] == 1
        assert status.metrics["shard.detections"] >= 1
        assert status.leader is not None and status.leader != 1 and status.term > 1
