"""Raft runs that use neither joint consensus, flexible quorums nor the quorum
manager keep the event trace they had before those existed, byte for byte.

The hashes were taken from the simulator before configuration changes grew
joint consensus; a change to them is a change of single-group Raft's
behaviour and must be made on purpose (and the pins updated with the reason
in the commit)."""

from __future__ import annotations

import pytest

from quorate.runtime.sim import SimConfig, run

PINNED = [
    (
        SimConfig(protocol="raft", nodes=5, duration_s=4.0, faults="chaos", seed=1),
        "39af035cb0dc508ac3400a7524d238ee6bfb2db0584a8e04a51279ac16441111",
    ),
    (
        SimConfig(protocol="raft", nodes=9, regions=3, duration_s=3.0, seed=2),
        "e262e8497d510c47c7d690b4b05d957e952d256dc1bfdd34abe186e1247c3bfc",
    ),
    (
        SimConfig(protocol="raft", nodes=3, duration_s=3.0, faults="chaos", seed=5, rate_ops=50.0, clients=4),
        "4bc9419097684b40951edc666f7290d762ba8f579b34835fe46a293d061937cf",
    ),
]


@pytest.mark.parametrize(("config", "expected"), PINNED, ids=["chaos-5", "regions-9", "open-loop-3"])
def test_plain_raft_traces_are_pinned(config: SimConfig, expected: str) -> None:
    config.record_history = False
    assert run(config).trace_sha256 == expected
