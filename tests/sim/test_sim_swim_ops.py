"""Operation-based CRDTs (counter, add-wins set, registers, a shared list) over
causal broadcast on SWIM rumours, in the simulator, and the gossip glue they
use (``quorate.crdt.gossip.OpGossipReplica``)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from quorate.cli.main import _register, app
from quorate.crdt.gossip import OpGossipReplica, ack_key, is_operation_rumour
from quorate.errors import ConfigError, RemoteProtocolError
from quorate.runtime.sim.membership import SwimSimConfig, run_swim
from quorate.swim import SwimConfig

FAST_ANTI_ENTROPY = SwimConfig(anti_entropy_interval_s=3.0)


def _converged(crdt: dict) -> None:
    assert crdt["mode"] == "operation-based"
    assert crdt["distinct_states"] == 1 and crdt["distinct_delivered"] == 1
    assert crdt["counter_values"] == [crdt["expected_counter"]]
    assert crdt["buffered_max"] == 0 and crdt["rejected"] == 0
    assert crdt["converged"]


@pytest.mark.parametrize("seed", [1, 2])
def test_op_based_objects_converge_despite_loss_and_crashes(seed: int) -> None:
    result = run_swim(
        SwimSimConfig(
            nodes=20,
            loss=0.05,
            kill=2,
            duration_s=70.0,
            crdt_ops_per_s=6.0,
            crdt_op_based=True,
            swim=FAST_ANTI_ENTROPY,
            seed=seed,
        )
    )
    crdt = result.crdt
    assert crdt is not None and crdt["operations"] > 200
    _converged(crdt)
    assert crdt["replicas"] == 18 and crdt["list_lengths"][0] > 0
    assert crdt["repairs"] > 0  # messages resent to peers whose acknowledgements lacked them
    assert crdt["history_max"] == 0  # everything acknowledged left the histories


def test_op_based_objects_do_not_converge_without_time_to_spread() -> None:
    result = run_swim(
        SwimSimConfig(
            nodes=20,
            loss=0.3,
            kill=0,
            duration_s=30.0,
            crdt_ops_per_s=10.0,
            crdt_quiet_s=0.5,
            crdt_op_based=True,
            seed=5,
        )
    )
    assert result.crdt is not None and not result.crdt["converged"]


@pytest.mark.slow
def test_hundred_replicas_converge_from_the_cli() -> None:
    _register()
    result = CliRunner().invoke(
        app,
        [
            "sim",
            "swim",
            "--nodes",
            "100",
            "--crdt-ops",
            "5",
            "--crdt-op-based",
            "--seed",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    crdt = report["crdt"]
    assert crdt["replicas"] == 99  # one member was killed
    _converged(crdt)


def test_op_based_runs_refuse_restarts_and_need_a_rate() -> None:
    with pytest.raises(ConfigError, match="state transfer"):
        SwimSimConfig(
            nodes=10, crdt_ops_per_s=1.0, crdt_op_based=True, restart_after_s=5.0
        ).validate()
    _register()
    result = CliRunner().invoke(app, ["sim", "swim", "--nodes", "10", "--crdt-op-based"])
    assert result.exit_code == 2 and result.output.count("\n") == 1


def _replicas(n: int) -> list[OpGossipReplica]:
    return [
        OpGossipReplica(r, range(n), 512, repair_interval_s=10.0, repair_after_s=3.0)
        for r in range(n)
    ]


def test_repairs_wait_for_the_rumour_then_resend_what_a_peer_lacks() -> None:
    a, b = _replicas(2)
    frames = a.rumours(a.ops.increment("n", 4), now=0.0)
    assert all(is_operation_rumour(f) for f in frames) and not is_operation_rumour(b"rumour")
    # b never got the rumour; its acknowledgement says so.
    _, _, ack = b.ack_entry()
    assert (
        a.merge_acks([(ack_key(1), ack)], now=1.0) == []
    )  # too early: the rumour may be on its way
    repairs = a.merge_acks([(ack_key(1), ack)], now=4.0)
    assert repairs and a.merge_acks([(ack_key(1), ack)], now=5.0) == []  # not again so soon
    assert all(b.deliver(0, frame, now=5.0) for frame in repairs)
    assert b.ops.counter("n") == 4
    _, _, ack = b.ack_entry()
    a.merge_acks([(ack_key(1), ack)], now=6.0)
    assert a.ops.broadcast.history_size == 0  # acknowledged by every member


def test_a_failed_origin_s_messages_are_resent_by_the_lowest_holder() -> None:
    a, b, c, d = _replicas(4)
    message = d.ops.add("s", "x")  # d sends, reaches a and b only, then fails
    for replica in (a, b):
        replica.deliver(3, d.rumours(message, now=0.0)[0], now=0.0)
    for replica in (a, b, c):
        replica.set_members([0, 1, 2])
    acks = [(ack_key(r.replica), r.ack_entry()[2]) for r in (a, b, c)]
    assert b.merge_acks(acks, now=10.0) == []  # a holds it too and has the lower id
    repairs = a.merge_acks(acks, now=10.0)
    assert repairs
    c.deliver(0, repairs[0], now=10.0)
    assert c.ops.elements("s") == frozenset({"x"})


def test_bad_rumours_and_acknowledgements_are_refused() -> None:
    (a,) = _replicas(1)
    assert not a.deliver(5, b"\x01\x0bnot a batch", now=0.0)
    assert a.ops.broadcast.rejected
    with pytest.raises(RemoteProtocolError):
        a.merge_acks([(ack_key(3), b"\xc1")], now=0.0)
    assert a.merge_acks([("crdt/3", b"ignored"), (ack_key(0), b"own")], now=0.0) == []
