"""Reputation: how much a member's word counts, starting low for newcomers.

Theory of operation. A Sybil attacker who gets identities admitted should
not gain influence the moment they are in. So a member's score grows with
its *age in the log* — the entries committed since its admission — from
``initial_score`` to 1 over ``maturity_entries``, linearly; genesis members
start mature. Misbehaviour proven by evidence (an equivocation, a forged
message) takes ``penalty`` off, never below 0, and a revoked node scores 0.
The score is a pure function of log positions and of penalties fed from the
log, so every replica computes the same score at the same index: a protocol
may weigh votes or pick leaders by it (HRB's reputation-weighted
committees) without a replica disagreeing.

``ReputationBook`` reads admissions and revocations from a source with
``admitted_at(node)`` and ``revoked_at(node)`` (the ``KeyRegistry``) and
holds the penalties itself; ``score(node, index)`` is the hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from quorate.errors import ConfigError
from quorate.ids import NodeId

DEFAULT_INITIAL_SCORE = 0.1
DEFAULT_MATURITY_ENTRIES = 10_000
DEFAULT_PENALTY = 0.5


class AdmissionRecord(Protocol):
    """Where admissions and revocations are recorded (the key registry)."""

    def admitted_at(self, node: NodeId | int) -> int | None: ...

    def revoked_at(self, node: NodeId | int) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ReputationPolicy:
    initial_score: float = DEFAULT_INITIAL_SCORE
    """A newly admitted member's score (0..1)."""
    maturity_entries: int = DEFAULT_MATURITY_ENTRIES
    """Log entries after admission at which the score reaches 1."""
    penalty: float = DEFAULT_PENALTY
    """Taken off per proven offence."""

    def validate(self) -> ReputationPolicy:
        if not 0 <= self.initial_score <= 1:
            raise ConfigError(f"initial_score must be in [0, 1], got {self.initial_score}")
        if self.maturity_entries < 1:
            raise ConfigError(f"maturity_entries must be >= 1, got {self.maturity_entries}")
        if not 0 <= self.penalty <= 1:
            raise ConfigError(f"penalty must be in [0, 1], got {self.penalty}")
        return self


def age_score(admitted_at: int, index: int, policy: ReputationPolicy) -> float:
    """The score of a member admitted at ``admitted_at`` (0: genesis) at log ``index``."""
    if admitted_at == 0:
        return 1.0
    age = max(0, index - admitted_at)
    grown = policy.initial_score + (1.0 - policy.initial_score) * age / policy.maturity_entries
    return min(1.0, grown)


@dataclass(slots=True)
class ReputationBook:
    """Scores of the members of one group (see the module docstring)."""

    record: AdmissionRecord
    policy: ReputationPolicy = field(default_factory=ReputationPolicy)
    offences: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.policy.validate()

    def penalize(self, node: NodeId | int) -> None:
        """One proven offence by ``node`` (call it from committed evidence only)."""
        self.offences[int(node)] = self.offences.get(int(node), 0) + 1

    def score(self, node: NodeId | int, index: int) -> float:
        """``node``'s reputation at log ``index``: 0 for strangers and revoked nodes."""
        admitted = self.record.admitted_at(node)
        if admitted is None:
            return 0.0
        revoked = self.record.revoked_at(node)
        if revoked is not None and revoked <= index:
            return 0.0
        score = age_score(admitted, index, self.policy) - self.policy.penalty * self.offences.get(int(node), 0)
        return max(0.0, score)
