"""Agent identities, proposals and Ed25519-signed public votes.

Theory of operation. An agent identity is a name and an Ed25519 public key,
registered through the log (``AgentRegister``; the private key never leaves
the agent: ``quorate agents add NAME`` writes it to a file of mode 0600).
A name keeps its first key: registering it again with the same key is a
no-op, with another key a refusal.

A proposal has options, an *electorate* (registered names, fixed when it
opens), a quorum rule and a deadline in log time (``duration_s`` after it
opens). A ballot names its voter and option and carries the voter's
signature over ``ballot_bytes(proposal, voter, option)``; every replica
checks it against the registered key (the check is deterministic: same
key, same bytes, same answer), so no replica — and no client — can vote
in an agent's name. A ballot is refused, with the reason kept in the
proposal's record, when the proposal is unknown or closed, the deadline
has passed, the voter is not in the electorate (an unknown or forged voter
id), the option is not offered, the signature does not verify, or the
voter has voted already. The order of these checks is fixed, so every
replica gives the same reason.

Quorum rules, over the electorate's weights (1 each, except ``weighted``):

- ``majority``: an option with more than half of the weight;
- ``two_thirds``: an option with at least two thirds of it;
- ``unanimity``: an option with all of it;
- ``weighted``: like majority, with the proposal's weight per voter.

The proposal is *decided* the moment an option reaches its quorum (ballots
are final, so that cannot be undone); *rejected* when every voter has voted
and none did; *expired* when the deadline passes first. Every replica
reaches the same outcome at the same log position. Changes go to the change
history in namespaces ``@agents`` and ``@proposals``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from quorate.state.agents.env import TEXT_MAX_CHARS, AgentEnv, Outcome, name_fault, refuse, to_json
from quorate.state.agents.ops import (
    AgentList,
    AgentRegister,
    ProposalList,
    ProposalOpen,
    ProposalStatus,
    VoteCast,
    ballot_bytes,
)

AGENTS_NAMESPACE = "@agents"
PROPOSALS_NAMESPACE = "@proposals"
RULES = ("majority", "two_thirds", "unanimity", "weighted")
PUBLIC_KEY_BYTES = 32
MAX_AGENTS = 100_000
MAX_OPTIONS = 64
MAX_ELECTORATE = 10_000
MAX_WEIGHT = 1_000_000
MAX_DURATION_S = 30 * 24 * 3600.0
REFUSALS_KEPT = 256
"""Refused ballots a proposal keeps in full (the counts by reason are complete)."""
DEADLINE_KIND = "proposal"

KeyCheck = Callable[[bytes, bytes, bytes], bool]
"""(public key, message, signature) -> whether the signature verifies."""

# Refusal reasons, named once: tests, metrics and the audit trail match on them.
UNKNOWN_PROPOSAL = "unknown proposal"
CLOSED = "proposal is closed"
LATE = "late ballot: the deadline has passed"
NOT_IN_ELECTORATE = "voter is not in the electorate"
UNKNOWN_OPTION = "option is not offered"
BAD_SIGNATURE = "bad signature"
DOUBLE_VOTE = "voter has already voted"


def ed25519_check(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 signature check through libsodium; never raises on bad input."""
    import nacl.exceptions
    import nacl.signing

    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError, ValueError, TypeError):
        return False
    return True


@dataclass(slots=True)
class Proposal:
    id: str
    question: str
    options: tuple[str, ...]
    rule: str
    weights: dict[str, int]
    """The electorate: voter -> weight."""
    deadline_s: float
    opened_s: float
    proposer: str
    ballots: dict[str, str] = field(default_factory=dict)
    state: str = "open"
    outcome: str | None = None
    closed_s: float | None = None
    refused: list[tuple[str, str]] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)

    def tally(self) -> dict[str, int]:
        counts = dict.fromkeys(self.options, 0)
        for voter, option in self.ballots.items():
            counts[option] += self.weights[voter]
        return counts

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "options": list(self.options),
            "rule": self.rule,
            "electorate": sorted(self.weights),
            "weights": dict(sorted(self.weights.items())) if self.rule == "weighted" else None,
            "deadline_s": self.deadline_s,
            "opened_s": self.opened_s,
            "proposer": self.proposer,
            "state": self.state,
            "outcome": self.outcome,
            "closed_s": self.closed_s,
            "tally": self.tally(),
            "votes": [{"voter": v, "option": o} for v, o in self.ballots.items()],
            "refused": [{"voter": v, "reason": r} for v, r in self.refused],
            "refusals": dict(sorted(self.refusals.items())),
        }


def quorum_reached(rule: str, weight: int, total: int) -> bool:
    if rule == "two_thirds":
        return 3 * weight >= 2 * total
    if rule == "unanimity":
        return weight == total
    return 2 * weight > total  # majority, weighted


