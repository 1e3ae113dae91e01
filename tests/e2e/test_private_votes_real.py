"""Private votes on a running cluster (three Raft node processes, TLS): 100
agents, each with its own key and connection, cast secret ballots through the
Python API; the tallier opens the total; every replica verifies the tally,
forged and duplicate ballots are refused with their reasons, and no replica's
state or log holds an opened ballot."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest
from tests.e2e.conftest import FAST_RAFT, WAIT_LIMIT_S, free_base_port

from quorate.cli.certs import ensure_certificates
from quorate.client import ClientError
from quorate.client.aio import AsyncClient
from quorate.client.votes import VotesClient
from quorate.crypto.zk import SCALAR_SIZE_BYTES, Ballot, Tallier, cast_ballot, commit
from quorate.ids import node_name
from quorate.runtime.aio.cluster import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

AGENTS = 100
VOTING_PERIOD_S = 20.0


def _files_of(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file())


def test_a_hundred_agents_vote_and_every_replica_verifies_the_tally(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "votes", nodes=3, base_port=free_base_port(3), insecure=False, options=dict(FAST_RAFT), node_keys=True)
    cluster.write_configs()
    assert cluster.tls_dir is not None
    ensure_certificates(cluster.tls_dir, [*(node_name(n) for n in cluster.ids), "client"])
    cluster.start_all()
    seeds = [secrets.token_bytes(32) for _ in range(AGENTS)]
    votes = [secrets.randbelow(2) for _ in range(AGENTS)]
    tallier = Tallier.generate()
    openings: dict[bytes, tuple[int, int]] = {}

    async def scenario() -> None:
        organiser = VotesClient(AsyncClient(cluster=cluster.directory, deadline_s=60.0))
        ballots = [cast_ballot("budget", v, seed, tallier.tally_key) for v, seed in zip(votes, seeds, strict=True)]
        deadline_s = time.time() + VOTING_PERIOD_S
        await organiser.open_proposal("budget", [b.voter for b in ballots], tallier.tally_key, deadline_s)

        async def agent(ballot: Ballot) -> None:
            client = AsyncClient(cluster=cluster.directory, deadline_s=60.0)
            try:
                assert (await VotesClient(client).cast(ballot)).ok
            finally:
                await client.close()

        await asyncio.gather(*(agent(b) for b in ballots))
        # A replayed ballot, a forged one and a stranger's are refused, with reasons.
        with pytest.raises(ClientError, match="double vote"):
            await organiser.cast(ballots[0])
        # Someone else's ballot under a voter's name (that voter voted already).
        forged = Ballot("budget", ballots[2].voter, ballots[1].commitment, ballots[1].proof, ballots[1].sealed_opening, ballots[1].signature)
        with pytest.raises(ClientError, match="double vote"):
            await organiser.cast(forged)
        stranger = cast_ballot("budget", 1, secrets.token_bytes(32), tallier.tally_key)
        with pytest.raises(ClientError, match="unknown voter"):
            await organiser.cast(stranger)
        on_record = await organiser.ballots("budget")
        assert len(on_record) == AGENTS
        for ballot in ballots:
            opened = tallier.unseal("budget", ballot.voter, ballot.sealed_opening)
            assert opened is not None and commit(*opened) == ballot.commitment
            openings[ballot.voter] = opened
        # The tally opens only after the deadline (log time); the leader's
        # clock moves log time with every command, so wait it out.
        opening = tallier.open_tally("budget", on_record)
        with pytest.raises(ClientError, match="tally before the deadline"):
            await organiser.open_tally("budget", opening)
        await asyncio.sleep(max(0.0, deadline_s - time.time()) + 0.5)
        result = await organiser.open_tally("budget", opening)
        assert (result.yes, result.counted) == (sum(votes), AGENTS)
        # Every replica applied and verified the same tally.
        loop = asyncio.get_running_loop()
        limit = loop.time() + WAIT_LIMIT_S
        while True:
            statuses = await organiser.client.cluster_status()
            seen = {(s.metrics.get("votes.tallied"), s.metrics.get("votes.ballots"), s.metrics.get("votes.outcomes_digest")) for s in statuses if s is not None}
            if len(seen) == 1 and len([s for s in statuses if s is not None]) == 3 and seen.pop()[:2] == (1, AGENTS):
                break
            assert loop.time() < limit, statuses
            await asyncio.sleep(0.2)
        await organiser.client.close()

    try:
        asyncio.run(scenario())
    finally:
        cluster.stop_all()
    # Nothing on any replica's disk opens a ballot: no blinding factor, no
    # plaintext opening. (The commitments are there: the scan finds what is stored.)
    for node in cluster.ids:
        stored = _files_of(cluster.directory / node_name(node))
        assert stored, f"{node_name(node)} stored nothing"
        found_commitments = 0
        for vote, blinding in openings.values():
            r = blinding.to_bytes(SCALAR_SIZE_BYTES, "little")
            assert r not in stored, f"{node_name(node)} holds a blinding factor"
            assert bytes([vote]) + r not in stored
            found_commitments += commit(vote, blinding) in stored
        assert found_commitments == AGENTS
