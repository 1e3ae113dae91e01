"""A malicious process for ``quorate bench attack``: one attack, then a JSON
line saying what it tried and what it saw.

Theory of operation. ``python -m quorate.bench.attack_agent CONFIG`` reads a
JSON object (``scenario`` and its parameters) and runs that attack from its
own source address on loopback (``127.x.y.z``: another "host" than the
nodes' ``127.0.0.1``), with whatever credentials the orchestrator handed it
(a client certificate of the cluster CA: a stolen credential; a revoked
node's key and certificate). It never trusts its own view of success: it
reports what the nodes answered (a reason, a closed connection), and the
orchestrator checks the nodes' own counters (``quorate.bench.attack``).

Scenarios:

- ``sybil``: join requests for many fresh node ids (each with a valid proof
  of its key) and membership changes, as fast as it can, to every node.
- ``eclipse``: as many TLS client connections to one node as it can hold.
- ``flood``: raw TCP connections that never start a handshake (half-open,
  slowloris), as fast as it can.
- ``replay_forge``: a committed registry command replayed; registry commands
  signed by the wrong key or with garbage signatures; a peer ``Hello``
  claiming another node's name; garbage and oversize frames.
- ``forged_votes``: ballots from a stranger, an honest voter's ballot
  replayed or altered, and — with one electorate key it holds — a commitment
  to 2 with a forged proof, a commitment off the curve, a truncated proof.
- ``old_tls``: TLS 1.2, 1.1 and 1.0 handshakes, and plain TCP.
- ``revoked``: after its node's revocation, it listens at that node's
  address with its certificate (the others dial it) and sends as it; and
  submits registry commands signed with the revoked key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from quorate.codec import WireCodec, encode_frame
from quorate.crypto.ristretto255 import random_scalar
from quorate.crypto.zk import (
    Ballot,
    ballot_context,
    ballot_signing_bytes,
    cast_ballot,
    commit,
    prove_bit,
)
from quorate.ids import NodeId
from quorate.runtime.aio.admin import CLIENT_PROTOCOL_TYPES, Admin, AdminReply
from quorate.runtime.aio.tls import TlsConfig
from quorate.runtime.aio.transport import ROLE_CLIENT, ROLE_PEER, Hello
from quorate.security.keyregistry import (
    KIND_SIGNING,
    MACHINE_NAME,
    Approve,
    Describe,
    RegistryCommand,
    encode_registry_command,
    make_admission_request,
    make_announcement,
    make_revocation,
    public_key_of,
)
from quorate.state.kv import Extension, decode_result, encode_op
from quorate.state.private_votes import MACHINE_NAME as VOTES
from quorate.state.private_votes import CastBallot, ReadProposal, VoteCommand, encode_vote_command
from quorate.state.service import ClientReply, ClientRequest

Address = tuple[str, int]
CODEC = WireCodec((Hello, *CLIENT_PROTOCOL_TYPES))
ANSWER_WAIT_S = 10.0
DESCRIBE = Extension(MACHINE_NAME, encode_registry_command(Describe()))
"""A harmless command: whoever answers it without a redirect orders commands."""
CLOSE_WAIT_S = 3.0
LEADER_WAIT_S = 30.0


async def _fate(reader: asyncio.StreamReader) -> str:
    """What the other end did with a connection within ``CLOSE_WAIT_S``:
    ``"closed"`` (an orderly close or a reset: it is gone either way),
    ``"answered"`` (it sent bytes and then closed) or ``"left open"``."""
    try:
        data = await asyncio.wait_for(reader.read(), CLOSE_WAIT_S)
    except TimeoutError:
        return "left open"
    except (OSError, ssl.SSLError):
        return "closed"
    return "answered" if data else "closed"


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _client_context(tls: TlsConfig, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(tls.ca_file))
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = maximum
        with contextlib.suppress(ssl.SSLError):
            context.set_ciphers("ALL:@SECLEVEL=0")
    return context


class Session:
    """One client connection from the attacker's address: send requests, read answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_id: int) -> None:
        self.reader = reader
        self.writer = writer
        self.client_id = client_id
        self.seq = 0
        self.buffer = b""

    @classmethod
    async def open(cls, address: Address, tls: TlsConfig, source: str) -> Session:
        reader, writer = await asyncio.open_connection(
            *address, ssl=_client_context(tls), server_hostname="n1", local_addr=(source, 0)
        )
        client_id = secrets.randbits(62) or 1
        writer.write(encode_frame(CODEC.encode(NodeId(client_id), Hello(client_id, ROLE_CLIENT))))
        return cls(reader, writer, client_id)

    def send_op(self, op: Extension) -> int:
        self.seq += 1
        self.writer.write(encode_frame(CODEC.encode(NodeId(self.client_id), ClientRequest(self.client_id, self.seq, encode_op(op)))))
        return self.seq

    def send_admin(self, node: int, address: str) -> int:
        self.seq += 1
        self.writer.write(encode_frame(CODEC.encode(NodeId(self.client_id), Admin(self.seq, "add_learner", node, address))))
        return self.seq

    async def answers(self, expected: int, wait_s: float = ANSWER_WAIT_S) -> list[Any]:
        """Up to ``expected`` answers (fewer if the node stops answering)."""
        out: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while len(out) < expected:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            while len(self.buffer) >= 4 and len(self.buffer) >= 4 + int.from_bytes(self.buffer[:4], "big"):
                size = int.from_bytes(self.buffer[:4], "big")
                body, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
                out.append(CODEC.decode_frame(body)[1])
            if len(out) >= expected:
                break
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 16), remaining)
            except (TimeoutError, ConnectionError, ssl.SSLError):
                break
            if not data:
                break
            self.buffer += data
        return out

    def close(self) -> None:
        self.writer.close()


