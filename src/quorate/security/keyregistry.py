"""The key registry: which keys speak for which node, decided through the log.

Theory of operation. Every replica applies the same committed registry
commands in the same order (``apply``; a ``quorate.core.machine``
``ReplicatedMachine`` riding in the key-value store's log), so every replica
holds the same answer to "may this key sign for n3 now?", and a change takes
effect at one log index everywhere. The machine is deterministic: no clock
(log time ``now_s`` comes with each command), no randomness, refusals instead
of exceptions.

What it holds, per node and per *kind* of key:

- ``signing``: Ed25519 public keys. The *genesis* keys come from the cluster's
  ``public-keys.toml`` (identical on every node: it is the registry's
  starting point and must never be edited once the cluster runs).
- ``tls``: SHA-256 fingerprints of the node's TLS certificate (DER). The
  genesis value is ``ANY_CA_CERTIFICATE``: any certificate the cluster CA
  issued for the node's name. A rotation pins a fingerprint.

Rotation (``AnnounceKey``). The node announces its new key, signed by its
newest signing key, with a serial number one above its last announcement
(a replayed or reordered announcement is refused) and, for a signing key, a
Schnorr proof that it holds the new secret (``quorate.crypto.zk``; nobody can
register a key it does not own). The announcement is *pending* until
⌊n/2⌋ + 1 members approve it (``Approve``, each signed by the approver's
newest key; n counts the members at the time of each approval). At the
approval that completes the quorum, the new key is *activated*: from that
index both keys verify (the *overlap*), so messages signed a moment earlier
with the old key still count while the node switches. The overlap ends at
``RetireKey`` (signed by the node's new key) or, at the latest, at the first
command whose log time is ``max_overlap_s`` past the activation; from that
index the old key verifies nothing.

Revocation (``Revoke``). A member proposes it (its signature counts as its
approval); at the approval that makes ⌊n/2⌋ + 1 members other than the
target, the node is revoked at that index: none of its keys verifies, its
commands are refused, it stops counting in n, and the runtime closes its
connections and drops its messages from that index on (every replica at the
same index).

Admission (``RequestAdmission``; Sybil resistance). A node that is not a
member asks to join with its signing key and a proof that it holds it. No
node admits itself: ⌊n/2⌋ + 1 members must approve. Each approver may
approve at most ``admissions_per_approver`` admissions per
``approver_window_s`` of log time, and at most ``max_pending`` items wait at
once (a flood of requests cannot grow every replica's state). An admitted
node's reputation starts low (``quorate.security.reputation``).

Pending items expire ``pending_ttl_s`` of log time after they opened. Every
refusal is counted by reason (``refused``) — the same counts on every replica.
``take_events`` hands the runtime what changed (activations, retirements,
revocations, admissions, items waiting for approval) so it can act locally:
swap its own signer, approve, close a revoked node's connections.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec
import nacl.exceptions
import nacl.signing

from quorate.core.machine import MachineResult
from quorate.crypto.zk import prove_ed25519_key, verify_ed25519_key
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name

FORMAT_VERSION = 1
KIND_SIGNING = "signing"
KIND_TLS = "tls"
KINDS = (KIND_SIGNING, KIND_TLS)
KEY_SIZE_BYTES = 32
"""An Ed25519 public key and a SHA-256 certificate fingerprint are both 32 bytes."""
SIGNATURE_SIZE_BYTES = 64
ANY_CA_CERTIFICATE = b""
"""The genesis ``tls`` key: any certificate of the cluster CA naming the node."""
MACHINE_NAME = "keys"
"""The name the registry is registered under in the key-value store."""
MAX_REASON_CHARS = 200

DEFAULT_MAX_OVERLAP_S = 600.0
DEFAULT_PENDING_TTL_S = 600.0
DEFAULT_MAX_PENDING = 256
DEFAULT_ADMISSIONS_PER_APPROVER = 8
DEFAULT_APPROVER_WINDOW_S = 60.0

_DOMAIN_ANNOUNCE = b"quorate/keys/announce/v1"
_DOMAIN_APPROVE = b"quorate/keys/approve/v1"
_DOMAIN_RETIRE = b"quorate/keys/retire/v1"
_DOMAIN_REVOKE = b"quorate/keys/revoke/v1"
_DOMAIN_ADMIT = b"quorate/keys/admit/v1"
_DOMAIN_KEY_PROOF = b"quorate/keys/key-proof/v1"
_DOMAIN_CLUSTER = b"quorate/keys/cluster/v1"


# -- commands -------------------------------------------------------------------------
class AnnounceKey(msgspec.Struct, tag="keys.announce", array_like=True, frozen=True):
    """``node``'s new key of ``kind``; ``signature`` by its newest signing key."""

    node: int
    kind: str
    key: bytes
    serial: int
    proof: bytes
    signature: bytes


