"""Throughput of the Raft core in the in-memory test network (not a test).

Run: ``python -m tests.unit.raft.bench_raft_step`` from the repository root.
Prints one JSON object per configuration: messages stepped per second with
and without the safety monitor, for 5- and 51-voter clusters. The network's
own bookkeeping is included, so the core alone is faster than this.
"""

from __future__ import annotations

import json
import time

from tests.unit.raft.network import Network

from quorate.raft import RaftConfig

PROPOSALS = 4000
BATCH = 8


def run(voters: int, monitor: bool) -> dict[str, object]:
    net = Network(range(1, voters + 1), config=RaftConfig(pre_vote=True, check_quorum=True), monitor=monitor)
    net.elect(1)
    net.advance(0.3)
    leader = net.node(1)
    delivered = 0
    started = time.perf_counter()
    for i in range(0, PROPOSALS, BATCH):
        for j in range(BATCH):
            leader.propose(b"command-%06d" % (i + j), net.now)
        net.collect(leader.id)
        delivered += net.deliver()
    elapsed = time.perf_counter() - started
    assert leader.commit_index == leader.last_index
    return {
        "voters": voters,
        "monitor": monitor,
        "proposals": PROPOSALS,
        "messages": delivered,
        "seconds": round(elapsed, 4),
        "messages_per_s": round(delivered / elapsed),
        "commits_per_s": round(PROPOSALS / elapsed),
    }


def main() -> None:
    for voters in (5, 51):
        for monitor in (False, True):
            print(json.dumps(run(voters, monitor)))


if __name__ == "__main__":
    main()