def _reason(answer: Any) -> str:
    if isinstance(answer, ClientReply):
        if answer.status != "ok":
            return answer.error or answer.status
        result = decode_result(answer.result)
        if result.ok:
            return "accepted"
        text = result.error or ""
        if result.value and result.value.startswith("{"):
            text = json.loads(result.value).get("error") or text
        return text or "refused"
    if isinstance(answer, AdminReply):
        return "accepted" if answer.status == "ok" else (answer.error or answer.status)
    return type(answer).__name__


async def _leader_session(endpoints: list[Address], tls: TlsConfig, source: str, probe: Extension) -> Session:
    """A session with the node that orders commands (answers without redirect);
    during an election every node may redirect, so try again until
    ``LEADER_WAIT_S`` is over. An attack that never reaches the leader tests
    nothing: no leader is an error, not a containment."""
    deadline = time.monotonic() + LEADER_WAIT_S
    while True:
        for address in endpoints:
            try:
                session = await Session.open(address, tls, source)
            except (OSError, ssl.SSLError, TimeoutError):
                continue
            session.send_op(probe)
            [answer] = await session.answers(1) or [None]
            if isinstance(answer, ClientReply) and answer.status != "redirect":
                return session
            session.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no node of {len(endpoints)} ordered commands within {LEADER_WAIT_S:g} s")
        await asyncio.sleep(0.2)


# -- the scenarios ------------------------------------------------------------------
async def sybil(config: dict[str, Any]) -> dict[str, Any]:
    endpoints = [_address(e) for e in config["endpoints"]]
    tls = TlsConfig(Path(config["ca"]), Path(config["cert"]), Path(config["key"]))
    cluster = bytes.fromhex(config["cluster"])
    count = int(config["count"])
    outcomes: Counter[str] = Counter()
    sessions = [await Session.open(a, tls, config["source"]) for a in endpoints]
    started = time.monotonic()
    sent = {id(s): 0 for s in sessions}
    for i in range(count):
        node = int(config["first_node"]) + i
        request = make_admission_request(cluster, node, secrets.token_bytes(32))
        for session in sessions:
            session.send_op(Extension(MACHINE_NAME, encode_registry_command(request)))
            session.send_admin(node, f"127.0.9.{i % 250 + 1}:{20000 + i}")
            sent[id(session)] += 2
        if i % 20 == 0:
            await asyncio.sleep(0)
    for session in sessions:
        for answer in await session.answers(sent[id(session)]):
            outcomes[_reason(answer)] += 1
        session.close()
    attempts = 2 * count * len(sessions)
    return {"attempts": attempts, "answers": dict(outcomes), "unanswered": attempts - sum(outcomes.values()), "seconds": round(time.monotonic() - started, 3)}


