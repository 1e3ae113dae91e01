"""The replicated private-vote state machine: secret ballots, public tally.

Theory of operation. Like ``KVStore``, every replica applies the same
committed commands in the same order with ``apply(index, data)``, so the
machine is deterministic: no clock, no randomness. Time enters through the
log: each ``VoteCommand`` carries ``time_s``, stamped by the replica that
proposed it, and the machine keeps ``now_s = max(now_s, time_s)``; a
proposal's deadline is judged against that log time, so every replica calls
the same ballot late at the same log position.

Commands:
- ``OpenProposal``: a proposal id, its electorate (voters' Ed25519 public
  keys), the tallier's key (a Ristretto255 point) and the deadline.
- ``CastBallot``: a Pedersen commitment to 0 or 1, the proof that it is one,
  the opening sealed to the tallier, and the voter's signature over all of
  it. Refused, with the reason recorded, when the proposal is unknown or
  tallied, the ballot is late, the voter is not in the electorate or has
  voted already, or the signature or proof does not verify.
- ``OpenTally``: after the deadline, the number of yes votes, the proof that
  the sum of the accepted commitments (less the spoiled ones) commits to it,
  and the spoiled ballots with their proofs. Refused unless it verifies.

In a replicated service the machine rides in the key-value store's log
(``VotesMachine``, registered as ``"votes"``: a ``quorate.core.machine``
extension), so a ballot is one ``Extension("votes", ...)`` operation and
gets the log's order, exactly-once client sessions and snapshots. There the
log time is the store's (the stamps the log carries, or a Byzantine group's
agreed time rounds), not the command's own ``time_s``.

Checking proofs is the job of an injected ``BallotVerifier`` (a real one is
``quorate.crypto.zk.VoteVerifier``), as signatures go through a Verifier in
the protocol cores. The machine stores per ballot only the commitment (which
reveals nothing: Pedersen commitments are perfectly hiding) and the opening
sealed to the tallier. It never stores an opened individual ballot: a tally
opening carries the total and a proof, never a vote, and a spoiled ballot's
plaintext is by definition not an opening of its commitment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from quorate.core.machine import MachineResult

FORMAT_VERSION = 1
MACHINE_NAME = "votes"
"""The name the machine is registered under in the key-value store."""
VOTER_KEY_SIZE_BYTES = 32
MAX_ELECTORATE = 100_000
"""Voters per proposal: bounds what one command can make every replica store."""
MAX_PROPOSAL_ID_CHARS = 256


class OpenProposal(msgspec.Struct, tag="vote.open", array_like=True, frozen=True):
    proposal_id: str
    electorate: tuple[bytes, ...]
    tally_key: bytes
    deadline_s: float


class CastBallot(msgspec.Struct, tag="vote.ballot", array_like=True, frozen=True):
    proposal_id: str
    voter: bytes
    commitment: bytes
    proof: bytes
    sealed_opening: bytes
    signature: bytes


class OpenTally(msgspec.Struct, tag="vote.tally", array_like=True, frozen=True):
    proposal_id: str
    yes: int
    proof: bytes
    spoiled: tuple[tuple[bytes, bytes, bytes], ...] = ()
    """(voter, shared point, DLEQ proof) for each ballot left out."""


class ReadProposal(msgspec.Struct, tag="vote.read", array_like=True, frozen=True):
    """Answer a proposal's public state (changes nothing): what a tallier
    reads to open the tally, and what anyone reads to check it."""

    proposal_id: str


VoteOp = OpenProposal | CastBallot | OpenTally | ReadProposal


class VoteCommand(msgspec.Struct, array_like=True, frozen=True):
    """One operation as it travels through the log, with its log time."""

    op: VoteOp
    time_s: float = 0.0


class VoteResult(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """``ok`` or the reason for a refusal; a tally's outcome when one opens;
    a proposal's public state (JSON) for ``ReadProposal``."""

    ok: bool
    error: str | None = None
    yes: int | None = None
    counted: int | None = None
    state: str | None = None


class BallotVerifier(Protocol):
    """What the machine asks of the cryptography (None: fine; else the reason)."""

    def tally_key_fault(self, tally_key: bytes) -> str | None: ...

    def ballot_fault(
        self,
        proposal_id: str,
        voter: bytes,
        commitment: bytes,
        proof: bytes,
        sealed_opening: bytes,
        signature: bytes,
    ) -> str | None: ...

    def tally_fault(
        self,
        proposal_id: str,
        tally_key: bytes,
        ballots: Mapping[bytes, tuple[bytes, bytes]],
        yes: int,
        proof: bytes,
        spoiled: Sequence[tuple[bytes, bytes, bytes]],
    ) -> str | None: ...


_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(VoteCommand)
_result_decoder = msgspec.msgpack.Decoder(VoteResult)


def encode_vote_command(command: VoteCommand) -> bytes:
    return _encoder.encode(command)


def decode_vote_result(data: bytes) -> VoteResult:
    return _result_decoder.decode(data)


