"""Private votes on a running cluster, from Python.

Theory of operation. Every replica of group 0 hosts the private-vote state
machine (``quorate.state.private_votes``) in its key-value log, so a vote is
a handful of ``Extension("votes", ...)`` operations through an ordinary
``AsyncClient`` (retried under one session number, applied once):

1. someone opens a proposal: its id, the electorate (the voters' Ed25519
   public keys), the tallier's key and a deadline in *log time* (on a Raft
   group, the leader's wall clock: ``time.time()`` plus the voting period);
2. each voter casts a ballot made on its own machine with
   ``quorate.crypto.zk.cast_ballot`` (a Pedersen commitment, a proof that it
   is 0 or 1, the opening sealed to the tallier, the voter's signature); the
   replicas check it and store only the commitment and the sealed opening;
3. after the deadline the tallier reads the ballots (``proposal``), opens
   the sum with ``Tallier.open_tally`` and sends the count with its proof;
   every replica checks the proof against its own copy of the ballots.

No replica ever stores or logs an opened ballot: what travels is the
commitment (perfectly hiding), the sealed opening (only the tallier can open
it) and, at the end, the total with a proof. A refused input raises
``ClientError`` with the machine's reason (double vote, late ballot, bad
proof...). This is the path an agents' API calls; ``VotesClient`` only
encodes and decodes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import astuple
from typing import Any

from quorate.client.aio import AsyncClient
from quorate.client.contact import ClientError
from quorate.crypto.zk import Ballot, TallyOpening
from quorate.state.kv import Extension
from quorate.state.private_votes import (
    MACHINE_NAME,
    CastBallot,
    OpenProposal,
    OpenTally,
    ReadProposal,
    VoteCommand,
    VoteOp,
    VoteResult,
    encode_vote_command,
)


class VotesClient:
    """Private votes through one ``AsyncClient`` (see the module docstring)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def _send(self, op: VoteOp) -> VoteResult:
        result = await self.client.execute(Extension(MACHINE_NAME, encode_vote_command(VoteCommand(op))))
        if result.value is None:
            raise ClientError(result.error or "the cluster hosts no private votes")
        answer = VoteResult(**json.loads(result.value))
        if not answer.ok:
            raise ClientError(answer.error or "refused")
        return answer

    async def open_proposal(
        self, proposal_id: str, electorate: Sequence[bytes], tally_key: bytes, deadline_s: float
    ) -> VoteResult:
        """Open ``proposal_id`` for ``electorate`` until log time ``deadline_s``."""
        return await self._send(OpenProposal(proposal_id, tuple(electorate), tally_key, deadline_s))

    async def cast(self, ballot: Ballot) -> VoteResult:
        """Cast a ballot made with ``quorate.crypto.zk.cast_ballot``."""
        return await self._send(CastBallot(*astuple(ballot)))

    async def proposal(self, proposal_id: str) -> dict[str, Any]:
        """The proposal's public state: deadline, log time, ballots (voter ->
        commitment, sealed opening, hex), refusals, outcome."""
        answer = await self._send(ReadProposal(proposal_id))
        state: dict[str, Any] = json.loads(answer.state or "{}")
        return state

    async def ballots(self, proposal_id: str) -> dict[bytes, tuple[bytes, bytes]]:
        """The accepted ballots as ``Tallier.open_tally`` takes them."""
        state = await self.proposal(proposal_id)
        return {
            bytes.fromhex(voter): (bytes.fromhex(commitment), bytes.fromhex(sealed))
            for voter, (commitment, sealed) in state["ballots"].items()
        }

    async def open_tally(self, proposal_id: str, opening: TallyOpening) -> VoteResult:
        """Publish the tally the tallier opened; every replica checks its proof."""
        return await self._send(OpenTally(proposal_id, opening.yes, opening.proof, opening.spoiled_fields))
