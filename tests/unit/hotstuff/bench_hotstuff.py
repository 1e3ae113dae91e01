"""Benchmark: CPU cost of the chained-HotStuff core on the in-memory test network.

Run ``python tests/unit/hotstuff/bench_hotstuff.py [n ...]``. For each cluster
size it submits a stream of commands, runs until every replica committed all
of them, and prints one JSON object per size (for machines) and a table (for
people). ``core_s`` is the CPU time inside the cores only (``step``, ``tick``,
``ready``, ``advance``; HMAC-SHA256 signatures), so ``core_us_per_message`` is
the mean cost of handling one message; ``wall_s`` adds the test network.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from hotstuff_net import Network

from quorate.hotstuff import HotStuffConfig

COMMANDS = 2000
SUBMIT_BATCH = 100
"""Commands submitted together, then the network runs a little."""
SUBMIT_INTERVAL_S = 0.01
CONFIG = HotStuffConfig(view_timeout_s=0.5, max_view_timeout_s=4.0, batch_max=256)


def bench(n: int) -> dict[str, float | int]:
    net = Network(n, seed=n, config=CONFIG)
    cmds = [b"bench-%06d" % i for i in range(COMMANDS)]
    started = time.perf_counter()
    for i in range(0, COMMANDS, SUBMIT_BATCH):
        for j, c in enumerate(cmds[i : i + SUBMIT_BATCH]):
            net.submit(c, net.ids[j % n])
        net.run_until(net.now + SUBMIT_INTERVAL_S)
    net.run_until(net.now + 60.0, until=lambda: net.all_committed(cmds))
    wall_s = time.perf_counter() - started
    assert net.all_committed(cmds)
    net.check_safety()
    views = max(net.core(i).view for i in net.ids)
    return {
        "n": n,
        "commands": COMMANDS,
        "wall_s": round(wall_s, 3),
        "commands_per_wall_s": round(COMMANDS / wall_s, 1),
        "messages": net.delivered,
        "messages_per_command": round(net.delivered / COMMANDS, 2),
        "core_s": round(net.core_s, 3),
        "core_us_per_message": round(1e6 * net.core_s / net.delivered, 2),
        "core_us_per_command_per_replica": round(1e6 * net.core_s / COMMANDS / n, 2),
        "views": views,
        "simulated_s": round(net.now, 3),
    }


def main(sizes: list[int]) -> None:
    rows = [bench(n) for n in sizes]
    for row in rows:
        print(json.dumps({"benchmark": "hotstuff.core", **row}))
    print(f"{'n':>5} {'cmds/wall-s':>12} {'msgs/cmd':>9} {'us/msg':>8} {'views':>6}", file=sys.stderr)
    for r in rows:
        print(
            f"{r['n']:>5} {r['commands_per_wall_s']:>12} {r['messages_per_command']:>9} "
            f"{r['core_us_per_message']:>8} {r['views']:>6}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [4, 16, 64])
