"""PBFT with MAC-authenticated commits (``authentication="macs"``).

References are to Castro & Liskov, TOCS 2002 (§3.2: MAC authenticators).
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from pbft_testnet import KeyedSigner, KeyedVerifier, Net, SessionKeyAuthenticator, check_safety

from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.pbft import (
    BEHAVIOURS,
    Commit,
    CommittedBatch,
    PbftConfig,
    PbftReplica,
    PrePrepare,
    Status,
)

MACS = PbftConfig(batch_max=8, checkpoint_interval=4, batch_timeout_s=0.001, authentication="macs")
SIGNATURES = PbftConfig(batch_max=8, checkpoint_interval=4, batch_timeout_s=0.001)


def commands(count: int, tag: str = "c") -> list[bytes]:
    return [f"{tag}-{i}".encode() for i in range(count)]


def run_workload(config: PbftConfig, n: int = 4, count: int = 40) -> Net:
    net = Net(n, seed=31, config=config)
    for i, c in enumerate(commands(count)):
        net.propose(i % n, c)
    assert net.run_until_committed(count, timeout_s=5)
    check_safety(net.honest_logs())
    return net


@pytest.mark.parametrize("n", [4, 7])
def test_commits_carry_authenticators_and_everything_commits(n: int) -> None:
    captured: list[Commit] = []
    net = Net(n, seed=30, config=MACS)
    original = net._send

    def capture(src: NodeId, dst: NodeId, message: object) -> None:
        if isinstance(message, Commit):
            captured.append(message)
        original(src, dst, message)

    net._send = capture  # type: ignore[method-assign]
    for i, c in enumerate(commands(30)):
        net.propose(i % n, c)
    assert net.run_until_committed(30, timeout_s=5)
    check_safety(net.honest_logs())
    assert captured
    for commit in captured:
        assert commit.signature == b""
        assert sorted(r for r, _ in commit.macs) == [r for r in range(n) if r != commit.replica]
    for r in net.replicas:
        assert not net.rejections[r], net.rejections[r][:3]
        assert net.authenticators[r].checked > 0


def test_macs_save_the_commit_signatures() -> None:
    # Same workload, same seed: the only signatures missing are the commits.
    with_macs = run_workload(MACS)
    signed = run_workload(SIGNATURES)
    for r in with_macs.replicas:
        made = with_macs.authenticators[r].made
        assert made > 0
        assert with_macs.signers[r].signed + made == signed.signers[r].signed


def test_a_commit_with_a_wrong_or_missing_mac_is_rejected() -> None:
    net = Net(4, seed=32, config=MACS)
    core = net.cores[NodeId(1)]
    forger = SessionKeyAuthenticator(NodeId(3), net.replicas)  # 3's keys, not 2's
    unsigned = Commit(0, 1, b"d" * 32, 2, b"")
    forged = forger.macs(unsigned.authenticated_bytes(), [NodeId(1)])
    core.step(NodeId(2), Commit(0, 1, b"d" * 32, 2, b"", tuple(forged.items())), 0.0)
    core.step(NodeId(2), unsigned, 0.0)
    signature_only = Commit(0, 1, b"d" * 32, 2, KeyedSigner(NodeId(2)).sign(unsigned.authenticated_bytes()))
    core.step(NodeId(2), signature_only, 0.0)
    assert [r.reason for r in core.ready().rejected] == ["bad authenticator"] * 3


def test_commit_certificates_are_neither_relayed_nor_accepted() -> None:
    net = run_workload(dataclasses.replace(MACS, checkpoint_interval=32), count=10)
    ahead = net.cores[NodeId(1)]
    assert ahead.executed_seq > ahead.stable_seq  # it holds certificates it could relay
    # A peer reports it executed nothing: commits made with MACs convince
    # nobody else, so the answer holds no commit certificates.
    ahead.step(NodeId(2), Status(0, True, 0), net.now)
    assert not [m for _, m in ahead.ready().messages if isinstance(m, CommittedBatch)]
    fresh = Net(4, seed=33, config=MACS)
    fresh.cores[NodeId(2)].step(NodeId(1), CommittedBatch(PrePrepare(0, 1, 0, (b"x",), b""), ()), 0.0)
    assert [r.reason for r in fresh.cores[NodeId(2)].ready().rejected] == [
        "commit certificates are not transferable with MACs"
    ]


def test_view_change_and_lagging_replica_catch_up_with_macs() -> None:
    net = Net(4, seed=34, config=MACS, loss=0.1)
    net.crash(0)  # the primary of view 0
    net.isolate(3)
    for i, c in enumerate(commands(24)):
        net.propose(1 + i % 2, c)
    net.run(0.5)
    net.heal()
    assert net.run_until_committed(24, timeout_s=15)
    check_safety(net.honest_logs())
    assert all(net.core(r).view >= 1 for r in (1, 2, 3))


def test_macs_need_an_authenticator() -> None:
    with pytest.raises(ConfigError, match="CommitAuthenticator"):
        PbftReplica(
            NodeId(0),
            [NodeId(i) for i in range(4)],
            config=MACS,
            signer=KeyedSigner(NodeId(0)),
            verifier=KeyedVerifier(),
            rng=random.Random(0),
            now=0.0,
        )
    with pytest.raises(ConfigError, match="authentication must be one of"):
        PbftConfig(authentication="none").validate(4)


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_safety_and_progress_with_a_byzantine_replica_and_macs(behaviour: str) -> None:
    for byzantine in (0, 2):  # the first primary, and a backup
        net = Net(4, seed=35, config=MACS, byzantine={byzantine: behaviour}, loss=0.05)
        honest = [r for r in range(4) if r != byzantine]
        for i, c in enumerate(commands(12, behaviour)):
            net.propose(honest[i % 3], c)
        assert net.run_until_committed(12, timeout_s=30), (behaviour, byzantine)
        check_safety(net.honest_logs())
        for r in net.honest:
            assert not set(net.core(r).excluded) & set(net.honest)