class Approve(msgspec.Struct, tag="keys.approve", array_like=True, frozen=True):
    """``approver`` approves the pending item ``subject`` (its digest)."""

    approver: int
    subject: bytes
    signature: bytes


class RetireKey(msgspec.Struct, tag="keys.retire", array_like=True, frozen=True):
    """``node`` ends the overlap of its older ``key`` of ``kind`` (signed by its newest signing key)."""

    node: int
    kind: str
    key: bytes
    signature: bytes


class Revoke(msgspec.Struct, tag="keys.revoke", array_like=True, frozen=True):
    """``proposer`` asks that ``node`` be revoked; its signature is its approval."""

    node: int
    proposer: int
    reason: str
    signature: bytes


class RequestAdmission(msgspec.Struct, tag="keys.admit", array_like=True, frozen=True):
    """A node asks to join with signing ``key``; ``proof`` shows it holds the secret."""

    node: int
    key: bytes
    proof: bytes


class Describe(msgspec.Struct, tag="keys.describe", array_like=True, frozen=True):
    """Answer the registry's state as JSON (changes nothing)."""


RegistryCommand = AnnounceKey | Approve | RetireKey | Revoke | RequestAdmission | Describe

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RegistryCommand)


def encode_registry_command(command: RegistryCommand) -> bytes:
    return _encoder.encode(command)


def decode_registry_command(data: bytes) -> RegistryCommand:
    """Raises ``msgspec.DecodeError``/``ValidationError`` on bad bytes."""
    command: RegistryCommand = _decoder.decode(data)
    return command


# -- events (local, for the runtime; not state) -------------------------------------------
@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """What changed at ``index``: ``what`` is one of ``activated``, ``retired``,
    ``revoked``, ``admitted``, ``pending`` (an item waits for approvals)."""

    what: str
    index: int
    node: NodeId
    kind: str = ""
    key: bytes = b""
    subject: bytes = b""
    item: str = ""
    """For ``pending``: ``rotate``, ``revoke`` or ``admit``."""


# -- signing bytes (what each party signs; the CLI and the runtime build them) ----------
def _frame(*parts: bytes) -> bytes:
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def cluster_id(genesis: Mapping[NodeId, bytes]) -> bytes:
    """The cluster's identity: a digest of its genesis keys. Everything signed
    for the registry is bound to it, so nothing replays into another cluster."""
    parts = [_DOMAIN_CLUSTER] + [int(n).to_bytes(8, "big") + genesis[n] for n in sorted(genesis)]
    return hashlib.sha256(_frame(*parts)).digest()


def announce_bytes(cluster: bytes, node: int, kind: str, key: bytes, serial: int, proof: bytes) -> bytes:
    return _frame(_DOMAIN_ANNOUNCE, cluster, node.to_bytes(8, "big"), kind.encode(), key, serial.to_bytes(8, "big"), proof)


def key_proof_context(cluster: bytes, node: int, serial: int) -> bytes:
    """What a new signing key's proof of possession is bound to."""
    return _frame(_DOMAIN_KEY_PROOF, cluster, node.to_bytes(8, "big"), serial.to_bytes(8, "big"))


def approve_bytes(cluster: bytes, subject: bytes) -> bytes:
    return _frame(_DOMAIN_APPROVE, cluster, subject)


def retire_bytes(cluster: bytes, node: int, kind: str, key: bytes) -> bytes:
    return _frame(_DOMAIN_RETIRE, cluster, node.to_bytes(8, "big"), kind.encode(), key)


