"""Raft runs that use neither joint consensus, flexible quorums nor the quorum
manager keep the event trace they had before those existed, byte for byte.

The hashes were taken from the simulator without joint consensus (main at
be03f0b, replicas numbered 1..n); a change to them is a change of
single-group Raft's behaviour and must be made on purpose (and the pins
updated with the reason in the commit)."""

from __future__ import annotations

import pytest

from quorate.runtime.sim import SimConfig, run

PINNED = [
    (
        SimConfig(protocol="raft", nodes=5, duration_s=4.0, faults="chaos", seed=1),
        "5f3265993f72d10a8024eec2f7c382acc579f271411df399e0b1d798db9f7f6e",
    ),
    (
        SimConfig(protocol="raft", nodes=9, regions=3, duration_s=3.0, seed=2),
        "d4a708795ca788aadc2c65d16ceefbd324ee8ca436e75e153486cfb194dc6df6",
    ),
    (
        SimConfig(protocol="raft", nodes=3, duration_s=3.0, faults="chaos", seed=5, rate_ops=50.0, clients=4),
        "3d4c77f3ccadc4a1da7865d035c272223484cc114fe733250bb8a37efc510bce",
    ),
]


@pytest.mark.parametrize(("config", "expected"), PINNED, ids=["chaos-5", "regions-9", "open-loop-3"])
def test_plain_raft_traces_are_pinned(config: SimConfig, expected: str) -> None:
    config.record_history = False
    assert run(config).trace_sha256 == expected
