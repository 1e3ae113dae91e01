"""The deterministic simulator: many replicas, clients and faults in one
process, on simulated time, fixed entirely by one seed.

``run(SimConfig(...)) -> SimResult`` is the entry point (``cluster``); the
layers beneath are the event loop (``engine``), the network (``network``), a
replica with its CPU and clock (``node``), fault schedules (``faults``),
clients and their history (``workload``) and the per-protocol glue
(``protocols``). Re-exports only.
"""

from quorate.runtime.sim.cluster import SimConfig, SimResult, Simulation, run
from quorate.runtime.sim.engine import EventLoop, derive_rng
from quorate.runtime.sim.faults import FaultAction, chaos, parse_spec
from quorate.runtime.sim.network import Network
from quorate.runtime.sim.node import CostModel, SimNode
from quorate.runtime.sim.protocols import ProtocolSpec, protocol_spec
from quorate.runtime.sim.workload import Operation, OpMix, Workload

__all__ = [
    "CostModel",
    "EventLoop",
    "FaultAction",
    "Network",
    "OpMix",
    "Operation",
    "ProtocolSpec",
    "SimConfig",
    "SimNode",
    "SimResult",
    "Simulation",
    "Workload",
    "chaos",
    "derive_rng",
    "parse_spec",
    "protocol_spec",
    "run",
]