async def eclipse(config: dict[str, Any]) -> dict[str, Any]:
    address = _address(config["target"])
    tls = TlsConfig(Path(config["ca"]), Path(config["cert"]), Path(config["key"]))
    context = _client_context(tls)
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    outcomes: Counter[str] = Counter()

    async def one() -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*address, ssl=context, server_hostname="n1", local_addr=(config["source"], 0)), 10
            )
        except (OSError, TimeoutError, ssl.SSLError):
            outcomes["refused at connect or handshake"] += 1
            return
        writer.write(encode_frame(CODEC.encode(NodeId(1 << 40), Hello(1 << 40, ROLE_CLIENT))))
        connections.append((reader, writer))

    batch = 32
    count = int(config["count"])
    for start in range(0, count, batch):
        await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    closed: set[int] = set()

    async def watch(i: int, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            await reader.read()
        closed.add(i)

    watchers = [asyncio.create_task(watch(i, reader)) for i, (reader, _) in enumerate(connections)]
    await asyncio.sleep(float(config["hold_s"]))
    outcomes["closed by the node"] += len(closed)
    outcomes["held to the end"] += len(connections) - len(closed)
    for task in watchers:
        task.cancel()
    for _, writer in connections:
        writer.close()
    return {"attempts": count, "answers": dict(outcomes)}


async def flood(config: dict[str, Any]) -> dict[str, Any]:
    address = _address(config["target"])
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    outcomes: Counter[str] = Counter()
    opened_at: list[float] = []
    started = time.monotonic()
    for _ in range(int(config["count"])):
        try:
            opened.append(await asyncio.open_connection(*address, local_addr=(config["source"], 0)))
        except OSError:
            outcomes["connect failed"] += 1
        else:
            opened_at.append(time.monotonic())
    # Which ones did the node close at once (refused), which only at its
    # handshake timeout? Each is timed from its own connect; "at once" is
    # under half the timeout (a loaded machine is slow, not that slow).
    at_once_s = float(config["handshake_timeout_s"]) / 2

    async def fate(reader: asyncio.StreamReader) -> float | None:
        try:
            await asyncio.wait_for(reader.read(), float(config["hold_s"]))
        except TimeoutError:
            return None
        except OSError:
            pass
        return time.monotonic()

    fates = await asyncio.gather(*(fate(r) for r, _ in opened))
    for (_, writer), connected, closed in zip(opened, opened_at, fates, strict=True):
        if closed is None:
            outcomes["still open at the end"] += 1
        elif closed - connected < at_once_s:
            outcomes["closed at once"] += 1
        else:
            outcomes["closed after waiting"] += 1
        writer.close()
    return {"attempts": int(config["count"]), "answers": dict(outcomes), "seconds": round(time.monotonic() - started, 3)}


async def replay_forge(config: dict[str, Any]) -> dict[str, Any]:
    endpoints = [_address(e) for e in config["endpoints"]]
    tls = TlsConfig(Path(config["ca"]), Path(config["cert"]), Path(config["key"]))
    cluster = bytes.fromhex(config["cluster"])
    outcomes: Counter[str] = Counter()
    session = await _leader_session(endpoints, tls, config["source"], DESCRIBE)
    mine = secrets.token_bytes(32)
    commands = [bytes.fromhex(c) for c in config["replay"]]
    forged = secrets.token_bytes(32)
    commands += [
        encode_registry_command(make_announcement(cluster, 1, KIND_SIGNING, public_key_of(forged), 1, mine, forged)),
        encode_registry_command(make_revocation(cluster, 2, 1, "forged", mine)),
        encode_registry_command(Approve(1, secrets.token_bytes(32), secrets.token_bytes(64))),
        secrets.token_bytes(48),
    ]
    for data in commands:
        session.send_op(Extension(MACHINE_NAME, data))
    for answer in await session.answers(len(commands)):
        outcomes[_reason(answer)] += 1
    session.close()
    attempts = len(commands)
    # Wire-level forgeries: a peer Hello under another name, garbage, an oversize frame.
    wire: Counter[str] = Counter()
    context = _client_context(tls)
    for kind in ("impersonate n1", "garbage frame", "oversize frame"):
        attempts += 1
        try:
            reader, writer = await asyncio.open_connection(*endpoints[1], ssl=context, server_hostname="n2", local_addr=(config["source"], 0))
        except (OSError, ssl.SSLError):
            wire[f"{kind}: refused at handshake"] += 1
            continue
        if kind == "impersonate n1":
            writer.write(encode_frame(CODEC.encode(NodeId(1), Hello(1, ROLE_PEER))))
        else:
            writer.write(encode_frame(CODEC.encode(NodeId(7 << 40), Hello(7 << 40, ROLE_CLIENT))))
            writer.write(encode_frame(secrets.token_bytes(64)) if kind == "garbage frame" else (1 << 30).to_bytes(4, "big"))
        fate = await _fate(reader)
        wire[f"{kind}: closed by the node" if fate == "closed" else f"{kind}: {fate}"] += 1
        writer.close()
    return {"attempts": attempts, "answers": {**dict(outcomes), **dict(wire)}}


async def forged_votes(config: dict[str, Any]) -> dict[str, Any]:
    endpoints = [_address(e) for e in config["endpoints"]]
    tls = TlsConfig(Path(config["ca"]), Path(config["cert"]), Path(config["key"]))
    proposal = config["proposal"]
    tally_key = bytes.fromhex(config["tally_key"])
    insider = bytes.fromhex(config["insider_seed"])
    from nacl.signing import SigningKey

    voter = bytes(SigningKey(insider).verify_key)
    honest = [
        Ballot(proposal, *(bytes.fromhex(b[k]) for k in ("voter", "commitment", "proof", "sealed_opening", "signature")))
        for b in config["honest"]
    ]

    def signed(commitment: bytes, proof: bytes, sealed: bytes) -> Ballot:
        signature = SigningKey(insider).sign(ballot_signing_bytes(proposal, voter, commitment, proof, sealed)).signature
        return Ballot(proposal, voter, commitment, proof, sealed, bytes(signature))

    genuine = cast_ballot(proposal, 1, insider, tally_key)
    context = ballot_context(proposal, voter)
    blinding = random_scalar(secrets.token_bytes)
    two = commit(2, blinding)
    proof_for_one = prove_bit(1, blinding, context)  # a proof for a commitment to 1, attached to 2
    forgeries = [
        cast_ballot(proposal, 1, secrets.token_bytes(32), tally_key),  # a stranger
        honest[0],  # replayed
        Ballot(proposal, honest[1].voter, genuine.commitment, genuine.proof, genuine.sealed_opening, honest[1].signature),
        signed(two, proof_for_one, genuine.sealed_opening),  # a vote of 2
        signed(b"\xff" * 32, genuine.proof, genuine.sealed_opening),  # off the curve
        signed(genuine.commitment, genuine.proof[:64], genuine.sealed_opening),  # truncated proof
    ]
    read = Extension(VOTES, encode_vote_command(VoteCommand(ReadProposal(proposal))))
    session = await _leader_session(endpoints, tls, config["source"], read)
    outcomes: Counter[str] = Counter()
    for ballot in forgeries:
        session.send_op(Extension(VOTES, encode_vote_command(VoteCommand(CastBallot(*(
            ballot.proposal_id, ballot.voter, ballot.commitment, ballot.proof, ballot.sealed_opening, ballot.signature
        ))))))
    for answer in await session.answers(len(forgeries)):
        outcomes[_reason(answer)] += 1
    session.close()
    return {"attempts": len(forgeries), "answers": dict(outcomes)}


async def old_tls(config: dict[str, Any]) -> dict[str, Any]:
    address = _address(config["target"])
    tls = TlsConfig(Path(config["ca"]), Path(config["cert"]), Path(config["key"]))
    outcomes: Counter[str] = Counter()
    versions = {"TLS 1.2": ssl.TLSVersion.TLSv1_2, "TLS 1.1": ssl.TLSVersion.TLSv1_1, "TLS 1.0": ssl.TLSVersion.TLSv1}
    for name, version in versions.items():
        try:
            context = _client_context(tls, version)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*address, ssl=context, server_hostname="n1", local_addr=(config["source"], 0)), 10
            )
        except (OSError, ssl.SSLError, TimeoutError, ValueError):
            outcomes[f"{name}: handshake refused"] += 1
            continue
        outcomes[f"{name}: handshake completed"] += 1
        writer.close()
    try:
        reader, writer = await asyncio.open_connection(*address, local_addr=(config["source"], 0))
    except OSError:
        outcomes["plain TCP: refused at connect"] += 1
    else:
        writer.write(encode_frame(CODEC.encode(NodeId(9 << 40), Hello(9 << 40, ROLE_CLIENT))))
        fate = await _fate(reader)
        outcomes["plain TCP: closed by the node" if fate == "closed" else f"plain TCP: {fate}"] += 1
        writer.close()
    return {"attempts": len(versions) + 1, "answers": dict(outcomes)}


