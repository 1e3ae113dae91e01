"""PBFT under faults: view changes, crashes and restarts, state transfer,
Byzantine replicas of every behaviour, equivocation evidence, and a
demonstration that the safety check catches a real violation.

References are to Castro & Liskov, TOCS 2002.
"""

from __future__ import annotations

import random

import pytest
from pbft_testnet import (
    KeyedSigner,
    Net,
    SafetyViolation,
    check_safety,
    crash_restart_run,
    step_junk,
)

from quorate.core import Evidence
from quorate.core.evidence import sign_statement
from quorate.ids import NodeId
from quorate.pbft import (
    BEHAVIOURS,
    Commit,
    NewView,
    PbftConfig,
    Prepare,
    PrePrepare,
    Request,
    ViewChange,
)
from quorate.pbft.messages import KIND_PREPARE


def commands(count: int, tag: str = "c") -> list[bytes]:
    return [f"{tag}-{i}".encode() for i in range(count)]


def propose_at_honest(net: Net, cmds: list[bytes]) -> None:
    honest = [r for r in net.honest if r not in net.down]
    for i, c in enumerate(cmds):
        net.propose(honest[i % len(honest)], c)


# ------------------------------------------------------------------ view change


@pytest.mark.parametrize("n", [4, 7])
def test_a_crashed_primary_is_replaced(n: int) -> None:
    net = Net(n, seed=11)
    net.crash(0)
    propose_at_honest(net, commands(10))
    assert net.run_until_committed(10, timeout_s=10)
    check_safety(net.honest_logs())
    for r in net.replicas[1:]:
        assert net.core(r).view == 1 and net.core(r).view_active
    # Reference: section 4.4


def test_view_change_timeouts_double_on_successive_failures() -> None:
    config = PbftConfig(view_change_timeout_s=1.0, retransmit_interval_s=0.25, checkpoint_interval=4)
    net = Net(7, seed=12, config=config)
    net.crash(0)
    net.crash(1)  # the primaries of views 0 and 1
    propose_at_honest(net, commands(5))
    net.run(1.9)
    assert all(net.core(r).view == 1 and not net.core(r).view_active for r in range(2, 7))
    # View 1 fails after T; view 2 is then given 2T before anyone gives up.
    assert net.run_until_committed(5, timeout_s=3)
    assert all(net.core(r).view == 2 for r in range(2, 7))
    check_safety(net.honest_logs())
    # Reference: section 4.5.2


def test_prepared_batches_survive_a_view_change() -> None:
    net = Net(4, seed=13)
    original = net._send
    # Commits from the primary are lost: batches prepare but only some commit.
    def lose_commits(src: NodeId, dst: NodeId, message: object) -> None:
        if not (isinstance(message, Commit) and src == 0):
            original(src, dst, message)

    net._send = lose_commits  # type: ignore[method-assign]
    propose_at_honest(net, commands(8))
    net.run(0.1)
    net.crash(0)
    net._send = original  # type: ignore[method-assign]
    assert net.run_until_committed(8, timeout_s=10)
    check_safety(net.honest_logs())
    logs = [net.committed[r] for r in net.replicas[1:]]
    assert all(log == logs[0] for log in logs)


def test_a_new_view_that_does_not_match_the_recomputed_o_is_rejected() -> None:
    net = Net(4, seed=14)
    net.crash(0)
    captured: list[NewView] = []
    original = net._send

    def capture(src: NodeId, dst: NodeId, message: object) -> None:
        if isinstance(message, NewView):
            captured.append(message)
        original(src, dst, message)

    net._send = capture  # type: ignore[method-assign]
    propose_at_honest(net, commands(4))
    assert net.run_until_committed(4, timeout_s=10)
    nv = captured[0]
    signer = KeyedSigner(NodeId(1))
    extra = PrePrepare(nv.view, 999, nv.view, (b"smuggled",), b"")
    tampered = NewView(nv.view, nv.view_changes, (*nv.pre_prepares, extra), 1).signed(signer)
    fresh = Net(4, seed=14)
    fresh.cores[NodeId(2)].step(NodeId(1), tampered, 0.0)
    rejected = fresh.cores[NodeId(2)].ready().rejected
    assert [r.reason for r in rejected] == ["pre-prepares differ from the recomputed O"]
    # The untampered one is accepted by a replica that missed it.
    fresh.cores[NodeId(3)].step(NodeId(1), nv, 0.0)
    assert fresh.core(3).view == nv.view and fresh.core(3).view_active
    # Reference: section 4.4 (backups recompute O)


