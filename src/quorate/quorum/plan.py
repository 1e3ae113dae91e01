"""A proposed configuration (``QuorumPlan``), what it tolerates, and the
membership change that gets a cluster there.

Theory of operation
-------------------
A plan names the voters, the learners (every other observed node, so they
keep the log and can vote again quickly), an election quorum Q1 and a
commit quorum Q2 (Howard et al. 2016: any sizes with Q1 + Q2 > n), each
node's weight (the score the strategy ranked it by; Raft counts every vote
as one, so weights choose voters, they do not scale votes) and the voter
best placed to lead.

- ``QuorumPlan.problem`` refuses a plan with no voter, a voter that is also
  a learner, or sizes outside 1..n or with Q1 + Q2 <= n: such a plan is
  never proposed.
- ``tolerance`` says how many voters may fail with both quorums still
  reachable (n - max(Q1, Q2)) and whether losing any one region leaves both.
- ``plan_change`` turns a plan and the configuration in force
  (``quorate.core.binding.MembershipView``) into one ``MembershipChange``:
  new voters added (or promoted), voters that stay members demoted to
  learners, members the plan does not name removed, new learners added, and
  the quorum sizes when they differ (or the voter count does: the sizes are
  then named, never left to a rule). ``None`` when the plan is what is in
  force. The protocol decides whether that takes one step or a joint
  configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quorate.core.binding import MembershipChange, MembershipView
from quorate.core.quorum import quorum_size_problem
from quorate.ids import NodeId


@dataclass(frozen=True, slots=True)
class QuorumPlan:
    """A configuration a strategy proposes (see the module docstring)."""

    strategy: str
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...]
    election_quorum: int
    commit_quorum: int
    weights: Mapping[NodeId, float] = field(default_factory=dict)
    preferred_leader: NodeId | None = None
    reasons: tuple[str, ...] = ()

    def problem(self) -> str | None:
        """Why this plan must not be proposed, or ``None``."""
        if not self.voters:
            return "the plan has an empty voter set"
        if len(set(self.voters)) != len(self.voters):
            return "the plan names a voter twice"
        both = set(self.voters) & set(self.learners)
        if both:
            return f"nodes {sorted(both)} are both voters and learners in the plan"
        problem = quorum_size_problem(len(self.voters), self.election_quorum, self.commit_quorum)
        if problem is not None:
            return problem
        if self.preferred_leader is not None and self.preferred_leader not in self.voters:
            return f"the preferred leader {self.preferred_leader} is not a voter"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "voters": [int(v) for v in self.voters],
            "learners": [int(v) for v in self.learners],
            "election_quorum": self.election_quorum,
            "commit_quorum": self.commit_quorum,
            "weights": {str(int(k)): round(v, 4) for k, v in sorted(self.weights.items())},
            "preferred_leader": None if self.preferred_leader is None else int(self.preferred_leader),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True, slots=True)
class Tolerance:
    """What a configuration survives."""

    failures: int
    """Voters that may fail with an election and a commit quorum left."""
    region_loss: bool
    """True when losing any one region leaves both quorums."""


def tolerance(
    voters: Iterable[NodeId], election: int, commit: int, region_of: Mapping[NodeId, str]
) -> Tolerance:
    """``Tolerance`` of voters ``voters`` with quorums Q1 = ``election`` and
    Q2 = ``commit``; ``region_of`` places each voter."""
    members = list(voters)
    needed = max(election, commit)
    per_region: dict[str, int] = {}
    for node in members:
        region = region_of.get(node, "")
        per_region[region] = per_region.get(region, 0) + 1
    return Tolerance(
        failures=max(0, len(members) - needed),
        region_loss=all(len(members) - count >= needed for count in per_region.values()),
    )


def plan_change(
    plan: QuorumPlan, view: MembershipView, transition: str = "auto"
) -> MembershipChange | None:
    """The change that takes the configuration ``view`` to ``plan`` (None if
    nothing differs). Nodes in neither are ignored; members the plan does not
    name are removed."""
    voters = set(plan.voters)
    learners = set(plan.learners)
    current_voters = set(view.voters)
    current_learners = set(view.learners)
    add = tuple(sorted(voters - current_voters))
    add_learners = tuple(sorted(learners - current_learners))
    remove = tuple(sorted((current_voters | current_learners) - voters - learners))
    sizes = (plan.election_quorum, plan.commit_quorum)
    same_sizes = sizes == (view.election_quorum, view.commit_quorum)
    quorum = None if same_sizes and len(voters) == len(current_voters) else sizes
    if not (add or add_learners or remove) and quorum is None:
        return None
    return MembershipChange(
        add=add, remove=remove, add_learners=add_learners, quorum=quorum, transition=transition
    )
