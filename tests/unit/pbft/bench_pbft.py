"""PBFT core cost, measured through the in-memory test network.

Run: ``python tests/unit/pbft/bench_pbft.py [n ...]``. Prints one JSON object
per group size (wall time per command, per delivered message, messages per
command) and a table. Signatures are the tests' HMAC-SHA256, so the figures
are the protocol's own bookkeeping plus cheap authentication.
"""

from __future__ import annotations

import json
import sys
import time

from pbft_testnet import Net

from quorate.pbft import PbftConfig

COMMANDS = 2000


def measure(n: int, commands: int = COMMANDS) -> dict[str, float]:
    config = PbftConfig(batch_max=64, batch_timeout_s=0.002, checkpoint_interval=32)
    net = Net(n, seed=1, config=config)
    start = time.perf_counter()
    for i in range(commands):
        net.propose(i % n, f"cmd-{i}".encode())
    assert net.run_until_committed(commands, timeout_s=600)
    wall_s = time.perf_counter() - start
    return {
        "n": n,
        "commands": commands,
        "sim_time_s": round(net.now, 4),
        "wall_s": round(wall_s, 3),
        "wall_us_per_command": round(wall_s / commands * 1e6, 1),
        "wall_us_per_message": round(wall_s / net.delivered * 1e6, 2),
        "messages_per_command": round(net.delivered / commands, 1),
        "batches": net.core(0).executed_seq,
    }


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [4, 16, 64]
    rows = [measure(n, COMMANDS if n <= 16 else COMMANDS // 4) for n in sizes]
    for row in rows:
        print(json.dumps({"bench": "pbft.core", **row}))
    print(f"{'n':>4} {'cmds':>6} {'us/cmd':>9} {'us/msg':>8} {'msg/cmd':>8} {'batches':>8}")
    for r in rows:
        print(f"{r['n']:>4} {r['commands']:>6} {r['wall_us_per_command']:>9} "
              f"{r['wall_us_per_message']:>8} {r['messages_per_command']:>8} {r['batches']:>8}")


if __name__ == "__main__":
    main(sys.argv[1:])