# Reasons, named once: tests and metrics match on them.
UNKNOWN_PROPOSAL = "unknown proposal"
PROPOSAL_EXISTS = "proposal already exists"
ALREADY_TALLIED = "proposal already tallied"
LATE_BALLOT = "late ballot: the deadline has passed"
UNKNOWN_VOTER = "unknown voter"
DOUBLE_VOTE = "double vote"
TOO_EARLY = "tally before the deadline"
BAD_COMMAND = "malformed command"


@dataclass(slots=True)
class TallyOutcome:
    """What an accepted tally opening established."""

    yes: int
    counted: int
    spoiled: tuple[bytes, ...]


@dataclass(slots=True)
class Proposal:
    """One proposal's public state."""

    electorate: frozenset[bytes]
    tally_key: bytes
    deadline_s: float
    ballots: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    """voter -> (commitment, sealed opening)."""
    refused: dict[str, int] = field(default_factory=dict)
    """reason -> how many inputs were refused for it."""
    outcome: TallyOutcome | None = None


class _ProposalRecord(msgspec.Struct, array_like=True):
    electorate: list[bytes]
    tally_key: bytes
    deadline_s: float
    ballots: list[tuple[bytes, bytes, bytes]]
    refused: dict[str, int]
    outcome: tuple[int, int, list[bytes]] | None


class _Snapshot(msgspec.Struct, array_like=True):
    version: int
    now_s: float
    applied_index: int
    proposals: dict[str, _ProposalRecord]
    refused: dict[str, int]


class PrivateVotes:
    """Deterministic private-vote state machine (see the module docstring)."""

    __slots__ = ("_proposals", "_verifier", "applied_index", "now_s", "refused")

    def __init__(self, verifier: BallotVerifier) -> None:
        self._verifier = verifier
        self._proposals: dict[str, Proposal] = {}
        self.now_s = 0.0
        self.applied_index = 0
        self.refused: dict[str, int] = {}
        """reason -> refused inputs across all proposals (malformed ones too)."""

    # -- applying the log -----------------------------------------------------
    def apply(self, index: int, data: bytes) -> VoteResult:
        """Apply the command at log ``index``; undecodable bytes are refused
        (the same way on every replica)."""
        self.applied_index = index
        try:
            command = _command_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._refuse(None, BAD_COMMAND)
        return self.apply_command(command)

    def apply_command(self, command: VoteCommand) -> VoteResult:
        if command.time_s > self.now_s:
            self.now_s = command.time_s
        op = command.op
        if isinstance(op, CastBallot):
            return self._cast(op)
        if isinstance(op, OpenProposal):
            return self._open(op)
        if isinstance(op, ReadProposal):
            return self._read(op)
        return self._tally(op)

    def _read(self, op: ReadProposal) -> VoteResult:
        proposal = self._proposals.get(op.proposal_id)
        if proposal is None:
            return VoteResult(ok=False, error=UNKNOWN_PROPOSAL)
        outcome = proposal.outcome
        state = {
            "deadline_s": proposal.deadline_s,
            "now_s": self.now_s,
            "electorate": len(proposal.electorate),
            "ballots": {v.hex(): [c.hex(), s.hex()] for v, (c, s) in sorted(proposal.ballots.items())},
            "refused": dict(sorted(proposal.refused.items())),
            "outcome": None
            if outcome is None
            else {"yes": outcome.yes, "counted": outcome.counted, "spoiled": [v.hex() for v in outcome.spoiled]},
        }
        return VoteResult(ok=True, state=json.dumps(state, sort_keys=True))

    def _open(self, op: OpenProposal) -> VoteResult:
        if not op.proposal_id or len(op.proposal_id) > MAX_PROPOSAL_ID_CHARS:
            return self._refuse(None, f"proposal id must be 1..{MAX_PROPOSAL_ID_CHARS} characters")
        if op.proposal_id in self._proposals:
            return self._refuse(None, PROPOSAL_EXISTS)
        electorate = frozenset(op.electorate)
        if not electorate or len(op.electorate) > MAX_ELECTORATE:
            return self._refuse(None, f"electorate must have 1..{MAX_ELECTORATE} voters")
        if len(electorate) != len(op.electorate):
            return self._refuse(None, "electorate lists a voter twice")
        if any(len(key) != VOTER_KEY_SIZE_BYTES for key in electorate):
            return self._refuse(None, "an electorate key is not 32 bytes")
        fault = self._verifier.tally_key_fault(op.tally_key)
        if fault is not None:
            return self._refuse(None, fault)
        if not op.deadline_s > self.now_s:
            return self._refuse(None, "deadline is not after the current log time")
        self._proposals[op.proposal_id] = Proposal(electorate, op.tally_key, op.deadline_s)
        return VoteResult(ok=True)

    def _cast(self, op: CastBallot) -> VoteResult:
        proposal = self._proposals.get(op.proposal_id)
        if proposal is None:
            return self._refuse(None, UNKNOWN_PROPOSAL)
        if proposal.outcome is not None:
            return self._refuse(proposal, ALREADY_TALLIED)
        if self.now_s >= proposal.deadline_s:
            return self._refuse(proposal, LATE_BALLOT)
        if op.voter not in proposal.electorate:
            return self._refuse(proposal, UNKNOWN_VOTER)
        if op.voter in proposal.ballots:
            return self._refuse(proposal, DOUBLE_VOTE)
        fault = self._verifier.ballot_fault(
            op.proposal_id, op.voter, op.commitment, op.proof, op.sealed_opening, op.signature
        )
        if fault is not None:
            return self._refuse(proposal, f"bad ballot: {fault}")
        proposal.ballots[op.voter] = (op.commitment, op.sealed_opening)
        return VoteResult(ok=True)

    def _tally(self, op: OpenTally) -> VoteResult:
        proposal = self._proposals.get(op.proposal_id)
        if proposal is None:
            return self._refuse(None, UNKNOWN_PROPOSAL)
        if proposal.outcome is not None:
            return self._refuse(proposal, ALREADY_TALLIED)
        if self.now_s < proposal.deadline_s:
            return self._refuse(proposal, TOO_EARLY)
        fault = self._verifier.tally_fault(
            op.proposal_id, proposal.tally_key, proposal.ballots, op.yes, op.proof, op.spoiled
        )
        if fault is not None:
            return self._refuse(proposal, f"bad tally: {fault}")
        spoiled = tuple(sorted(voter for voter, _, _ in op.spoiled))
        counted = len(proposal.ballots) - len(spoiled)
        proposal.outcome = TallyOutcome(op.yes, counted, spoiled)
        return VoteResult(ok=True, yes=op.yes, counted=counted)

    def _refuse(self, proposal: Proposal | None, reason: str) -> VoteResult:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if proposal is not None:
            proposal.refused[reason] = proposal.refused.get(reason, 0) + 1
        return VoteResult(ok=False, error=reason)

    # -- reads -------------------------------------------------------------------
    def proposal(self, proposal_id: str) -> Proposal | None:
        """The public state of one proposal (do not modify it)."""
        return self._proposals.get(proposal_id)

    def proposals(self) -> list[str]:
        return sorted(self._proposals)

    # -- snapshots ------------------------------------------------------------------
    def clear(self) -> None:
        """Back to no proposals (a snapshot without vote state was restored)."""
        self._proposals = {}
        self.refused = {}
        self.now_s = 0.0
        self.applied_index = 0

    def snapshot(self) -> bytes:
        records = {
            pid: _ProposalRecord(
                sorted(p.electorate),
                p.tally_key,
                p.deadline_s,
                [(voter, c, s) for voter, (c, s) in sorted(p.ballots.items())],
                dict(sorted(p.refused.items())),
                None
                if p.outcome is None
                else (p.outcome.yes, p.outcome.counted, list(p.outcome.spoiled)),
            )
            for pid, p in sorted(self._proposals.items())
        }
        return _encoder.encode(
            _Snapshot(
                FORMAT_VERSION, self.now_s, self.applied_index, records, dict(sorted(self.refused.items()))
            )
        )

    def restore(self, data: bytes) -> None:
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        if snap.version != FORMAT_VERSION:
            raise ValueError(f"unsupported private-vote snapshot version {snap.version}")
        self.now_s = snap.now_s
        self.applied_index = snap.applied_index
        self.refused = dict(snap.refused)
        self._proposals = {
            pid: Proposal(
                frozenset(r.electorate),
                r.tally_key,
                r.deadline_s,
                {voter: (c, s) for voter, c, s in r.ballots},
                dict(r.refused),
                None
                if r.outcome is None
                else TallyOutcome(r.outcome[0], r.outcome[1], tuple(r.outcome[2])),
            )
            for pid, r in snap.proposals.items()
        }


