"""The options the large-n benchmark cells use: ``batch_verify_votes`` (a
leader checks a quorum's votes as one aggregate, each on its own only when
the aggregate fails) and ``forward_commands = False`` (replicas keep their
clients' commands instead of forwarding them to the leaders)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hotstuff_net import FAST_CONFIG, Network

from quorate.crypto.costmodel import CostModelKeys, CostModelSigner, CostModelVerifier, Scheme
from quorate.errors import ConfigError
from quorate.hotstuff import AggregateSignatures, HotStuffConfig, HotStuffReplica
from quorate.ids import NodeId
from quorate.storage.base import Recovered

BATCHED = dataclasses.replace(FAST_CONFIG, quorum_certificates="aggregate", batch_verify_votes=True)


class CountingVerifier:
    """A ``CostModelVerifier`` that counts the single signatures the replica checks."""

    def __init__(self, inner: CostModelVerifier) -> None:
        self.inner = inner
        self.single = 0

    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        self.single += 1
        return self.inner.verify(node, data, signature)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class AggregateNetwork(Network):
    """The test network with BLS-like aggregatable signatures (the cost model's)."""

    def __init__(self, n: int, **kwargs: Any) -> None:
        self.keys = CostModelKeys(b"large-n-options")
        self.verifiers: dict[NodeId, CountingVerifier] = {}
        super().__init__(n, **kwargs)

    def replica(self, node: NodeId, recovered: Recovered | None = None) -> HotStuffReplica:
        verifier = CountingVerifier(CostModelVerifier(self.keys, scheme=Scheme.BLS))
        self.verifiers[node] = verifier
        return HotStuffReplica(
            node,
            self.ids,
            config=self.config,
            signer=CostModelSigner(node, self.keys, scheme=Scheme.BLS),
            verifier=verifier,
            rng=random.Random(f"{self.seed}:{node}"),
            now=self.now,
            recovered=recovered,
            quorum_signer=AggregateSignatures(verifier.inner),
        )

    def signer(self, node: NodeId) -> Any:
        return CostModelSigner(node, self.keys, scheme=Scheme.BLS)


def _commands(count: int) -> list[bytes]:
    return [b"cmd-%d" % i for i in range(count)]


def test_batch_verify_votes_needs_aggregate_certificates() -> None:
    with pytest.raises(ConfigError, match="batch_verify_votes"):
        HotStuffConfig(batch_verify_votes=True).validate()
    with pytest.raises(ConfigError, match="forward_commands"):
        HotStuffConfig(forward_commands=1).validate()  # type: ignore[arg-type]
    HotStuffConfig(quorum_certificates="aggregate", batch_verify_votes=True, forward_commands=False).validate()


def test_batched_votes_commit_with_fewer_verifications() -> None:
    """The same load commits everywhere; the replicas check far fewer single signatures."""
    single: dict[bool, int] = {}
    for batched in (False, True):
        config = dataclasses.replace(BATCHED, batch_verify_votes=batched)
        net = AggregateNetwork(7, seed=3, config=config)
        commands = _commands(30)
        for i, command in enumerate(commands):
            net.submit(command, NodeId(i % 7))
        net.run_until(5.0, until=lambda net=net, commands=commands: net.all_committed(commands))
        assert net.all_committed(commands)
        net.check_safety()
        single[batched] = sum(v.single for v in net.verifiers.values())
    assert single[True] < 0.75 * single[False]


def test_a_bad_vote_signature_is_caught_by_the_fallback_and_its_sender_suspected() -> None:
    """One replica corrupts every signature: the aggregate fails, each vote is
    checked on its own, the bad one is dropped and its sender's later votes
    are checked one by one; commands still commit and nothing unsafe happens."""
    net = AggregateNetwork(4, seed=5, config=BATCHED, byzantine={3: "bad_signatures"})
    commands = _commands(12)
    for i, command in enumerate(commands):
        net.submit(command, NodeId(i % 3))
    net.run_until(8.0, until=lambda: net.all_committed(commands))
    assert net.all_committed(commands)
    net.check_safety()
    suspected = [node for node in net.honest if NodeId(3) in net.core(node)._suspects]
    assert suspected
    reasons = {(r.sender, r.reason) for node in net.honest for r in net.rejections[node]}
    assert (NodeId(3), "bad signature") in reasons


@pytest.mark.parametrize("seed", [1, 2])
def test_without_forwarding_commands_sent_to_every_replica_commit_once(seed: int) -> None:
    """Clients that send a command to every replica: no Forward, each command
    committed exactly once in the same order everywhere."""
    config = dataclasses.replace(FAST_CONFIG, forward_commands=False)
    net = Network(4, seed=seed, config=config)
    commands = _commands(40)
    for command in commands:
        for node in net.ids:
            net.submit(command, node)
        net.run_until(net.now + 0.002)
    net.run_until(5.0, until=lambda: net.all_committed(commands))
    assert net.all_committed(commands)
    net.check_safety()
    assert net.sent["Forward"] == 0
    for node in net.ids:
        data = [e.data for e in net.committed[node]]
        assert len(data) == len(set(data)) == len(commands)


def test_without_forwarding_a_command_given_to_one_replica_still_commits() -> None:
    """Given to a single non-leader replica, the command reaches a leader
    when that replica's view times out (it sends its clients' commands to all)."""
    config = dataclasses.replace(FAST_CONFIG, forward_commands=False)
    net = Network(4, seed=7, config=config)
    leader = net.core(NodeId(0)).leader(net.core(NodeId(0)).view)
    other = next(node for node in net.ids if node != leader)
    net.submit(b"lonely", other)
    net.run_until(5.0, until=lambda: net.all_committed([b"lonely"]))
    assert net.all_committed([b"lonely"])
    net.check_safety()