def test_replicas_left_behind_by_a_timed_out_view_change_follow_it() -> None:
    # Regression (simulator swarm, pbft n=4 seed 1089): replica 3 gathers a
    # quorum of view changes for view 1, waits in vain for the new view and
    # moves on to view 2; its view change for view 1 never reached replicas 1
    # and 2, which therefore never see a quorum for view 1 (and one replica
    # ahead of them is short of the f + 1 that would pull them along). The
    # view changes replica 3 still holds for view 1 must reach them.
    config = PbftConfig(view_change_timeout_s=0.5, retransmit_interval_s=0.125, checkpoint_interval=4)
    net = Net(4, seed=22, config=config, byzantine={0: "bad_signatures"})
    original = net._send

    def lose_until_moved_on(src: NodeId, dst: NodeId, message: object) -> None:
        if isinstance(message, ViewChange) and message.new_view == 1 and src == 3 and net.core(3).view == 1:
            return
        original(src, dst, message)

    net._send = lose_until_moved_on  # type: ignore[method-assign]
    propose_at_honest(net, commands(3))
    net.run(1.3)
    # The stuck configuration: replica 3 gave up on view 1 while the others
    # still wait for a third view change for it.
    assert net.core(3).view == 2
    assert net.run_until_committed(3, timeout_s=5), [
        (net.core(r).view, net.core(r).view_active) for r in net.honest
    ]
    check_safety(net.honest_logs())
    views = {(net.core(r).view, net.core(r).view_active) for r in net.honest}
    assert len(views) == 1 and next(iter(views))[1]
    # Reference: section 4.5.2 (liveness), and the view changes a replica logs


# ----------------------------------------------------------- crash and restart


@pytest.mark.parametrize("victim", [3, 0])
def test_a_restarted_replica_recovers_and_catches_up(victim: int) -> None:
    net = Net(4, seed=15)
    propose_at_honest(net, commands(10, "a"))
    assert net.run_until_committed(10, timeout_s=5)
    net.crash(victim)
    alive = [r for r in range(4) if r != victim]
    for i, c in enumerate(commands(30, "b")):
        net.propose(alive[i % 3], c)
    assert net.run_until_committed(40, timeout_s=10, nodes=alive)
    net.restart(victim)
    assert len(net.committed[NodeId(victim)]) >= 10  # re-emitted from its own log
    for i, c in enumerate(commands(10, "c")):
        net.propose(i % 4, c)
    assert net.run_until_committed(50, timeout_s=10)
    check_safety(net.honest_logs())
    assert all(not net.core(r).detections for r in net.replicas)


def test_an_isolated_replica_catches_up_by_state_transfer() -> None:
    config = PbftConfig(batch_max=2, checkpoint_interval=2, window_size=4, batch_timeout_s=0.0)
    net = Net(4, seed=16, config=config)
    net.isolate(3)
    for i, c in enumerate(commands(40)):
        net.propose(i % 3, c)
    assert net.run_until_committed(40, timeout_s=10, nodes=[0, 1, 2])
    assert net.core(0).stable_seq > 4 * config.window
    net.heal()
    assert net.run_until_committed(40, timeout_s=10, nodes=[3])
    check_safety(net.honest_logs())
    # Reference: section 5.3.2


# -------------------------------------------------------- Byzantine replicas


