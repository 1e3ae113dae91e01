"""The CPU constants a paper run charges its simulated nodes, measured here.

Theory of operation. A simulated node spends CPU on every input (decode,
``step``, driving the ``Ready``: ``CostModel.base_s`` plus ``per_byte_s``
per byte) and on every signature, verification and MAC its protocol makes
(``CryptoCosts``, charged by the cost-model keyring). ``calibrate`` measures
both on this machine before the run, with the commands that already measure
them (``quorate.bench.sim.measure_raft_cost``: a Raft follower's
AppendEntries, small and large, in process CPU time; ``quorate.bench.crypto``:
medians of thread CPU time per primitive), and returns the models to use and
a report of every constant. Without ``measure`` it returns the defaults the
models ship with (measured earlier on the project's machine) and says so.

One core per node: a node's inputs queue behind each other (``SimNode``'s
CPU), nodes do not share cores, as in the paper's one-node-per-machine set-up.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from quorate.crypto.costmodel import CryptoCosts
from quorate.runtime.sim.node import CostModel

RAFT_COST_SAMPLES = 2000
RAFT_COST_SAMPLES_QUICK = 600
CRYPTO_ITERATIONS = 7
CRYPTO_ITERATIONS_QUICK = 3


def calibrate(measure: bool = True, quick: bool = False) -> dict[str, Any]:
    """``{"cost_model": CostModel, "crypto_costs": CryptoCosts, "report": {...}}``."""
    if not measure:
        cost = CostModel()
        crypto = CryptoCosts()
        return {
            "cost_model": cost,
            "crypto_costs": crypto,
            "report": {
                "source": "defaults shipped with the simulator (measured earlier on the project's machine; "
                "calibration was off for this run)",
                "message_base_us": round(cost.base_s * 1e6, 3),
                "message_per_byte_ns": round(cost.per_byte_s * 1e9, 4),
                "crypto_us": {k.removesuffix("_s"): round(v * 1e6, 3) for k, v in asdict(crypto).items()},
                "cores_per_node": 1,
            },
        }
    from quorate.bench.crypto import fitted_costs
    from quorate.bench.crypto import measure as measure_crypto
    from quorate.bench.sim import measure_raft_cost

    started = time.perf_counter()
    raft = measure_raft_cost(RAFT_COST_SAMPLES_QUICK if quick else RAFT_COST_SAMPLES)
    if raft is None:  # pragma: no cover - Raft ships with quorate
        cost = CostModel()
        raft_report: dict[str, Any] = {"source": "defaults (Raft not importable)"}
    else:
        base_s = float(raft["fit_base_s"])
        per_byte_s = float(raft["fit_per_byte_s"])
        cost = CostModel(base_s=base_s, per_byte_s=per_byte_s, tick_s=base_s)
        raft_report = raft
    medians = measure_crypto(CRYPTO_ITERATIONS_QUICK if quick else CRYPTO_ITERATIONS)
    crypto = fitted_costs(medians)
    return {
        "cost_model": cost,
        "crypto_costs": crypto,
        "report": {
            "source": "measured on this machine at the start of the run (quorate.bench.sim.measure_raft_cost, "
            "quorate.bench.crypto.measure: CPU time, medians)",
            "message_base_us": round(cost.base_s * 1e6, 3),
            "message_per_byte_ns": round(cost.per_byte_s * 1e9, 4),
            "timer_us": round(cost.tick_s * 1e6, 3),
            "raft_append_entries": raft_report,
            "crypto_us": {k.removesuffix("_s"): round(v * 1e6, 3) for k, v in asdict(crypto).items()},
            "hashing": "inside the per-message cost (digests are computed in step) and the keyed-hash tags of the cost model",
            "cores_per_node": 1,
            "calibration_wall_s": round(time.perf_counter() - started, 2),
        },
    }
