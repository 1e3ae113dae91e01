"""The quorum manager: observations of the nodes, strategies that propose a
voter set with quorum sizes, and a manager that applies one change at a
time through consensus, judges it, rolls it back when it made things worse
and acts on trends before a node fails. Pure: no clock, socket or
randomness; runtimes measure and apply (``quorate.runtime.sim.quorum`` in
the simulator). Re-exports only.
"""

from quorate.quorum.manager import (
    Decision,
    ManagerSettings,
    QuorumManager,
    WindowMetrics,
    judge_window,
)
from quorate.quorum.observations import NodeObservation, Observations, observations_from_json
from quorate.quorum.plan import QuorumPlan, Tolerance, plan_change, tolerance
from quorate.quorum.strategies import (
    STRATEGIES,
    HybridWeights,
    Strategy,
    StrategyParams,
    plan,
    strategy,
)

__all__ = [
    "STRATEGIES",
    "Decision",
    "HybridWeights",
    "ManagerSettings",
    "NodeObservation",
    "Observations",
    "QuorumManager",
    "QuorumPlan",
    "Strategy",
    "StrategyParams",
    "Tolerance",
    "WindowMetrics",
    "judge_window",
    "observations_from_json",
    "plan",
    "plan_change",
    "strategy",
    "tolerance",
]
