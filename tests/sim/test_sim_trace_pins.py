"""Single-group simulator runs keep their exact event traces: the hashes below
were taken before multi-Raft was added to the simulator (1..n node ids,
host-driven nodes), so code added for many groups per node provably changes
nothing for one. A change that means to alter a trace updates its pin and
says why."""

from __future__ import annotations

import pytest

from quorate.runtime.sim import SimConfig, run

PINNED = {
    "raft-chaos": (
        SimConfig(protocol="raft", nodes=5, duration_s=6.0, faults="chaos", seed=7),
        "cfb8200b20050a306a52a04a92e2e0c39ef1488ab4af88489629cbdbcf231579",
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
        "1610b748f648b52c5ba0e65d5766be29ef96654c122f1292f19bf1ea343e341e",
    ),
    "pbft-byzantine": (
        SimConfig(protocol="pbft", nodes=4, duration_s=4.0, faults="chaos", byzantine="1:random", seed=3),
        "22277510319275b1a61ffa5abe89d2f60b72e2e8ebc15a28122dd096876e59cb",
    ),
    # HotStuff's trace changed with leader reputation: blocks name the leaders
    # of failed views, SyncInfo carries the QC that committed the sender's
    # root, and timeouts ask for the next turn's first view (the merged tree
    # with the previous hotstuff package still gives the old hash, 8c749fbb...).
    # It changed again when every replica began asking its peers for their
    # certificates at start (SyncRequest / SyncInfo; before: 41fb0efb...).
    "hotstuff": (
        SimConfig(protocol="hotstuff", nodes=4, duration_s=4.0, seed=1),
        "7810a9f50761e0d77c77841aaf24c4b5eaa15de69b19a4471bff2c73ad1f574e",
    ),
    "primary": (
        SimConfig(protocol="primary", nodes=3, duration_s=4.0, seed=1),
        "270be492f8c0163712837b723849e37b45b27e28169b079e49ef18fb019ca086",
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_single_group_traces_are_unchanged(name: str) -> None:
    config, expected = PINNED[name]
    assert run(config).trace_sha256 == expected