def run_with_byzantine(n: int, seed: int, behaviours: dict[int, str], *, loss: float = 0.0,
                       partition: bool = False, count: int = 12) -> Net:
    net = Net(n, seed=seed, byzantine=behaviours, loss=loss)
    rng = random.Random(seed)
    if partition:
        net.partition(rng.sample(range(n), n // 2))
    propose_at_honest(net, commands(count, f"s{seed}"))
    net.run(1.0)
    check_safety(net.honest_logs())
    net.heal()
    progressed = net.run_until_committed(count, timeout_s=60)
    check_safety(net.honest_logs())
    assert progressed, f"no progress after the network healed; reproduce with seed={seed}"
    for r in net.honest:
        malformed = [x for x in net.rejections[r] if x.reason.startswith("malformed")]
        assert not malformed, f"{malformed[:3]}; reproduce with seed={seed}"
        assert not set(net.core(r).excluded) & set(net.honest), f"honest replica convicted; seed={seed}"
    return net


@pytest.mark.parametrize("n", [4, 7])
def test_safety_and_progress_with_f_byzantine_replicas(n: int) -> None:
    f = (n - 1) // 3
    for seed in range(50):
        rng = random.Random(seed * 31 + n)
        behaviour = BEHAVIOURS[seed % len(BEHAVIOURS)]
        byzantine = {r: behaviour for r in rng.sample(range(n), f)}
        run_with_byzantine(n, seed, byzantine, loss=0.05 if seed % 3 == 0 else 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("n", [4, 7, 10])
def test_safety_under_random_byzantine_behaviour_loss_and_partitions(n: int) -> None:
    f = (n - 1) // 3
    for seed in range(200):
        rng = random.Random(seed * 7919 + n)
        byzantine = {r: rng.choice(BEHAVIOURS) for r in rng.sample(range(n), f)}
        run_with_byzantine(
            n, seed, byzantine, loss=rng.choice([0.0, 0.05, 0.2]), partition=rng.random() < 0.3, count=20
        )


def test_f_plus_one_colluding_equivocators_break_safety_and_the_check_fires() -> None:
    # n = 4 tolerates f = 1; two colluders (the primary and one backup) can
    # get each honest half to commit a different batch at the same index. The
    # adversary also delays traffic between the honest halves (otherwise the
    # primary's signature inside their prepares convicts it first).
    net = Net(4, seed=17, byzantine={0: "equivocate", 1: "equivocate"}, coalition=True)
    net.cut |= {(2, 3), (3, 2)}
    net.propose(2, b"pay alice")
    net.run(0.5)
    with pytest.raises(SafetyViolation):
        check_safety(net.honest_logs())
    # ...while the same run with one equivocator (f = 1) stays safe.
    safe = Net(4, seed=17, byzantine={0: "equivocate"}, coalition=True)
    safe.cut |= {(2, 3), (3, 2)}
    safe.propose(2, b"pay alice")
    safe.run(0.5)
    check_safety(safe.honest_logs())


@pytest.mark.parametrize("n", [4, 7])
def test_an_equivocating_primary_is_detected_and_excluded_everywhere(n: int) -> None:
    net = Net(n, seed=18, byzantine={0: "equivocate"})
    propose_at_honest(net, commands(6))
    assert net.run_until_committed(6, timeout_s=10)
    net.run(0.5)
    check_safety(net.honest_logs())
    for r in net.honest:
        core = net.core(r)
        assert NodeId(0) in core.excluded
        assert any(d[0] == NodeId(0) and d[1] == "pbft.pre-prepare" for d in core.detections)
        assert core.view >= 1
    assert sum(net.core(r).excluded_dropped for r in net.honest) > 0


def test_an_equivocating_voter_is_convicted_by_evidence() -> None:
    net = Net(4, seed=19)
    signer = KeyedSigner(NodeId(3))
    a = sign_statement(signer, KIND_PREPARE, 1, 0, b"a" * 32)
    b = sign_statement(signer, KIND_PREPARE, 1, 0, b"b" * 32)
    net.cores[NodeId(1)].step(NodeId(2), Evidence(a, b), 0.0)
    assert NodeId(3) in net.core(1).excluded
    net.cores[NodeId(1)].step(NodeId(3), Request(b"x"), 0.0)
    assert net.cores[NodeId(1)].ready().rejected[-1].reason == "excluded"
    # Evidence that does not hold up convicts nobody.
    forged = Evidence(a, a)
    net.cores[NodeId(2)].step(NodeId(1), forged, 0.0)
    assert not net.core(2).excluded


def test_forged_and_badly_signed_messages_are_rejected() -> None:
    net = Net(4, seed=20)
    core = net.cores[NodeId(1)]
    signer = KeyedSigner(NodeId(2))
    digest = b"d" * 32
    good = sign_statement(signer, KIND_PREPARE, 1, 0, digest).signature
    core.step(NodeId(3), Prepare(0, 1, digest, 2, good), 0.0)  # claims to be from 2
    core.step(NodeId(2), Prepare(0, 1, digest, 2, b"\x00" * 32), 0.0)
    core.step(NodeId(2), PrePrepare(0, 1, 0, (b"x",), b"sig"), 0.0)  # 2 is not the primary
    core.step(NodeId(2), Commit(0, 1, b"short", 2, good), 0.0)
    core.step(NodeId(3), ViewChange(1, (), (), 2, b"sig"), 0.0)
    core.step(NodeId(2), "not a message", 0.0)
    reasons = [r.reason for r in core.ready().rejected]
    assert reasons == [
        "forged: claimed author is not the sender",
        "bad signature",
        "forged: sender is not the primary",
        "malformed digest",
        "forged: claimed author is not the sender",
        "unknown message type",
    ]


def test_step_never_raises_on_junk() -> None:
    net = Net(4, seed=21)
    rng = random.Random(21)
    junk: list[object] = [
        PrePrepare(0, 1, 0, ("not bytes",), b""),  # type: ignore[arg-type]
        PrePrepare(-5, -1, 7, (), b""),
        Prepare(0, 10**30, b"x" * 32, 2, b""),
        ViewChange(10**6, (), (), 2, b""),
        NewView(3, (), (), 3, b""),
        None,
        Commit(0, 1, None, 2, b""),  # type: ignore[arg-type]
    ]
    step_junk(net, rng, junk)
    propose_at_honest(net, commands(4))
    assert net.run_until_committed(4, timeout_s=5)


def test_safety_and_progress_across_crashes_and_restarts() -> None:
    for seed in range(20):
        crash_restart_run(seed)


@pytest.mark.slow
def test_safety_and_progress_across_many_crashes_and_restarts() -> None:
    for seed in range(20, 300):
        crash_restart_run(seed)