class _ProposalRecord(msgspec.Struct, array_like=True):
    id: str
    question: str
    options: list[str]
    rule: str
    weights: dict[str, int]
    deadline_s: float
    opened_s: float
    proposer: str
    ballots: list[tuple[str, str]]
    state: str
    outcome: str | None
    closed_s: float | None
    refused: list[tuple[str, str]]
    refusals: dict[str, int]


class Votes:
    """Agent registry and signed votes (see the module docstring)."""

    __slots__ = ("agents", "check", "env", "proposals")

    def __init__(self, env: AgentEnv, check: KeyCheck = ed25519_check) -> None:
        self.env = env
        self.check = check
        self.agents: dict[str, tuple[bytes, float]] = {}
        """name -> (public key, registered at log time)."""
        self.proposals: dict[str, Proposal] = {}

    # -- agents ---------------------------------------------------------------------
    def register(self, op: AgentRegister) -> Outcome:
        fault = name_fault("agent name", op.name)
        if fault is not None:
            return refuse(fault)
        if len(op.public_key) != PUBLIC_KEY_BYTES:
            return refuse(f"public_key must be {PUBLIC_KEY_BYTES} bytes, got {len(op.public_key)}")
        known = self.agents.get(op.name)
        if known is not None:
            if known[0] == op.public_key:
                return Outcome(True, to_json(self._agent_view(op.name)))
            return refuse(f"agent {op.name!r} is already registered with another key")
        if len(self.agents) >= MAX_AGENTS:
            return refuse(f"too many agents ({MAX_AGENTS})")
        self.agents[op.name] = (op.public_key, self.env.now_s)
        view = self._agent_view(op.name)
        self.env.emit("agent.registered", AGENTS_NAMESPACE, op.name, view)
        return Outcome(True, to_json(view))

    def _agent_view(self, name: str) -> dict[str, Any]:
        key, at = self.agents[name]
        return {"name": name, "public_key": key.hex(), "registered_s": at}

    def list_agents(self, op: AgentList) -> Outcome:
        names = sorted(self.agents)[: max(1, op.limit)]
        return Outcome(True, to_json({"agents": [self._agent_view(n) for n in names], "total": len(self.agents)}))

    # -- proposals ------------------------------------------------------------------
    def open(self, op: ProposalOpen) -> Outcome:
        fault = name_fault("proposal_id", op.proposal_id) or self._open_fault(op)
        if fault is not None:
            return refuse(fault)
        if op.proposal_id in self.proposals:
            return refuse(f"proposal {op.proposal_id!r} already exists")
        names = op.electorate or tuple(sorted(self.agents))
        if not names:
            return refuse("the electorate is empty: register agents first (quorate agents add NAME)")
        if len(set(names)) != len(names):
            return refuse("the electorate names a voter twice")
        if len(names) > MAX_ELECTORATE:
            return refuse(f"the electorate may have at most {MAX_ELECTORATE} voters")
        unknown = [n for n in names if n not in self.agents]
        if unknown:
            return refuse(f"not registered agents: {', '.join(unknown[:10])}")
        if op.rule == "weighted":
            given = dict(op.weights)
            if len(given) != len(op.weights):
                return refuse("weights name a voter twice")
            missing = [n for n in names if n not in given]
            if missing or set(given) - set(names):
                return refuse("weights must give each voter of the electorate exactly one weight")
            if any(not 1 <= w <= MAX_WEIGHT for w in given.values()):
                return refuse(f"weights must be in 1..{MAX_WEIGHT}")
            weights = {n: given[n] for n in names}
        else:
            if op.weights:
                return refuse("weights are only for the weighted rule")
            weights = dict.fromkeys(names, 1)
        env = self.env
        proposal = Proposal(
            op.proposal_id, op.question, op.options, op.rule, weights, env.now_s + op.duration_s, env.now_s,
            op.proposer,
        )
        self.proposals[op.proposal_id] = proposal
        env.schedule(proposal.deadline_s, DEADLINE_KIND, proposal.id, 0)
        view = proposal.view()
        env.emit("proposal.opened", PROPOSALS_NAMESPACE, proposal.id, view)
        return Outcome(True, to_json({"proposal": view}))

    def _open_fault(self, op: ProposalOpen) -> str | None:
        if len(op.question) > TEXT_MAX_CHARS:
            return f"question is longer than {TEXT_MAX_CHARS} characters"
        if not 2 <= len(op.options) <= MAX_OPTIONS:
            return f"a proposal needs 2..{MAX_OPTIONS} options"
        if len(set(op.options)) != len(op.options) or any(not o or len(o) > 256 for o in op.options):
            return "options must be distinct, 1..256 characters each"
        if op.rule not in RULES:
            return f"rule must be one of {', '.join(RULES)}, got {op.rule!r}"
        if not 0 < op.duration_s <= MAX_DURATION_S:
            return f"duration_s must be in (0, {MAX_DURATION_S:g}] seconds"
        if len(op.proposer) > 128:
            return "proposer must be at most 128 characters"
        return None

    def vote(self, op: VoteCast) -> Outcome:
        proposal = self.proposals.get(op.proposal_id)
        if proposal is None:
            return refuse(f"{UNKNOWN_PROPOSAL} {op.proposal_id!r}")
        reason = self._ballot_fault(proposal, op)
        if reason is not None:
            self._record_refusal(proposal, op.voter, reason)
            return refuse(reason, {"proposal": proposal.view()})
        proposal.ballots[op.voter] = op.option
        self.env.emit(
            "proposal.voted", PROPOSALS_NAMESPACE, proposal.id, {"voter": op.voter, "option": op.option}
        )
        self._settle(proposal)
        return Outcome(True, to_json({"proposal": proposal.view()}))

    def _ballot_fault(self, proposal: Proposal, op: VoteCast) -> str | None:
        if proposal.state != "open":
            return f"{CLOSED} ({proposal.state})"
        if self.env.now_s >= proposal.deadline_s:
            return LATE
        if op.voter not in proposal.weights:
            return NOT_IN_ELECTORATE
        if op.option not in proposal.options:
            return UNKNOWN_OPTION
        key = self.agents[op.voter][0]
        if not self.check(key, ballot_bytes(op.proposal_id, op.voter, op.option), op.signature):
            return BAD_SIGNATURE
        if op.voter in proposal.ballots:
            return DOUBLE_VOTE
        return None

    def _record_refusal(self, proposal: Proposal, voter: str, reason: str) -> None:
        proposal.refusals[reason] = proposal.refusals.get(reason, 0) + 1
        if len(proposal.refused) < REFUSALS_KEPT:
            proposal.refused.append((voter[:128], reason))
        self.env.emit("proposal.refused", PROPOSALS_NAMESPACE, proposal.id, {"voter": voter[:128], "reason": reason})

    def _settle(self, proposal: Proposal) -> None:
        total = sum(proposal.weights.values())
        for option, weight in proposal.tally().items():
            if quorum_reached(proposal.rule, weight, total):
                self._close(proposal, "decided", option)
                return
        if len(proposal.ballots) == len(proposal.weights):
            self._close(proposal, "rejected", None)

    def _close(self, proposal: Proposal, state: str, outcome: str | None) -> None:
        proposal.state = state
        proposal.outcome = outcome
        proposal.closed_s = self.env.now_s
        self.env.emit(f"proposal.{state}", PROPOSALS_NAMESPACE, proposal.id, proposal.view())

    def deadline(self, proposal_id: str) -> None:
        proposal = self.proposals.get(proposal_id)
        if proposal is not None and proposal.state == "open":
            self._close(proposal, "expired", None)

    def status(self, op: ProposalStatus) -> Outcome:
        proposal = self.proposals.get(op.proposal_id)
        if proposal is None:
            return refuse(f"{UNKNOWN_PROPOSAL} {op.proposal_id!r}")
        return Outcome(True, to_json({"proposal": proposal.view()}))

    def list_proposals(self, op: ProposalList) -> Outcome:
        items = list(self.proposals.values())[-max(1, op.limit) :]
        out = [{k: p.view()[k] for k in ("id", "question", "state", "outcome", "deadline_s")} for p in items]
        return Outcome(True, to_json({"proposals": out, "total": len(self.proposals)}))

    # -- snapshots ------------------------------------------------------------------
    def state(self) -> tuple[dict[str, tuple[bytes, float]], list[_ProposalRecord]]:
        return dict(self.agents), [
            _ProposalRecord(
                p.id, p.question, list(p.options), p.rule, p.weights, p.deadline_s, p.opened_s, p.proposer,
                list(p.ballots.items()), p.state, p.outcome, p.closed_s, list(p.refused), dict(p.refusals),
            )
            for p in self.proposals.values()
        ]

    def restore(self, agents: dict[str, tuple[bytes, float]], records: list[_ProposalRecord]) -> None:
        self.agents = {name: (bytes(key), at) for name, (key, at) in agents.items()}
        self.proposals = {
            r.id: Proposal(
                r.id, r.question, tuple(r.options), r.rule, dict(r.weights), r.deadline_s, r.opened_s, r.proposer,
                dict(r.ballots), r.state, r.outcome, r.closed_s, [tuple(x) for x in r.refused],  # type: ignore[misc]
                dict(r.refusals),
            )
            for r in records
        }


__all__ = [
    "AGENTS_NAMESPACE",
    "BAD_SIGNATURE",
    "CLOSED",
    "DOUBLE_VOTE",
    "LATE",
    "NOT_IN_ELECTORATE",
    "PROPOSALS_NAMESPACE",
    "RULES",
    "UNKNOWN_OPTION",
    "UNKNOWN_PROPOSAL",
    "KeyCheck",
    "Proposal",
    "Votes",
    "ed25519_check",
    "quorum_reached",
]
