"""Distributed key generation carried by a group's log (``quorate.crypto.dkg``
on real nodes).

Theory of operation. ``DkgParticipant`` assumes a broadcast channel on which
every participant sees the same messages in the same order, and an agreed
point at which a phase ends early. Group 0's log is that channel. The
``DkgMachine`` (extension machine ``"dkg"``) keeps, per session, a
*transcript*: the session's start and the participants' messages, in log
order, each accepted only if signed by the sender's current key in the key
registry (``quorate.security.keyregistry``), so nobody speaks for another
node. The machine checks signatures and bounds; it never sees a secret.

Every node applies the same transcript and feeds it, entry by entry, to its
own ``DkgParticipant`` (``LogDkg``, run by the node after each applied
batch): the start creates the participant (this node's X25519 key is the
Montgomery form of its Ed25519 signing key, as recorded at the start), a
posted message is ``step``-ped, and a ``close`` entry for the phase the
participant is in calls ``close_phase()``. What the participant wants to
broadcast, the node signs and proposes as a ``PostDkg`` command (again
until the transcript holds it). Every honest node therefore computes the
same qualified set and the same group key, and only its own share.

Phases end by themselves when every expected message is in. A node whose
participant has waited ``phase_timeout_s`` in one phase proposes
``CloseDkgPhase`` naming that phase; the first one committed closes it
everywhere (a close naming a phase already over is ignored by every
participant alike), so a silent dealer cannot stall the run.

Resharing (``StartDkg.reshare`` names a finished session, and carries its
public key): the old members deal their old shares to the new members and
the new threshold, so the group key stays (``quorate.crypto.dkg``). An old
member takes its old share from its own result of that session, after
checking that the start names the same key.

A node's dealing polynomial is drawn from a stream keyed by its signing
seed and the session (``dealing_random``): re-applying the log after a
restart deals the same polynomial again, so a restarted node never
equivocates by accident.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import nacl.signing

from quorate.core.machine import MachineResult
from quorate.crypto.dkg import (
    DkgConfig,
    DkgMessage,
    DkgParticipant,
    DkgResult,
    Resharing,
)
from quorate.crypto.ed25519 import signed_by_any
from quorate.crypto.threshold import ThresholdPublicKey
from quorate.errors import ConfigError
from quorate.ids import NodeId

MACHINE_NAME = "dkg"
MAX_SESSIONS = 16
"""Sessions the machine holds at once (the oldest finished ones are dropped first)."""
MAX_SESSION_NAME_BYTES = 64
MAX_MESSAGE_BYTES = 256 * 1024
"""A dealing holds t commitments and n ciphertexts: well under this for n ≤ 100."""
MAX_TRANSCRIPT_ENTRIES = 4096
_SIGNING_DOMAIN = b"quorate/dkg-log/v1"


class StartDkg(msgspec.Struct, tag="dkg.Start", array_like=True, frozen=True):
    """Open a session: ``members`` get shares of a ``threshold``-of-n key.
    Signed by ``starter``, a member of the cluster. With ``reshare`` (a
    finished session) the old members deal their old shares instead, so the
    key stays: ``old_commitments`` is that session's public key (its
    participants check it; a wrong one fails every dealing)."""

    session: str
    members: tuple[int, ...]
    threshold: int
    starter: int
    signature: bytes
    reshare: str = ""
    old_commitments: tuple[bytes, ...] = ()


class PostDkg(msgspec.Struct, tag="dkg.Post", array_like=True, frozen=True):
    """One participant's DKG message (``quorate.crypto.dkg``'s wire encoding), signed by it."""

    session: str
    sender: int
    message: bytes
    signature: bytes


class CloseDkgPhase(msgspec.Struct, tag="dkg.Close", array_like=True, frozen=True):
    """End ``phase`` of ``session`` now (a participant's timeout), signed by ``sender``."""

    session: str
    phase: str
    sender: int
    signature: bytes


DkgCommand = StartDkg | PostDkg | CloseDkgPhase
_command_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(DkgCommand)
_message_decoder = msgspec.msgpack.Decoder(DkgMessage)


def encode_dkg_command(command: DkgCommand) -> bytes:
    return _command_encoder.encode(command)


def decode_dkg_command(data: bytes) -> DkgCommand:
    command: DkgCommand = _command_decoder.decode(data)
    return command


def encode_dkg_message(message: DkgMessage) -> bytes:
    return _command_encoder.encode(message)


def decode_dkg_message(data: bytes) -> DkgMessage:
    message: DkgMessage = _message_decoder.decode(data)
    return message


def _signed_bytes(cluster: bytes, kind: bytes, *parts: bytes) -> bytes:
    out = bytearray(_SIGNING_DOMAIN + cluster + kind)
    for part in parts:
        out += len(part).to_bytes(4, "big") + part
    return bytes(out)


def start_bytes(
    cluster: bytes, session: str, members: tuple[int, ...], threshold: int,
    reshare: str = "", old_commitments: tuple[bytes, ...] = (),
) -> bytes:
    return _signed_bytes(
        cluster, b"start", session.encode(), json.dumps([list(members), threshold, reshare]).encode(), *old_commitments
    )


def post_bytes(cluster: bytes, session: str, sender: int, message: bytes) -> bytes:
    return _signed_bytes(cluster, b"post", session.encode(), sender.to_bytes(8, "big"), message)


def close_bytes(cluster: bytes, session: str, phase: str, sender: int) -> bytes:
    return _signed_bytes(cluster, b"close", session.encode(), phase.encode(), sender.to_bytes(8, "big"))


def _sign(seed: bytes, message: bytes) -> bytes:
    return bytes(nacl.signing.SigningKey(seed).sign(message).signature)


def make_start(
    cluster: bytes, session: str, members: tuple[int, ...], threshold: int, starter: int, seed: bytes,
    reshare: str = "", old_commitments: tuple[bytes, ...] = (),
) -> StartDkg:
    members = tuple(sorted(members))
    signature = _sign(seed, start_bytes(cluster, session, members, threshold, reshare, old_commitments))
    return StartDkg(session, members, threshold, starter, signature, reshare, old_commitments)


def make_post(cluster: bytes, session: str, sender: int, message: DkgMessage, seed: bytes) -> PostDkg:
    data = encode_dkg_message(message)
    return PostDkg(session, sender, data, _sign(seed, post_bytes(cluster, session, sender, data)))


def make_close(cluster: bytes, session: str, phase: str, sender: int, seed: bytes) -> CloseDkgPhase:
    return CloseDkgPhase(session, phase, sender, _sign(seed, close_bytes(cluster, session, phase, sender)))


class SigningKeys(Protocol):
    """What the machine asks of the key registry."""

    @property
    def cluster(self) -> bytes: ...

    def valid_keys(self, node: NodeId | int, kind: str = ...) -> tuple[bytes, ...]: ...

    def newest_key(self, node: NodeId | int, kind: str = ...) -> bytes | None: ...

    def members(self) -> list[NodeId]: ...


@dataclass
class DkgSession:
    """One session's public record: who, the threshold, the X25519 keys
    recorded at the start (of every participant: the members and, when
    resharing, the old members), and the transcript."""

    members: tuple[int, ...]
    threshold: int
    encryption_keys: dict[int, bytes]
    reshare: str = ""
    old_members: tuple[int, ...] = ()
    old_commitments: tuple[bytes, ...] = ()
    transcript: list[tuple[str, int, bytes]] = field(default_factory=list)
    """("post", sender, message) or ("close", sender, phase name)."""
    posts: set[bytes] = field(default_factory=set)
    """Digests of the posts already in the transcript (a repeat is refused)."""


def curve25519_public(ed25519_public: bytes) -> bytes:
    return bytes(nacl.signing.VerifyKey(ed25519_public).to_curve25519_public_key())


def curve25519_secret(ed25519_seed: bytes) -> bytes:
    return bytes(nacl.signing.SigningKey(ed25519_seed).to_curve25519_private_key())


class DkgMachine:
    """The replicated record of DKG sessions (see the module docstring)."""

    def __init__(self, registry: SigningKeys) -> None:
        self.registry = registry
        self.sessions: dict[str, DkgSession] = {}
        self.refused: dict[str, int] = {}
        self._entries: list[tuple[str, tuple[str, int, bytes] | None]] = []
        """(session, transcript entry or None for the start) since the last take."""

    def take_entries(self) -> list[tuple[str, tuple[str, int, bytes] | None]]:
        entries, self._entries = self._entries, []
        return entries

    def _refuse(self, reason: str) -> MachineResult:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return MachineResult(False, error=reason)

    def _signed_by(self, node: int, message: bytes, signature: bytes) -> bool:
        return signed_by_any(self.registry.valid_keys(node), message, signature)

    def apply(self, index: int, now_s: float, data: bytes) -> MachineResult:
        try:
            command = decode_dkg_command(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._refuse("malformed DKG command")
        cluster = self.registry.cluster
        if isinstance(command, StartDkg):
            return self._start(cluster, command)
        session = self.sessions.get(command.session)
        if session is None:
            return self._refuse("no such DKG session")
        if command.sender not in session.encryption_keys:
            return self._refuse("sender is not a participant of the session")
        if len(session.transcript) >= MAX_TRANSCRIPT_ENTRIES:
            return self._refuse("the session's transcript is full")
        if isinstance(command, PostDkg):
            if len(command.message) > MAX_MESSAGE_BYTES:
                return self._refuse("DKG message too large")
            if not self._signed_by(command.sender, post_bytes(cluster, command.session, command.sender, command.message), command.signature):
                return self._refuse("DKG message not signed by the sender's current key")
            digest = hashlib.sha256(command.sender.to_bytes(8, "big") + command.message).digest()
            if digest in session.posts:
                return MachineResult(True, value="already posted")
            session.posts.add(digest)
            entry = ("post", command.sender, command.message)
        else:
            if not self._signed_by(command.sender, close_bytes(cluster, command.session, command.phase, command.sender), command.signature):
                return self._refuse("phase close not signed by the sender's current key")
            entry = ("close", command.sender, command.phase.encode())
        session.transcript.append(entry)
        self._entries.append((command.session, entry))
        return MachineResult(True, value=str(len(session.transcript)))

    def _start(self, cluster: bytes, op: StartDkg) -> MachineResult:
        if not op.session or len(op.session.encode()) > MAX_SESSION_NAME_BYTES:
            return self._refuse("bad DKG session name")
        if op.session in self.sessions:
            return self._refuse("DKG session already exists")
        members = [int(m) for m in self.registry.members()]
        if op.starter not in members:
            return self._refuse("the starter is not a member")
        if not op.members or len(set(op.members)) != len(op.members) or any(m not in members for m in op.members):
            return self._refuse("DKG members must be distinct current members")
        if not 1 <= op.threshold <= len(op.members):
            return self._refuse("DKG threshold must be between 1 and the member count")
        if not self._signed_by(
            op.starter, start_bytes(cluster, op.session, op.members, op.threshold, op.reshare, op.old_commitments), op.signature
        ):
            return self._refuse("DKG start not signed by the starter's current key")
        if len(self.sessions) >= MAX_SESSIONS:
            return self._refuse("too many DKG sessions")
        old_members: tuple[int, ...] = ()
        if op.reshare:
            old = self.sessions.get(op.reshare)
            if old is None:
                return self._refuse("no such DKG session to reshare")
            if len(op.old_commitments) != old.threshold:
                return self._refuse("the old key needs one commitment per unit of the old threshold")
            old_members = old.members
        keys = {}
        for m in sorted(set(op.members) | set(old_members)):
            newest = self.registry.newest_key(m)
            if newest is None:
                return self._refuse("a DKG member has no signing key")
            keys[m] = curve25519_public(newest)
        self.sessions[op.session] = DkgSession(
            tuple(sorted(op.members)), op.threshold, keys, op.reshare, old_members, op.old_commitments
        )
        self._entries.append((op.session, None))
        return MachineResult(True, value=op.session)

    def describe(self) -> dict[str, object]:
        return {
            name: {"members": list(s.members), "threshold": s.threshold, "transcript": len(s.transcript)}
            for name, s in self.sessions.items()
        }

    def snapshot(self) -> bytes | None:
        if not self.sessions and not self.refused:
            return None
        return msgspec.msgpack.encode(
            {
                "sessions": {
                    name: [list(s.members), s.threshold, {str(k): v for k, v in s.encryption_keys.items()},
                           [[kind, sender, data] for kind, sender, data in s.transcript],
                           s.reshare, list(s.old_members), list(s.old_commitments)]
                    for name, s in self.sessions.items()
                },
                "refused": self.refused,
            }
        )

    def restore(self, data: bytes | None) -> None:
        self.sessions = {}
        self.refused = {}
        self._entries = []
        if data is None:
            return
        raw = msgspec.msgpack.decode(data)
        for name, (members, threshold, keys, transcript, reshare, old_members, old_commitments) in raw["sessions"].items():
            session = DkgSession(
                tuple(members), threshold, {int(k): bytes(v) for k, v in keys.items()},
                reshare, tuple(old_members), tuple(bytes(c) for c in old_commitments),
            )
            for kind, sender, payload in transcript:
                session.transcript.append((kind, sender, bytes(payload)))
                if kind == "post":
                    session.posts.add(hashlib.sha256(int(sender).to_bytes(8, "big") + bytes(payload)).digest())
            self.sessions[name] = session
        self.refused = dict(raw["refused"])


def dealing_random(seed: bytes, session: str) -> Callable[[int], bytes]:
    """A byte stream keyed by the node's secret seed and the session: the
    same dealing after a restart, unpredictable to anyone else."""
    counter = 0
    buffer = b""

    def draw(size: int) -> bytes:
        nonlocal counter, buffer
        while len(buffer) < size:
            buffer += hmac.new(seed, _SIGNING_DOMAIN + b"deal" + session.encode() + counter.to_bytes(8, "big"), hashlib.sha512).digest()
            counter += 1
        out, buffer = buffer[:size], buffer[size:]
        return out

    return draw


@dataclass
class LocalRun:
    """This node's participant in one session and what it has done."""

    participant: DkgParticipant
    fed: int = 0
    outgoing: list[DkgMessage] = field(default_factory=list)


class LogDkg:
    """A node's side: feed the transcript to its participants, collect what
    they broadcast and their results (see the module docstring)."""

    def __init__(self, node: NodeId, machine: DkgMachine, seed: Callable[[], bytes]) -> None:
        self.node = node
        self.machine = machine
        self.seed = seed
        self.runs: dict[str, LocalRun] = {}
        self.results: dict[str, DkgResult] = {}
        self.failures: dict[str, str] = {}
        self.problems: list[str] = []
        self.factory: Callable[..., DkgParticipant] = DkgParticipant
        """What makes a participant (a test substitutes a cheating one)."""

    def rebuild(self) -> None:
        """The machine was restored from a snapshot: replay every transcript."""
        self.machine.take_entries()
        self.runs.clear()
        self.results.clear()
        self.failures.clear()
        for name, session in self.machine.sessions.items():
            self._open(name, session)
            for entry in session.transcript:
                self._feed(name, entry)

    def consume(self) -> None:
        """Feed what the machine appended since the last call."""
        for name, entry in self.machine.take_entries():
            session = self.machine.sessions.get(name)
            if session is None:
                continue
            if entry is None:
                self._open(name, session)
            else:
                self._feed(name, entry)

    def _open(self, name: str, session: DkgSession) -> None:
        me = int(self.node)
        if me not in session.encryption_keys:
            return
        seed = self.seed()
        resharing = None
        old_share = None
        try:
            if session.reshare:
                old_key = ThresholdPublicKey(len(session.old_commitments), len(session.old_members), session.old_commitments)
                resharing = Resharing(tuple(NodeId(m) for m in session.old_members), old_key)
                previous = self.results.get(session.reshare)
                if me in session.old_members:
                    if previous is None or previous.share is None:
                        raise ConfigError(f"no share of {session.reshare} to reshare")
                    if previous.group_public_key != old_key.group_public_key:
                        raise ConfigError(f"the start names another key than {session.reshare}'s")
                    old_share = previous.share
            config = DkgConfig(
                name.encode(), tuple(NodeId(m) for m in session.members), session.threshold,
                {NodeId(m): k for m, k in session.encryption_keys.items()}, resharing,
            )
            participant = self.factory(config, self.node, curve25519_secret(seed), dealing_random(seed, name), old_share)
        except ConfigError as exc:
            self.problems.append(f"{name}: {exc}")
            return
        run = LocalRun(participant)
        self.runs[name] = run
        participant.start()
        self._collect(name, run)

    def _feed(self, name: str, entry: tuple[str, int, bytes]) -> None:
        run = self.runs.get(name)
        if run is None or name in self.results or name in self.failures:
            return
        kind, sender, payload = entry
        if kind == "post":
            try:
                message = decode_dkg_message(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.problems.append(f"{name}: an undecodable message from node {sender}")
                return
            run.participant.step(NodeId(sender), message)
        elif payload.decode() == run.participant.phase.value:
            run.participant.close_phase()
        self._collect(name, run)

    def _collect(self, name: str, run: LocalRun) -> None:
        ready = run.participant.ready()
        run.outgoing.extend(ready.broadcasts)
        if ready.result is not None:
            self.results[name] = ready.result
        if ready.failure is not None:
            self.failures[name] = ready.failure

    def take_outgoing(self) -> list[tuple[str, DkgMessage]]:
        out: list[tuple[str, DkgMessage]] = []
        for name, run in self.runs.items():
            out.extend((name, m) for m in run.outgoing)
            run.outgoing = []
        return out

    def waiting(self) -> dict[str, str]:
        """Session -> the phase this node's participant is in, for runs not over."""
        return {
            name: run.participant.phase.value
            for name, run in self.runs.items()
            if name not in self.results and name not in self.failures
        }
