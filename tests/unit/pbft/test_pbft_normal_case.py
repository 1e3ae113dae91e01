"""PBFT normal case, batching, deduplication, checkpoints and configuration.

References are to Castro & Liskov, "Practical Byzantine Fault Tolerance and
Proactive Recovery" (TOCS 2002).
"""

from __future__ import annotations

import random

import pytest
from pbft_testnet import KeyedSigner, KeyedVerifier, Net, check_safety

from quorate.core import ENTRY_NORMAL, ProtocolCore, Queued, Refused
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.pbft import PBFT_MESSAGE_TYPES, PbftConfig, PbftReplica, PrePrepare


def commands(count: int, tag: str = "c") -> list[bytes]:
    return [f"{tag}-{i}".encode() for i in range(count)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_normal_case_commits_in_order_on_every_replica(n: int) -> None:
    net = Net(n, seed=n)
    cmds = commands(60)
    for i, c in enumerate(cmds):
        assert isinstance(net.propose(i % n, c), Queued)
    assert net.run_until_committed(len(cmds), timeout_s=5)
    check_safety(net.honest_logs())
    log = net.committed[NodeId(0)]
    assert [e.index for e in log] == list(range(1, len(cmds) + 1))
    assert sorted(e.data for e in log) == sorted(cmds)
    assert all(e.kind == ENTRY_NORMAL and e.term == 0 for e in log)
    for r in net.replicas:
        assert net.committed[r] == log
        assert not net.rejections[r], net.rejections[r][:3]
    # Reference: section 4.2


def test_the_primary_batches_commands() -> None:
    config = PbftConfig(batch_max=10, batch_timeout_s=0.05, checkpoint_interval=4)
    net = Net(4, seed=3, config=config)
    for c in commands(25):
        net.propose(0, c)
    # Two full batches go at once; the last five wait for the batch timeout.
    assert net.core(0)._next_seq == 3
    assert net.run_until_committed(25, timeout_s=2)
    assert net.core(0).executed_seq == 3
    # Reference: section 5.1.4


def test_a_command_is_ordered_once() -> None:
    net = Net(4, seed=4)
    assert isinstance(net.propose(1, b"x"), Queued)
    assert net.propose(1, b"x") == Refused("duplicate: already pending")
    net.propose(2, b"x")  # the same command through another replica
    assert net.run_until_committed(1, timeout_s=2)
    net.run(0.5)
    assert [e.data for e in net.committed[NodeId(0)]] == [b"x"]
    assert net.propose(3, b"x") == Refused("duplicate: already executed")


def test_oversize_and_flow_control_are_refused() -> None:
    config = PbftConfig(max_command_bytes=8, max_pending=2, checkpoint_interval=4)
    net = Net(4, seed=5, config=config)
    assert isinstance(net.propose(1, b"123456789"), Refused)
    assert isinstance(net.propose(1, b"a"), Queued)
    assert isinstance(net.propose(1, b"b"), Queued)
    assert net.propose(1, b"c") == Refused("busy: too many pending commands")


def test_checkpoints_become_stable_and_collect_garbage() -> None:
    config = PbftConfig(batch_max=1, checkpoint_interval=4, batch_timeout_s=0.0)
    net = Net(4, seed=6, config=config)
    for c in commands(30):
        net.propose(0, c)
    assert net.run_until_committed(30, timeout_s=5)
    net.run(1.0)
    for r in net.replicas:
        core = net.core(r)
        assert core.executed_seq == 30
        assert core.stable_seq == 28
        assert all(seq > core.stable_seq for seq in core._slots)
        assert all(seq > core.stable_seq for seq in core._prepared_certs)
    # Every replica computed the same state digest for the same history.
    assert len({net.core(r).state_digest for r in net.replicas}) == 1
    # Reference: section 4.3


def test_the_high_water_mark_stops_the_primary_until_a_checkpoint_is_stable() -> None:
    config = PbftConfig(batch_max=1, checkpoint_interval=2, window_size=4, batch_timeout_s=0.0)
    net = Net(4, seed=7, config=config)
    original = net._send

    def no_checkpoints(src: NodeId, dst: NodeId, message: object) -> None:
        if type(message).__name__ != "Checkpoint":
            original(src, dst, message)

    net._send = no_checkpoints  # type: ignore[method-assign]
    for c in commands(12):
        net.propose(0, c)
    net.run(0.2)
    # L = 4 sequence numbers above h = 0, then the primary must wait.
    assert net.core(0)._next_seq == 5
    assert len(net.committed[NodeId(1)]) == 4
    net._send = original  # type: ignore[method-assign]
    assert net.run_until_committed(12, timeout_s=5)
    check_safety(net.honest_logs())
    # Reference: section 4.3 (low and high water marks)


def test_config_validation() -> None:
    PbftConfig().validate(4)
    assert PbftConfig().window == 8 * PbftConfig().checkpoint_interval
    assert PbftConfig(checkpoint_interval=4, window_size=12).validate(4).window == 12
    for size in (-4, 2, 6, True):
        with pytest.raises(ConfigError, match="window_size"):
            PbftConfig(checkpoint_interval=4, window_size=size).validate(4)
    for n in (1, 2, 3):
        PbftConfig().validate(n)
    with pytest.raises(ConfigError, match="batch_max"):
        PbftConfig(batch_max=0).validate(4)
    with pytest.raises(ConfigError, match="checkpoint_interval"):
        PbftConfig(checkpoint_interval=0).validate(4)
    with pytest.raises(ConfigError, match="view_change_timeout_s"):
        PbftConfig(view_change_timeout_s=0).validate(4)
    with pytest.raises(ConfigError, match="retransmit_interval_s"):
        PbftConfig(retransmit_interval_s=2.0).validate(4)
    with pytest.raises(ConfigError, match="batch_timeout_s"):
        PbftConfig(batch_timeout_s=5.0).validate(4)
    with pytest.raises(ConfigError, match="at least 1"):
        PbftConfig().validate(0)


def test_constructor_rejects_a_replica_outside_the_group() -> None:
    with pytest.raises(ConfigError):
        PbftReplica(
            NodeId(9),
            [NodeId(0), NodeId(1)],
            config=PbftConfig(),
            signer=KeyedSigner(NodeId(9)),
            verifier=KeyedVerifier(),
            rng=random.Random(0),
            now=0.0,
        )


def test_the_binding_builds_a_protocol_core() -> None:
    from quorate.core.binding import ClusterContext
    from quorate.crypto.keyring import CostModelKeyring
    from quorate.pbft.binding import BINDING

    build = BINDING.builder(BINDING.parse_config({}), ClusterContext(CostModelKeyring(1)))
    core = build(NodeId(1), (NodeId(0), NodeId(1), NodeId(2), NodeId(3)), random.Random(1), 0.0, None)
    assert isinstance(core, ProtocolCore)
    assert core.id == NodeId(1)


def test_message_tags_are_unique_and_namespaced() -> None:
    tags = [t.__struct_config__.tag for t in PBFT_MESSAGE_TYPES]
    assert len(set(tags)) == len(tags)
    assert all(str(tag).startswith(("pbft.", "evidence.")) for tag in tags)


def test_messages_survive_the_wire_codec() -> None:
    from quorate.codec import WireCodec

    codec = WireCodec(PBFT_MESSAGE_TYPES)
    net = Net(4, seed=8)
    seen: list[object] = []
    original = net._send

    def capture(src: NodeId, dst: NodeId, message: object) -> None:
        seen.append(message)
        original(src, dst, codec.decode(codec.encode(src, message))[1])  # type: ignore[arg-type]

    net._send = capture  # type: ignore[method-assign]
    for c in commands(10):
        net.propose(1, c)
    assert net.run_until_committed(10, timeout_s=2)
    assert any(isinstance(m, PrePrepare) for m in seen)


def test_the_deadline_probe_promise_holds() -> None:
    """``wake_at()`` lets a driver skip ``ready()`` when ``has_ready()`` is
    False: that ``Ready`` must then hold nothing but the same deadline."""
    net = Net(4, seed=3)
    checked = 0
    for i, c in enumerate(commands(30)):
        net.propose(i % 4, c)
        net.run(0.01 * (i % 3))
        for r in net.replicas:
            core = net.cores[r]
            if not core.has_ready():
                deadline = core.wake_at()
                ready = core.ready()
                assert ready.is_empty() and ready.wake_at == deadline
                checked += 1
    assert checked > 0
    assert net.run_until_committed(30, timeout_s=5)