def revoke_bytes(cluster: bytes, node: int, proposer: int, reason: str) -> bytes:
    return _frame(_DOMAIN_REVOKE, cluster, node.to_bytes(8, "big"), proposer.to_bytes(8, "big"), reason.encode())


def admission_context(cluster: bytes, node: int) -> bytes:
    return _frame(_DOMAIN_ADMIT, cluster, node.to_bytes(8, "big"))


def subject_of(command: AnnounceKey | Revoke | RequestAdmission) -> bytes:
    """The digest approvals name: of the command's encoding, so two different
    announcements never share approvals."""
    return hashlib.sha256(encode_registry_command(command)).digest()


def _sign(seed: bytes, message: bytes) -> bytes:
    return bytes(nacl.signing.SigningKey(seed).sign(message).signature)


def public_key_of(seed: bytes) -> bytes:
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def make_announcement(
    cluster: bytes, node: int, kind: str, key: bytes, serial: int, signing_seed: bytes, new_seed: bytes | None = None
) -> AnnounceKey:
    """An announcement of ``key`` signed with ``signing_seed`` (the node's
    current key); for a signing key, ``new_seed`` proves possession."""
    proof = b""
    if kind == KIND_SIGNING:
        if new_seed is None or public_key_of(new_seed) != key:
            raise ConfigError("a new signing key is announced with its own seed (the proof of possession)")
        proof = prove_ed25519_key(new_seed, key_proof_context(cluster, node, serial))
    return AnnounceKey(node, kind, key, serial, proof, _sign(signing_seed, announce_bytes(cluster, node, kind, key, serial, proof)))


def make_approval(cluster: bytes, approver: int, subject: bytes, seed: bytes) -> Approve:
    return Approve(approver, subject, _sign(seed, approve_bytes(cluster, subject)))


def make_retirement(cluster: bytes, node: int, kind: str, key: bytes, seed: bytes) -> RetireKey:
    return RetireKey(node, kind, key, _sign(seed, retire_bytes(cluster, node, kind, key)))


def make_revocation(cluster: bytes, node: int, proposer: int, reason: str, seed: bytes) -> Revoke:
    return Revoke(node, proposer, reason, _sign(seed, revoke_bytes(cluster, node, proposer, reason)))


def make_admission_request(cluster: bytes, node: int, seed: bytes) -> RequestAdmission:
    return RequestAdmission(node, public_key_of(seed), prove_ed25519_key(seed, admission_context(cluster, node)))


# -- the state ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RegistryPolicy:
    """Settings every replica of one cluster must share (they decide outcomes)."""

    max_overlap_s: float = DEFAULT_MAX_OVERLAP_S
    """Log seconds after a key's activation at which the older key retires at the latest (the node normally retires it sooner)."""
    pending_ttl_s: float = DEFAULT_PENDING_TTL_S
    """Log seconds a rotation, revocation or admission waits for approvals before it lapses."""
    max_pending: int = DEFAULT_MAX_PENDING
    """Items waiting for approval at once; more are refused (a flood of join requests cannot grow every replica's state)."""
    admissions_per_approver: int = DEFAULT_ADMISSIONS_PER_APPROVER
    """Admissions one member may approve per approver_window_s of log time."""
    approver_window_s: float = DEFAULT_APPROVER_WINDOW_S
    """The window of admissions_per_approver, in log seconds."""

    def validate(self) -> RegistryPolicy:
        if not self.max_overlap_s > 0 or not self.pending_ttl_s > 0 or not self.approver_window_s > 0:
            raise ConfigError("max_overlap_s, pending_ttl_s and approver_window_s must be > 0 seconds")
        if self.max_pending < 1 or self.admissions_per_approver < 1:
            raise ConfigError("max_pending and admissions_per_approver must be >= 1")
        return self


@dataclass(slots=True)
class KeyRecord:
    """One key of a node: valid from ``activated`` (log index) until ``retired``."""

    key: bytes
    activated: int
    activated_s: float
    retired: int | None = None


@dataclass(slots=True)
class NodeKeys:
    """One node's keys by kind (newest last), its announcement serial, and
    when it was admitted (0: genesis) or revoked."""

    keys: dict[str, list[KeyRecord]]
    serial: int = 0
    admitted: int = 0
    revoked: int | None = None


