"""The private-vote state machine: 100 voters through a Raft log on three
replicas (the tally verifies on each and no replica's state or log holds an
opened ballot), every refusal with its reason, snapshots, determinism."""

from __future__ import annotations

import random

import msgspec
import nacl.signing
import pytest
from tests.unit.raft.network import Network

from quorate.core.ready import Entry
from quorate.crypto import ristretto255 as group
from quorate.crypto.zk import (
    Ballot,
    Tallier,
    VoteVerifier,
    ballot_context,
    ballot_signing_bytes,
    cast_ballot,
    commit,
    prove_bit,
    seal_opening,
)
from quorate.raft import EntryKind
from quorate.state.private_votes import (
    ALREADY_TALLIED,
    BAD_COMMAND,
    DOUBLE_VOTE,
    LATE_BALLOT,
    PROPOSAL_EXISTS,
    TOO_EARLY,
    UNKNOWN_PROPOSAL,
    UNKNOWN_VOTER,
    CastBallot,
    OpenProposal,
    OpenTally,
    PrivateVotes,
    VoteCommand,
    VoteResult,
    decode_vote_result,
    encode_vote_command,
)

DEADLINE_S = 100.0
PROPOSAL = "merge-the-agents-branch"


def _seed(i: int) -> bytes:
    return random.Random(5000 + i).randbytes(32)


def _public(i: int) -> bytes:
    return bytes(nacl.signing.SigningKey(_seed(i)).verify_key)


def _cast(ballot: Ballot) -> CastBallot:
    return CastBallot(
        ballot.proposal_id,
        ballot.voter,
        ballot.commitment,
        ballot.proof,
        ballot.sealed_opening,
        ballot.signature,
    )


def _command(op: object, time_s: float) -> bytes:
    return encode_vote_command(VoteCommand(op, time_s))  # type: ignore[arg-type]


def test_a_hundred_voters_through_raft_tally_everywhere_and_reveal_nothing() -> None:
    rng = random.Random(11).randbytes
    tallier = Tallier.generate(rng)
    voters = 100
    votes = [random.Random(100 + i).randrange(2) for i in range(voters)]
    electorate = tuple(_public(i) for i in range(voters))
    ballots = [
        cast_ballot(PROPOSAL, votes[i], _seed(i), tallier.tally_key, rng) for i in range(voters)
    ]

    log: list[bytes] = [
        _command(OpenProposal(PROPOSAL, electorate, tallier.tally_key, DEADLINE_S), 1.0)
    ]
    log += [_command(_cast(b), 2.0 + i * 0.1) for i, b in enumerate(ballots)]
    outsider = cast_ballot(PROPOSAL, 1, _seed(999), tallier.tally_key, rng)
    log.append(_command(_cast(outsider), 50.0))  # unknown voter
    log.append(_command(_cast(ballots[3]), 51.0))  # double vote
    late = cast_ballot(PROPOSAL, 1, _seed(0), tallier.tally_key, rng)
    log.append(_command(OpenTally(PROPOSAL, 0, bytes(64)), 60.0))  # too early
    log.append(_command(_cast(late), DEADLINE_S + 1))  # late (voter 0 again, but late first)
    opening = tallier.open_tally(
        PROPOSAL, {b.voter: (b.commitment, b.sealed_opening) for b in ballots}, rng
    )
    assert opening.yes == sum(votes)
    log.append(
        _command(OpenTally(PROPOSAL, opening.yes + 1, opening.proof), DEADLINE_S + 2)
    )  # wrong
    log.append(_command(OpenTally(PROPOSAL, opening.yes, opening.proof), DEADLINE_S + 3))

    net = Network([1, 2, 3])
    net.elect(1)
    for command in log:
        net.propose(1, command)
        net.deliver()
    replicas = {node: PrivateVotes(VoteVerifier()) for node in (1, 2, 3)}
    results: dict[int, list[VoteResult]] = {}
    for node, machine in replicas.items():
        entries = [e for e in net.applied_entries[node] if e.kind == EntryKind.NORMAL]
        assert [e.data for e in entries] == log
        results[node] = [machine.apply(e.index, e.data) for e in entries]

    expected_errors = [None] * (1 + voters) + [
        UNKNOWN_VOTER,
        DOUBLE_VOTE,
        TOO_EARLY,
        LATE_BALLOT,
        "bad tally: tally proof does not verify",
        None,
    ]
    snapshots = set()
    for node, machine in replicas.items():
        assert [r.error for r in results[node]] == expected_errors
        assert results[node][-1] == VoteResult(ok=True, yes=sum(votes), counted=voters)
        proposal = machine.proposal(PROPOSAL)
        assert proposal is not None and proposal.outcome is not None
        assert (proposal.outcome.yes, proposal.outcome.counted) == (sum(votes), voters)
        snapshots.add(machine.snapshot())
    assert len(snapshots) == 1  # every replica holds the same state

    # No opened ballot anywhere: neither a blinding factor (either byte order)
    # nor a vote with its blinding is in any replica's state or log.
    state = snapshots.pop()
    stored_log = b"".join(e.data for e in net.applied_entries[1])
    for ballot, vote in zip(ballots, votes):
        opened = tallier.unseal(PROPOSAL, ballot.voter, ballot.sealed_opening)
        assert opened is not None and opened[0] == vote
        blinding = opened[1]
        for secret in (blinding.to_bytes(32, "little"), blinding.to_bytes(32, "big")):
            assert secret not in state and secret not in stored_log


