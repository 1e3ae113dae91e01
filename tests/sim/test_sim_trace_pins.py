"""Single-group simulator runs keep their exact event traces: the hashes below
were taken before multi-group hosting (multi-Raft) was built on the simulator,
so code added for many groups per node provably changes nothing for one."""

from __future__ import annotations

import pytest

from quorate.runtime.sim import SimConfig, run

PINNED = {
    "raft-chaos": (
        SimConfig(protocol="raft", nodes=5, duration_s=6.0, faults="chaos", seed=7),
        "e43ab9997712391b4b1291955c38d42744a3df23838077b81cb8616c656e17f5",
    ),
    "raft-quiet": (
        SimConfig(
            protocol="raft",
            nodes=5,
            clients=4,
            rate_ops=4.0,
            duration_s=6.0,
            faults="chaos",
            heal_at_s=3.0,
            seed=2,
            protocol_options={"quiesce_after_s": 0.2},
        ),
        "71bc4fd94244c2c0ba1775a8385b1207d1cbd7b8d578a02309931bf483581db6",
    ),
    "pbft-byzantine": (
        SimConfig(protocol="pbft", nodes=4, duration_s=4.0, faults="chaos", byzantine="1:random", seed=3),
        "2f86ecef2ef7fd5f8cddc3182990da850580190c7fca52e96356bf3882a1e2ae",
    ),
    "hotstuff": (
        SimConfig(protocol="hotstuff", nodes=4, duration_s=4.0, seed=1),
        "86513a396621afceb539fc37d3d6da11f8f698af878ba62becaffd1a7d96f2b0",
    ),
    "primary": (
        SimConfig(protocol="primary", nodes=3, duration_s=4.0, seed=1),
        "408b93f64709e349c4a24c4b534831ae2e8346487d11b9ce7947ecba3f0c1edb",
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_single_group_traces_are_unchanged(name: str) -> None:
    config, expected = PINNED[name]
    assert run(config).trace_sha256 == expected