@dataclass(slots=True)
class Pending:
    """An item waiting for ⌊n/2⌋ + 1 approvals."""

    item: str  # rotate | revoke | admit
    node: int
    opened: int
    opened_s: float
    command: bytes
    approvals: set[int] = field(default_factory=set)


class _KeyRecordState(msgspec.Struct, array_like=True):
    key: bytes
    activated: int
    activated_s: float
    retired: int | None


class _NodeState(msgspec.Struct, array_like=True):
    keys: dict[str, list[_KeyRecordState]]
    serial: int
    admitted: int
    revoked: int | None


class _PendingState(msgspec.Struct, array_like=True):
    item: str
    node: int
    opened: int
    opened_s: float
    command: bytes
    approvals: list[int]


class _Snapshot(msgspec.Struct, array_like=True):
    version: int
    cluster: bytes
    now_s: float
    applied_index: int
    nodes: dict[int, _NodeState]
    pending: dict[bytes, _PendingState]
    approver_log: dict[int, list[float]]
    refused: dict[str, int]
    changes: int


class KeyRegistry:
    """The replicated key registry (see the module docstring)."""

    def __init__(self, genesis: Mapping[NodeId, bytes], policy: RegistryPolicy | None = None) -> None:
        if not genesis:
            raise ConfigError("the key registry needs the genesis public keys of at least one node")
        for node, key in genesis.items():
            if len(key) != KEY_SIZE_BYTES:
                raise ConfigError(f"the genesis key of {node_name(node)} is not {KEY_SIZE_BYTES} bytes")
        self.genesis = {NodeId(n): bytes(k) for n, k in genesis.items()}
        self.cluster = cluster_id(self.genesis)
        self.policy = (policy or RegistryPolicy()).validate()
        self._verify_keys: dict[bytes, nacl.signing.VerifyKey] = {}
        self._valid: dict[tuple[int, str], tuple[bytes, ...]] = {}
        """``valid_keys`` answers, until the next change (it is asked per message)."""
        self._reset()

    def _reset(self) -> None:
        self.now_s = 0.0
        self.applied_index = 0
        self.nodes: dict[int, NodeKeys] = {
            int(n): NodeKeys({KIND_SIGNING: [KeyRecord(k, 0, 0.0)], KIND_TLS: [KeyRecord(ANY_CA_CERTIFICATE, 0, 0.0)]})
            for n, k in self.genesis.items()
        }
        self.pending: dict[bytes, Pending] = {}
        self._approver_log: dict[int, list[float]] = {}
        self._overlaps: list[tuple[float, int, str]] = []
        """(deadline log time, node, kind) of open overlaps (may hold stale entries)."""
        self.refused: dict[str, int] = {}
        self.changes = 0
        """Bumped at every change of who may sign or connect (the runtime's cue to refresh)."""
        self._events: list[RegistryEvent] = []
        self._valid.clear()

    def _changed(self) -> None:
        self.changes += 1
        self._valid.clear()

    # -- queries ---------------------------------------------------------------------
    def members(self) -> list[NodeId]:
        """Genesis and admitted nodes that are not revoked."""
        return sorted(NodeId(n) for n, keys in self.nodes.items() if keys.revoked is None)

    def quorum(self) -> int:
        """⌊n/2⌋ + 1 of the current members."""
        return len(self.members()) // 2 + 1

    def valid_keys(self, node: NodeId | int, kind: str = KIND_SIGNING) -> tuple[bytes, ...]:
        """The keys of ``kind`` that speak for ``node`` now, newest first (two
        during an overlap; none once it is revoked or unknown)."""
        cached = self._valid.get((int(node), kind))
        if cached is not None:
            return cached
        keys = self.nodes.get(int(node))
        if keys is None or keys.revoked is not None:
            valid: tuple[bytes, ...] = ()
        else:
            valid = tuple(r.key for r in reversed(keys.keys[kind]) if r.retired is None)
        self._valid[(int(node), kind)] = valid
        return valid

    def newest_key(self, node: NodeId | int, kind: str = KIND_SIGNING) -> bytes | None:
        valid = self.valid_keys(node, kind)
        return valid[0] if valid else None

    def revoked_at(self, node: NodeId | int) -> int | None:
        keys = self.nodes.get(int(node))
        return None if keys is None else keys.revoked

    def admitted_at(self, node: NodeId | int) -> int | None:
        """0 for a genesis member, the admission index for an admitted one, else None."""
        keys = self.nodes.get(int(node))
        return None if keys is None else keys.admitted

    def verify(self, node: NodeId | int, message: bytes, signature: bytes) -> bool:
        """Is ``signature`` by one of ``node``'s valid signing keys? Never raises."""
        return any(self._signed(key, message, signature) for key in self.valid_keys(node))

    def certificate_allowed(self, node: NodeId | int, fingerprint: bytes) -> bool:
        """May ``node`` present the certificate with this SHA-256 fingerprint?"""
        valid = self.valid_keys(node, KIND_TLS)
        return ANY_CA_CERTIFICATE in valid or fingerprint in valid

    def next_serial(self, node: NodeId | int) -> int:
        keys = self.nodes.get(int(node))
        return 1 if keys is None else keys.serial + 1

    def take_events(self) -> list[RegistryEvent]:
        events, self._events = self._events, []
        return events

    # -- applying the log ----------------------------------------------------------------
    def apply(self, index: int, now_s: float, data: bytes) -> MachineResult:
        """Apply the registry command committed at ``index`` (log time ``now_s``)."""
        self.applied_index = index
        if now_s > self.now_s:
            self.now_s = now_s
            self._expire(index)
        try:
            command = decode_registry_command(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._refuse("malformed registry command")
        if isinstance(command, Approve):
            return self._approve(index, command)
        if isinstance(command, AnnounceKey):
            return self._announce(index, command)
        if isinstance(command, RetireKey):
            return self._retire(index, command)
        if isinstance(command, Revoke):
            return self._revoke(index, command)
        if isinstance(command, RequestAdmission):
            return self._request_admission(index, command)
        return MachineResult(True, value=json.dumps(self.describe(), sort_keys=True))

    def _announce(self, index: int, op: AnnounceKey) -> MachineResult:
        if op.kind not in KINDS:
            return self._refuse(f"unknown key kind {op.kind[:20]!r}")
        if len(op.key) != KEY_SIZE_BYTES:
            return self._refuse(f"announced key is not {KEY_SIZE_BYTES} bytes")
        keys = self.nodes.get(op.node)
        if keys is None:
            return self._refuse("announcement for a node that is not a member")
        if keys.revoked is not None:
            return self._refuse("announcement by a revoked node")
        signer = self.newest_key(op.node)
        message = announce_bytes(self.cluster, op.node, op.kind, op.key, op.serial, op.proof)
        if signer is None or not self._signed(signer, message, op.signature):
            return self._refuse("announcement not signed by the node's current key")
        if op.serial <= keys.serial:
            return self._refuse("replayed announcement (serial already used)")
        if op.serial != keys.serial + 1:
            return self._refuse("announcement serial skips ahead")
        if op.key in (r.key for r in keys.keys[op.kind]):
            return self._refuse("announced key was already used by this node")
        if op.kind == KIND_SIGNING:
            verdict = verify_ed25519_key(op.key, op.proof, key_proof_context(self.cluster, op.node, op.serial))
            if not verdict:
                return self._refuse(f"no proof of the new key: {verdict.reason}")
            if any(op.key == r.key for other in self.nodes.values() for r in other.keys[KIND_SIGNING]):
                return self._refuse("announced key belongs to another node")
        if any(p.item == "rotate" and p.node == op.node for p in self.pending.values()):
            return self._refuse("a rotation of this node is already pending")
        keys.serial = op.serial  # the serial is spent even if the rotation lapses
        return self._open(index, "rotate", op.node, op)

    def _request_admission(self, index: int, op: RequestAdmission) -> MachineResult:
        if op.node < 1:
            return self._refuse("node ids start at 1")
        known = self.nodes.get(op.node)
        if known is not None:
            return self._refuse("revoked node may not rejoin" if known.revoked is not None else "already a member")
        if len(op.key) != KEY_SIZE_BYTES:
            return self._refuse(f"admission key is not {KEY_SIZE_BYTES} bytes")
        verdict = verify_ed25519_key(op.key, op.proof, admission_context(self.cluster, op.node))
        if not verdict:
            return self._refuse(f"no proof of the admission key: {verdict.reason}")
        if any(op.key == r.key for other in self.nodes.values() for r in other.keys[KIND_SIGNING]):
            return self._refuse("admission key belongs to another node")
        if any(p.item == "admit" and p.node == op.node for p in self.pending.values()):
            return self._refuse("an admission of this node is already pending")
        return self._open(index, "admit", op.node, op)

    def _revoke(self, index: int, op: Revoke) -> MachineResult:
        if len(op.reason) > MAX_REASON_CHARS:
            return self._refuse(f"revocation reason longer than {MAX_REASON_CHARS} characters")
        target = self.nodes.get(op.node)
        if target is None:
            return self._refuse("revocation of a node that is not a member")
        if target.revoked is not None:
            return self._refuse("node already revoked")
        if op.proposer == op.node:
            return self._refuse("a node may not propose its own revocation")
        refusal = self._approver_fault(op.proposer, revoke_bytes(self.cluster, op.node, op.proposer, op.reason), op.signature)
        if refusal is not None:
            return self._refuse(refusal)
        existing = next((s for s, p in self.pending.items() if p.item == "revoke" and p.node == op.node), None)
        if existing is not None:
            return self._count_approval(index, existing, self.pending[existing], op.proposer)
        result = self._open(index, "revoke", op.node, op)
        if result.ok:
            subject = subject_of(op)
            return self._count_approval(index, subject, self.pending[subject], op.proposer)
        return result

    def _open(self, index: int, item: str, node: int, op: AnnounceKey | Revoke | RequestAdmission) -> MachineResult:
        if len(self.pending) >= self.policy.max_pending:
            return self._refuse("too many items waiting for approval")
        subject = subject_of(op)
        self.pending[subject] = Pending(item, node, index, self.now_s, encode_registry_command(op))
        self._events.append(RegistryEvent("pending", index, NodeId(node), subject=subject, item=item))
        return MachineResult(True, value=subject.hex())

    def _approve(self, index: int, op: Approve) -> MachineResult:
        pending = self.pending.get(op.subject)
        if pending is None:
            return self._refuse("approval of nothing pending")
        refusal = self._approver_fault(op.approver, approve_bytes(self.cluster, op.subject), op.signature)
        if refusal is not None:
            return self._refuse(refusal)
        if op.approver == pending.node:
            return self._refuse("self-approval")
        if op.approver in pending.approvals:
            return self._refuse("duplicate approval")
        if pending.item == "admit":
            window = [t for t in self._approver_log.get(op.approver, []) if t > self.now_s - self.policy.approver_window_s]
            if len(window) >= self.policy.admissions_per_approver:
                self._approver_log[op.approver] = window
                return self._refuse("approver exceeded its admission rate")
            window.append(self.now_s)
            self._approver_log[op.approver] = window
        return self._count_approval(index, op.subject, pending, op.approver)

    def _approver_fault(self, approver: int, message: bytes, signature: bytes) -> str | None:
        keys = self.nodes.get(approver)
        if keys is None:
            return "approver is not a member"
        if keys.revoked is not None:
            return "approver is revoked"
        newest = self.newest_key(approver)
        if newest is None or not self._signed(newest, message, signature):
            return "approval not signed by the approver's current key"
        return None

    def _count_approval(self, index: int, subject: bytes, pending: Pending, approver: int) -> MachineResult:
        pending.approvals.add(approver)
        if pending.item == "revoke":
            voters = [m for m in self.members() if m != pending.node]
            needed = self.quorum()
            approvals = len(pending.approvals & {int(v) for v in voters})
        else:
            needed = self.quorum()
            approvals = len(pending.approvals & {int(m) for m in self.members()})
        if approvals < needed:
            return MachineResult(True, value=f"{approvals}/{needed}")
        del self.pending[subject]
        command = decode_registry_command(pending.command)
        if isinstance(command, AnnounceKey):
            self._activate(index, command)
        elif isinstance(command, Revoke):
            self._revoked(index, command.node)
        elif isinstance(command, RequestAdmission):
            self._admit(index, command)
        return MachineResult(True, value="decided")

    def _activate(self, index: int, op: AnnounceKey) -> None:
        keys = self.nodes[op.node]
        keys.keys[op.kind].append(KeyRecord(op.key, index, self.now_s))
        heapq.heappush(self._overlaps, (self.now_s + self.policy.max_overlap_s, op.node, op.kind))
        self._changed()
        self._events.append(RegistryEvent("activated", index, NodeId(op.node), op.kind, op.key))

    def _revoked(self, index: int, node: int) -> None:
        self.nodes[node].revoked = index
        for subject in [s for s, p in self.pending.items() if p.node == node]:
            del self.pending[subject]
        self._changed()
        self._events.append(RegistryEvent("revoked", index, NodeId(node)))

    def _admit(self, index: int, op: RequestAdmission) -> None:
        self.nodes[op.node] = NodeKeys(
            {KIND_SIGNING: [KeyRecord(op.key, index, self.now_s)], KIND_TLS: [KeyRecord(ANY_CA_CERTIFICATE, index, self.now_s)]},
            admitted=index,
        )
        self._changed()
        self._events.append(RegistryEvent("admitted", index, NodeId(op.node), KIND_SIGNING, op.key))

    def _retire(self, index: int, op: RetireKey) -> MachineResult:
        if op.kind not in KINDS:
            return self._refuse(f"unknown key kind {op.kind[:20]!r}")
        keys = self.nodes.get(op.node)
        if keys is None or keys.revoked is not None:
            return self._refuse("retirement for a node that is not a member")
        newest = self.newest_key(op.node)
        if newest is None or not self._signed(newest, retire_bytes(self.cluster, op.node, op.kind, op.key), op.signature):
            return self._refuse("retirement not signed by the node's current key")
        records = keys.keys[op.kind]
        live = [r for r in records if r.retired is None]
        record = next((r for r in live if r.key == op.key), None)
        if record is None:
            return self._refuse("retired key is not a valid key of the node")
        if record is live[-1]:
            return self._refuse("the newest key cannot be retired (announce a new one)")
        self._retire_record(index, op.node, op.kind, record)
        return MachineResult(True)

    def _retire_record(self, index: int, node: int, kind: str, record: KeyRecord) -> None:
        record.retired = index
        self._changed()
        self._events.append(RegistryEvent("retired", index, NodeId(node), kind, record.key))

    def _expire(self, index: int) -> None:
        """Log time moved: end overlaps and drop lapsed items that are due."""
        overlaps = self._overlaps
        while overlaps and overlaps[0][0] <= self.now_s:
            _, node, kind = heapq.heappop(overlaps)
            keys = self.nodes.get(node)
            if keys is None or keys.revoked is not None:
                continue
            live = [r for r in keys.keys[kind] if r.retired is None]
            for older, newer in itertools.pairwise(live):
                if newer.activated_s + self.policy.max_overlap_s <= self.now_s:
                    self._retire_record(index, node, kind, older)
        if self.pending:
            cutoff = self.now_s - self.policy.pending_ttl_s
            for subject in [s for s, p in self.pending.items() if p.opened_s <= cutoff]:
                del self.pending[subject]
                self.refused["approval window lapsed"] = self.refused.get("approval window lapsed", 0) + 1

    def _refuse(self, reason: str) -> MachineResult:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return MachineResult(False, error=reason)

    def _signed(self, key: bytes, message: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_SIZE_BYTES or len(key) != KEY_SIZE_BYTES:
            return False
        verify_key = self._verify_keys.get(key)
        if verify_key is None:
            try:
                verify_key = nacl.signing.VerifyKey(key)
            except (nacl.exceptions.CryptoError, ValueError, TypeError):
                return False
            if len(self._verify_keys) > 4096:
                self._verify_keys.clear()
            self._verify_keys[key] = verify_key
        try:
            verify_key.verify(message, signature)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            return False
        return True

    # -- reads for people --------------------------------------------------------------
    def describe(self) -> dict[str, object]:
        """The registry as plain data (``quorate keys status``)."""
        nodes = {}
        for node, keys in sorted(self.nodes.items()):
            nodes[node_name(NodeId(node))] = {
                "admitted_at": keys.admitted,
                "revoked_at": keys.revoked,
                "serial": keys.serial,
                **{
                    kind: [
                        {"key": r.key.hex() or "any CA certificate", "activated_at": r.activated, "retired_at": r.retired}
                        for r in records
                    ]
                    for kind, records in keys.keys.items()
                },
            }
        return {
            "cluster": self.cluster.hex(),
            "applied_index": self.applied_index,
            "members": [node_name(m) for m in self.members()],
            "quorum": self.quorum(),
            "nodes": nodes,
            "pending": [
                {"subject": s.hex(), "item": p.item, "node": node_name(NodeId(p.node)), "opened_at": p.opened, "approvals": sorted(p.approvals)}
                for s, p in sorted(self.pending.items())
            ],
            "refused": dict(sorted(self.refused.items())),
        }

    # -- snapshots ----------------------------------------------------------------------
    def snapshot(self) -> bytes | None:
        if not self.changes and not self.pending and not self.refused and not any(k.serial for k in self.nodes.values()):
            return None
        nodes = {
            n: _NodeState(
                {kind: [_KeyRecordState(r.key, r.activated, r.activated_s, r.retired) for r in records] for kind, records in k.keys.items()},
                k.serial,
                k.admitted,
                k.revoked,
            )
            for n, k in sorted(self.nodes.items())
        }
        pending = {
            s: _PendingState(p.item, p.node, p.opened, p.opened_s, p.command, sorted(p.approvals))
            for s, p in sorted(self.pending.items())
        }
        return _encoder.encode(
            _Snapshot(
                FORMAT_VERSION,
                self.cluster,
                self.now_s,
                self.applied_index,
                nodes,
                pending,
                {a: list(t) for a, t in sorted(self._approver_log.items())},
                dict(sorted(self.refused.items())),
                self.changes,
            )
        )

    def restore(self, data: bytes | None) -> None:
        self._reset()
        if data is None:
            return
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        if snap.version != FORMAT_VERSION:
            raise ValueError(f"unsupported key registry snapshot version {snap.version}")
        if snap.cluster != self.cluster:
            raise ValueError("the key registry snapshot belongs to another cluster (other genesis keys)")
        self.now_s = snap.now_s
        self.applied_index = snap.applied_index
        self.nodes = {
            n: NodeKeys(
                {kind: [KeyRecord(r.key, r.activated, r.activated_s, r.retired) for r in records] for kind, records in s.keys.items()},
                s.serial,
                s.admitted,
                s.revoked,
            )
            for n, s in snap.nodes.items()
        }
        self.pending = {
            s: Pending(p.item, p.node, p.opened, p.opened_s, p.command, set(p.approvals)) for s, p in snap.pending.items()
        }
        self._approver_log = {a: list(t) for a, t in snap.approver_log.items()}
        self.refused = dict(snap.refused)
        self.changes = snap.changes + 1
        self._valid.clear()
        for node, keys in self.nodes.items():
            for kind, records in keys.keys.items():
                if sum(1 for r in records if r.retired is None) > 1:
                    newest = [r for r in records if r.retired is None][-1]
                    heapq.heappush(self._overlaps, (newest.activated_s + self.policy.max_overlap_s, node, kind))


def genesis_keys(public_keys: Mapping[NodeId, bytes], members: Iterable[NodeId] | None = None) -> dict[NodeId, bytes]:
    """The genesis of a registry: ``public_keys`` (of ``members`` only, when given)."""
    wanted = None if members is None else set(members)
    return {NodeId(n): k for n, k in public_keys.items() if wanted is None or n in wanted}


__all__ = [
    "ANY_CA_CERTIFICATE",
    "KINDS",
    "KIND_SIGNING",
    "KIND_TLS",
    "MACHINE_NAME",
    "AnnounceKey",
    "Approve",
    "Describe",
    "KeyRegistry",
    "RegistryCommand",
    "RegistryEvent",
    "RegistryPolicy",
    "RequestAdmission",
    "RetireKey",
    "Revoke",
    "cluster_id",
    "decode_registry_command",
    "encode_registry_command",
    "make_admission_request",
    "make_announcement",
    "make_approval",
    "make_retirement",
    "make_revocation",
    "subject_of",
]