def _opened(
    machine: PrivateVotes, tallier: Tallier, voters: int = 3, deadline_s: float = DEADLINE_S
) -> None:
    electorate = tuple(_public(i) for i in range(voters))
    result = machine.apply_command(
        VoteCommand(OpenProposal(PROPOSAL, electorate, tallier.tally_key, deadline_s), 1.0)
    )
    assert result.ok, result


def test_refusals_are_recorded_with_their_reasons() -> None:
    rng = random.Random(3).randbytes
    tallier = Tallier.generate(rng)
    machine = PrivateVotes(VoteVerifier())
    _opened(machine, tallier)
    good = cast_ballot(PROPOSAL, 1, _seed(0), tallier.tally_key, rng)
    forged_proof = CastBallot(
        PROPOSAL, good.voter, good.commitment, bytes(128), good.sealed_opening, good.signature
    )
    other = cast_ballot(PROPOSAL, 0, _seed(1), tallier.tally_key, rng)
    cases = [
        (_cast(cast_ballot("no-such", 1, _seed(0), tallier.tally_key, rng)), UNKNOWN_PROPOSAL),
        (forged_proof, "bad ballot: ballot signature does not verify"),
        (_cast(good), None),
        (_cast(good), DOUBLE_VOTE),
        (_cast(cast_ballot(PROPOSAL, 0, _seed(0), tallier.tally_key, rng)), DOUBLE_VOTE),
        (_cast(cast_ballot(PROPOSAL, 1, _seed(7), tallier.tally_key, rng)), UNKNOWN_VOTER),
        (OpenProposal(PROPOSAL, (good.voter,), tallier.tally_key, 500.0), PROPOSAL_EXISTS),
        (OpenProposal("p2", (), tallier.tally_key, 500.0), "electorate must have 1..100000 voters"),
        (
            OpenProposal("p2", (good.voter, good.voter), tallier.tally_key, 500.0),
            "electorate lists a voter twice",
        ),
        (
            OpenProposal("p2", (b"short",), tallier.tally_key, 500.0),
            "an electorate key is not 32 bytes",
        ),
        (
            OpenProposal("p2", (good.voter,), b"\xff" * 32, 500.0),
            "tally key is not a Ristretto255 point",
        ),
        (
            OpenProposal("p2", (good.voter,), tallier.tally_key, 0.5),
            "deadline is not after the current log time",
        ),
        (OpenTally(PROPOSAL, 1, bytes(64)), TOO_EARLY),
    ]
    for op, reason in cases:
        assert machine.apply_command(VoteCommand(op, 2.0)).error == reason  # type: ignore[arg-type]
    assert machine.apply(99, b"\x93not a command").error == BAD_COMMAND
    assert machine.apply_command(VoteCommand(_cast(other), DEADLINE_S)).error == LATE_BALLOT
    proposal = machine.proposal(PROPOSAL)
    assert proposal is not None
    assert proposal.refused == {
        "bad ballot: ballot signature does not verify": 1,
        DOUBLE_VOTE: 2,
        UNKNOWN_VOTER: 1,
        TOO_EARLY: 1,
        LATE_BALLOT: 1,
    }
    assert machine.refused[BAD_COMMAND] == 1 and machine.refused[UNKNOWN_PROPOSAL] == 1
    # A ballot whose signature is good but whose proof is not (re-signed by its voter).
    key = nacl.signing.SigningKey(_seed(2))
    voter = bytes(key.verify_key)
    proof = bytes(128)
    signature = key.sign(
        ballot_signing_bytes("p3", voter, other.commitment, proof, other.sealed_opening)
    ).signature
    assert machine.apply_command(
        VoteCommand(OpenProposal("p3", (voter,), tallier.tally_key, 500.0), 2.0)
    ).ok
    bad = CastBallot("p3", voter, other.commitment, proof, other.sealed_opening, bytes(signature))
    assert (
        machine.apply_command(VoteCommand(bad, 3.0)).error
        == "bad ballot: bit proof does not verify"
    )

    opening = tallier.open_tally(PROPOSAL, dict(proposal.ballots), rng)
    assert machine.apply_command(
        VoteCommand(OpenTally(PROPOSAL, opening.yes, opening.proof), DEADLINE_S)
    ) == VoteResult(ok=True, yes=1, counted=1)
    assert (
        machine.apply_command(
            VoteCommand(OpenTally(PROPOSAL, opening.yes, opening.proof), DEADLINE_S)
        ).error
        == ALREADY_TALLIED
    )
    assert machine.apply_command(VoteCommand(_cast(other), DEADLINE_S)).error == ALREADY_TALLIED


