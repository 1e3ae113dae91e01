"""Distributed key generation through a running cluster's log (in this
process, real TCP and TLS): four Raft nodes, and four PBFT replicas, agree on one threshold key that
none of them ever holds, a restarted node rebuilds its share from the log,
and resharing to fewer members keeps the key; a dealer that cheats is blamed and excluded by every
honest node alike; a silent one is closed out by the phase timeout; a post
that its sender did not sign is refused with the reason."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import shutil
from pathlib import Path

import pytest
from aio_harness import FAST_BACKOFF, LOOPBACK, free_ports, wait_until

import quorate.runtime.aio.security as node_security
from quorate.cli.certs import issue_certificate
from quorate.client import AsyncClient
from quorate.crypto.dkg import Complaints, DkgParticipant
from quorate.crypto.keyfiles import issue_node_key, key_file
from quorate.crypto.threshold import FeldmanDealing, ThresholdSigner, deal
from quorate.ids import NodeId
from quorate.runtime.aio import AioNode, TlsConfig
from quorate.runtime.aio.security import SecuritySettings
from quorate.security.dkg_log import MACHINE_NAME, encode_dkg_command, make_post, make_start
from quorate.state.kv import Extension

pytestmark = pytest.mark.timeout(180)

MEMBERS = (1, 2, 3, 4)
THRESHOLD = 3


class WrongCommitmentDealer(DkgParticipant):
    """Publishes the commitments of another polynomial: every share fails them."""

    def _make_dealing(self) -> FeldmanDealing:
        honest = super()._make_dealing()
        other = deal(honest.threshold, len(honest.shares), seed=b"another polynomial")
        return dataclasses.replace(honest, commitments=other.commitments)


class SilentDealer(DkgParticipant):
    """Never deals (it still receives)."""

    def start(self) -> None:
        self._started = True


def _nodes(tmp_path: Path, certs: Path, protocol: str) -> list[AioNode]:
    keys = tmp_path / "keys"
    for i in MEMBERS:
        issue_node_key(keys, NodeId(i))
    tls_dir = tmp_path / "certs"
    shutil.copytree(certs, tls_dir)
    issue_certificate(tls_dir, "n4")
    ports = free_ports(len(MEMBERS))
    addresses = {NodeId(i): (LOOPBACK, ports[i - 1]) for i in MEMBERS}
    options: dict[str, object] = {"keys_dir": str(keys)}
    if protocol == "raft":
        options |= {"election_timeout_s": 0.5, "heartbeat_interval_s": 0.05}
    return [
        AioNode(
            n, addresses, tmp_path / f"n{n}", listen=addresses[n], protocol=protocol, protocol_options=options,
            tls=TlsConfig.from_directory(tls_dir, f"n{n}"), transport_config=FAST_BACKOFF,
            security=SecuritySettings(relay_retry_s=0.3),
        )
        for n in addresses
    ]


def _restarted(node: AioNode) -> AioNode:
    return AioNode(
        node.id, {**node.peers, node.id: node.listen}, node.data_dir, listen=node.listen, protocol=node.binding,
        protocol_options=node.protocol_options, tls=node.tls, transport_config=FAST_BACKOFF,
        security=SecuritySettings(relay_retry_s=0.3),
    )


async def _submit(client: AsyncClient, command: object) -> tuple[bool, str | None]:
    result = await client.execute(Extension(MACHINE_NAME, encode_dkg_command(command)))  # type: ignore[arg-type]
    return result.ok, result.error


def _seed(tmp_path: Path, node: int) -> bytes:
    return bytes.fromhex(key_file(tmp_path / "keys", NodeId(node)).read_text().strip())


@pytest.mark.parametrize("protocol", ["raft", "pbft"])
def test_a_group_key_from_the_log_with_cheating_and_silent_dealers(
    tmp_path: Path, cluster_certs: Path, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setattr(node_security, "DKG_PHASE_TIMEOUT_S", 1.0)

    async def scenario() -> None:
        nodes = _nodes(tmp_path, cluster_certs, protocol)
        client = AsyncClient(
            [node.listen for node in nodes], tls=tmp_path / "certs", tls_name="client-a", timeout_s=2.0, deadline_s=30.0
        )
        try:
            for node in nodes:
                await node.start()
            managers = [node.security for node in nodes]
            assert all(m is not None for m in managers)
            cluster = managers[0].registry.cluster  # type: ignore[union-attr]
            await client.put("ready", "1")

            async def run(session: str, honest: list[int]) -> None:
                start = make_start(cluster, session, MEMBERS, THRESHOLD, 1, _seed(tmp_path, 1))
                assert await _submit(client, start) == (True, None)
                await wait_until(
                    lambda: all(session in managers[i - 1].dkg.results for i in honest),  # type: ignore[union-attr]
                    f"every honest node to finish {session}",
                )

            # 1. Honest: one key everywhere, and any three shares sign for it.
            await run("epoch-1", list(MEMBERS))
            results = [m.dkg.results["epoch-1"] for m in managers]  # type: ignore[union-attr]
            public = results[0].public_key
            assert {r.group_public_key for r in results} == {public.group_public_key}
            assert all(r.qualified == tuple(NodeId(i) for i in MEMBERS) for r in results)
            partials = {
                r.share.index: ThresholdSigner(NodeId(i), r.share).sign(b"epoch 1 block")
                for i, r in zip(MEMBERS, results, strict=True)
                if r.share is not None and i != 2
            }
            assert len(partials) == THRESHOLD
            assert public.verify(b"epoch 1 block", public.combine(partials))
            assert len({r.share.secret_key for r in results if r.share is not None}) == len(MEMBERS)

            # A restarted node rebuilds its share from the log and its own key
            # (its dealing is drawn again from the same stream: no equivocation).
            await nodes[1].close()
            nodes[1] = _restarted(nodes[1])
            await nodes[1].start()
            managers[1] = nodes[1].security
            await wait_until(lambda: "epoch-1" in managers[1].dkg.results, "n2 to rebuild epoch-1")  # type: ignore[union-attr]
            again = managers[1].dkg.results["epoch-1"]  # type: ignore[union-attr]
            assert again.share == results[1].share and again.group_public_key == public.group_public_key

            # Resharing to n1..n3 with threshold 2 keeps the key; two new shares sign.
            start = make_start(
                cluster, "epoch-1b", (1, 2, 3), 2, 1, _seed(tmp_path, 1), reshare="epoch-1", old_commitments=public.commitments
            )
            assert await _submit(client, start) == (True, None)
            await wait_until(
                lambda: all("epoch-1b" in m.dkg.results for m in managers[:3]),  # type: ignore[union-attr]
                "n1..n3 to finish the resharing",
            )
            reshared = [m.dkg.results["epoch-1b"] for m in managers[:3]]  # type: ignore[union-attr]
            assert {r.group_public_key for r in reshared} == {public.group_public_key}
            new_key = reshared[0].public_key
            assert new_key.threshold == 2
            two = {r.share.index: ThresholdSigner(NodeId(i), r.share).sign(b"resharing") for i, r in ((1, reshared[0]), (3, reshared[2])) if r.share}
            assert new_key.verify(b"resharing", new_key.combine(two)) and public.verify(b"resharing", new_key.combine(two))
            await wait_until(lambda: "epoch-1b" in managers[3].dkg.results, "n4 to finish dealing")  # type: ignore[union-attr]
            assert managers[3].dkg.results["epoch-1b"].share is None  # type: ignore[union-attr]  # n4 dealt, holds nothing new

            # 2. n4 deals against other commitments: blamed by everyone, excluded.
            managers[3].dkg.factory = WrongCommitmentDealer  # type: ignore[union-attr]
            await run("epoch-2", [1, 2, 3])
            honest = [managers[i].dkg.results["epoch-2"] for i in range(3)]  # type: ignore[union-attr]
            assert {r.group_public_key for r in honest} == {honest[0].group_public_key}
            for r in honest:
                assert r.qualified == (NodeId(1), NodeId(2), NodeId(3))
                assert "revealed a bad share" in r.disqualified[NodeId(4)]

            # 3. n4 never deals: the phase timeout closes it out.
            managers[3].dkg.factory = SilentDealer  # type: ignore[union-attr]
            await run("epoch-3", [1, 2, 3])
            for i in range(3):
                result = managers[i].dkg.results["epoch-3"]  # type: ignore[union-attr]
                assert result.qualified == (NodeId(1), NodeId(2), NodeId(3))
                assert result.disqualified[NodeId(4)] == "no dealing"
            assert sum(m.counters["dkg.phase_timeouts"] for m in managers) >= 1  # type: ignore[union-attr]

            # 4. A post its sender did not sign, a start by a stranger: refused, with the reason.
            forged = make_post(cluster, "epoch-3", 2, Complaints(b"epoch-3", ()), secrets.token_bytes(32))
            assert await _submit(client, forged) == (False, "DKG message not signed by the sender's current key")
            stranger = make_start(cluster, "epoch-9", MEMBERS, THRESHOLD, 1, secrets.token_bytes(32))
            assert await _submit(client, stranger) == (False, "DKG start not signed by the starter's current key")
            await wait_until(
                lambda: len({m.metrics["dkg.keys_digest"] for m in managers}) == 1,  # type: ignore[union-attr]
                "every node to report the same keys",
            )
        finally:
            await client.close()
            for node in nodes:
                await node.close()

    asyncio.run(scenario())