async def revoked(config: dict[str, Any]) -> dict[str, Any]:
    """Listen as the revoked node; count the dials and whether anyone listens."""
    tls = TlsConfig(Path(config["ca"]), Path(config["node_cert"]), Path(config["node_key"]))
    node = int(config["node"])
    outcomes: Counter[str] = Counter()
    server_context = tls.server_context()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        outcomes["dials from honest nodes"] += 1
        writer.write(encode_frame(CODEC.encode(NodeId(node), Hello(node, ROLE_PEER))))
        for _ in range(20):  # it speaks as the revoked node
            writer.write(encode_frame(CODEC.encode(NodeId(node), Hello(node, ROLE_PEER))))
        fate = await _fate(reader)
        # The dialer's own Hello may come before its close: closed all the same.
        outcomes["left open" if fate == "left open" else "closed by the honest node"] += 1
        writer.close()

    host, port = _address(config["listen"])
    server = await asyncio.start_server(accepted, host, port, ssl=server_context)
    await asyncio.sleep(float(config["hold_s"]))
    server.close()
    # And as a client: commands signed with the revoked key.
    endpoints = [_address(e) for e in config["endpoints"]]
    client_tls = TlsConfig(Path(config["ca"]), Path(config["node_cert"]), Path(config["node_key"]))
    session = await _leader_session(endpoints, client_tls, config["source"], DESCRIBE)
    cluster = bytes.fromhex(config["cluster"])
    seed = bytes.fromhex(config["seed"])
    fresh = secrets.token_bytes(32)
    commands: list[RegistryCommand] = [
        make_revocation(cluster, 1, node, "revenge", seed),
        make_announcement(cluster, node, KIND_SIGNING, public_key_of(fresh), 99, seed, fresh),
    ]
    for command in commands:
        session.send_op(Extension(MACHINE_NAME, encode_registry_command(command)))
    for answer in await session.answers(len(commands)):
        outcomes[_reason(answer)] += 1
    session.close()
    return {"attempts": outcomes["dials from honest nodes"] + len(commands), "answers": dict(outcomes)}


SCENARIOS = {
    "sybil": sybil,
    "eclipse": eclipse,
    "flood": flood,
    "replay_forge": replay_forge,
    "forged_votes": forged_votes,
    "old_tls": old_tls,
    "revoked": revoked,
}


def main() -> None:
    config = json.loads(sys.argv[1])
    result = asyncio.run(SCENARIOS[config["scenario"]](config))
    print(json.dumps({"scenario": config["scenario"], **result}, sort_keys=True))


if __name__ == "__main__":
    main()