def test_snapshot_restores_the_same_state_and_replicas_agree() -> None:
    rng = random.Random(4).randbytes
    tallier = Tallier.generate(rng)
    commands = [
        VoteCommand(
            OpenProposal(
                PROPOSAL, tuple(_public(i) for i in range(4)), tallier.tally_key, DEADLINE_S
            ),
            1.0,
        )
    ]
    ballots = [cast_ballot(PROPOSAL, i % 2, _seed(i), tallier.tally_key, rng) for i in range(4)]
    commands += [VoteCommand(_cast(b), 2.0) for b in ballots]
    commands.append(VoteCommand(_cast(ballots[0]), 3.0))
    a, b = PrivateVotes(VoteVerifier()), PrivateVotes(VoteVerifier())
    for index, command in enumerate(commands, start=1):
        data = encode_vote_command(command)
        assert a.apply(index, data) == b.apply(index, data)
    assert a.snapshot() == b.snapshot()
    restored = PrivateVotes(VoteVerifier())
    restored.restore(a.snapshot())
    assert restored.snapshot() == a.snapshot()
    assert restored.applied_index == len(commands)
    proposal = restored.proposal(PROPOSAL)
    assert (
        proposal is not None and len(proposal.ballots) == 4 and proposal.refused == {DOUBLE_VOTE: 1}
    )
    opening = tallier.open_tally(PROPOSAL, dict(proposal.ballots), rng)
    result = restored.apply(
        99,
        encode_vote_command(
            VoteCommand(OpenTally(PROPOSAL, opening.yes, opening.proof), DEADLINE_S)
        ),
    )
    assert result == VoteResult(ok=True, yes=2, counted=4)
    assert decode_vote_result(msgspec.msgpack.encode(result)) == result
    with pytest.raises(ValueError, match="version"):
        restored.restore(msgspec.msgpack.encode([99, 0.0, 0, {}, {}]))


def test_a_spoiled_ballot_is_left_out_of_the_tally() -> None:
    rng = random.Random(5).randbytes
    tallier = Tallier.generate(rng)
    machine = PrivateVotes(VoteVerifier())
    _opened(machine, tallier)
    honest = [cast_ballot(PROPOSAL, 1, _seed(i), tallier.tally_key, rng) for i in (0, 1)]
    key = nacl.signing.SigningKey(_seed(2))
    voter = bytes(key.verify_key)
    blinding = group.random_scalar(rng)
    context = ballot_context(PROPOSAL, voter)
    commitment = commit(0, blinding)
    proof = prove_bit(0, blinding, context, rng)
    sealed = seal_opening(1, blinding + 1, tallier.tally_key, context, rng)
    signature = bytes(
        key.sign(ballot_signing_bytes(PROPOSAL, voter, commitment, proof, sealed)).signature
    )
    for op in [
        *(_cast(b) for b in honest),
        CastBallot(PROPOSAL, voter, commitment, proof, sealed, signature),
    ]:
        assert machine.apply_command(VoteCommand(op, 2.0)).ok
    proposal = machine.proposal(PROPOSAL)
    assert proposal is not None
    opening = tallier.open_tally(PROPOSAL, dict(proposal.ballots), rng)
    spoiled = opening.spoiled_fields
    without = machine.apply_command(
        VoteCommand(OpenTally(PROPOSAL, opening.yes, opening.proof), DEADLINE_S)
    )
    assert without.error == "bad tally: tally proof does not verify"
    result = machine.apply_command(
        VoteCommand(OpenTally(PROPOSAL, opening.yes, opening.proof, spoiled), DEADLINE_S)
    )
    assert result == VoteResult(ok=True, yes=2, counted=2)
    assert proposal.outcome is not None and proposal.outcome.spoiled == (voter,)


def test_entries_of_other_kinds_are_not_commands() -> None:
    machine = PrivateVotes(VoteVerifier())
    entry = Entry(1, 1, 0, b"")
    assert machine.apply(entry.index, entry.data).error == BAD_COMMAND