class VotesMachine:
    """``PrivateVotes`` as an extension machine of the key-value store: each
    command applies at the store's log time; the answer is the
    ``VoteResult`` as JSON."""

    __slots__ = ("votes",)

    def __init__(self, votes: PrivateVotes) -> None:
        self.votes = votes

    def apply(self, index: int, now_s: float, data: bytes) -> MachineResult:
        votes = self.votes
        try:
            command = _command_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            result = votes.apply(index, data)  # refused as malformed, as on every replica
        else:
            votes.applied_index = index
            result = votes.apply_command(VoteCommand(command.op, now_s))
        value = json.dumps({k: v for k, v in msgspec.structs.asdict(result).items() if v is not None})
        return MachineResult(result.ok, value=value, error=result.error)

    def snapshot(self) -> bytes | None:
        if not self.votes.proposals() and not self.votes.refused:
            return None
        return self.votes.snapshot()

    def restore(self, data: bytes | None) -> None:
        if data is None:
            self.votes.clear()
        else:
            self.votes.restore(data)


__all__ = [
    "MACHINE_NAME",
    "BallotVerifier",
    "CastBallot",
    "OpenProposal",
    "OpenTally",
    "PrivateVotes",
    "Proposal",
    "ReadProposal",
    "TallyOutcome",
    "VoteCommand",
    "VoteOp",
    "VoteResult",
    "VotesMachine",
    "decode_vote_result",
    "encode_vote_command",
]
