"""Private votes through the replicated service of running nodes (in this
process): ballots and the tally are log commands; every replica checks them
and reaches the same outcome; bad ballots are refused with their reasons."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest
from aio_harness import FAST_BACKOFF, LOOPBACK, free_ports, wait_until
from nacl.signing import SigningKey

from quorate.client import AsyncClient, ClientError
from quorate.client.votes import VotesClient
from quorate.crypto.zk import Ballot, Tallier, ballot_signing_bytes, cast_ballot
from quorate.ids import NodeId
from quorate.runtime.aio import AioNode

pytestmark = pytest.mark.timeout(120)

VOTERS = 8
VOTING_PERIOD_S = 3.0


def test_ballots_and_the_tally_go_through_the_log(tmp_path: Path) -> None:
    async def scenario() -> None:
        ports = free_ports(3)
        addresses = {NodeId(i + 1): (LOOPBACK, ports[i]) for i in range(3)}
        nodes = [
            AioNode(
                n,
                addresses,
                tmp_path / f"n{n}",
                listen=addresses[n],
                protocol="raft",
                protocol_options={"election_timeout_s": 0.5, "heartbeat_interval_s": 0.05},
                insecure=True,
                transport_config=FAST_BACKOFF,
            )
            for n in addresses
        ]
        for node in nodes:
            await node.start()
        client = AsyncClient([node.listen for node in nodes], insecure=True, deadline_s=30.0)
        votes_api = VotesClient(client)
        try:
            tallier = Tallier.generate()
            choices = [secrets.randbelow(2) for _ in range(VOTERS)]
            seeds = [secrets.token_bytes(32) for _ in range(VOTERS)]
            ballots = [cast_ballot("p", v, seed, tallier.tally_key) for v, seed in zip(choices, seeds, strict=True)]
            deadline_s = time.time() + VOTING_PERIOD_S
            await votes_api.open_proposal("p", [b.voter for b in ballots], tallier.tally_key, deadline_s)
            last = ballots[-1]
            # A voter that signs a ballot whose commitment is not on the curve,
            # or whose proof is for another commitment: refused, with the reason.
            for commitment, proof, reason in (
                (b"\xff" * 32, last.proof, "commitment is not a Ristretto255 point"),
                (ballots[0].commitment, last.proof, "bit proof does not verify"),
                (last.commitment, last.proof[:100], "bit proof is not 128 bytes"),
            ):
                signature = SigningKey(seeds[-1]).sign(
                    ballot_signing_bytes("p", last.voter, commitment, proof, last.sealed_opening)
                ).signature
                bad = Ballot("p", last.voter, commitment, proof, last.sealed_opening, bytes(signature))
                with pytest.raises(ClientError, match=reason):
                    await votes_api.cast(bad)
            for ballot in ballots:
                assert (await votes_api.cast(ballot)).ok
            with pytest.raises(ClientError, match="double vote"):
                await votes_api.cast(ballots[0])
            with pytest.raises(ClientError, match="unknown proposal"):
                await votes_api.cast(cast_ballot("nope", 1, secrets.token_bytes(32), tallier.tally_key))
            opening = tallier.open_tally("p", await votes_api.ballots("p"))
            await asyncio.sleep(max(0.0, deadline_s - time.time()) + 0.2)
            result = await votes_api.open_tally("p", opening)
            assert (result.yes, result.counted) == (sum(choices), VOTERS)
            state = await votes_api.proposal("p")
            assert state["outcome"]["yes"] == sum(choices)
            assert "double vote" in state["refused"]
            await wait_until(
                lambda: len({(n.metrics["votes.tallied"], n.metrics["votes.outcomes_digest"]) for n in nodes}) == 1
                and nodes[0].metrics["votes.tallied"] == 1,
                "every replica to verify the same tally",
            )
        finally:
            await client.close()
            for node in nodes:
                await node.close()

    asyncio.run(scenario())
