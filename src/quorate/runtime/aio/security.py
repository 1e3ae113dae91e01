"""A real node's security manager: the key registry and private votes in the
log, and what the node does locally when the registry changes.

Theory of operation.

- *In the log.* The node's key-value store hosts two extension machines
  (``quorate.core.machine``): the ``KeyRegistry`` (``"keys"``) and the
  private votes (``"votes"``). Their commands are ``Extension`` operations,
  from clients (``quorate keys rotate``, a voter's ballot) or proposed by the
  node itself. The protocol cores' keyring (``RegistryKeyring``) asks the
  registry at every signature check.
- *After each applied batch* (``after_apply``) the node reads the
  registry's events and acts on them, never inside the driver's turn (the
  reactions are scheduled on the loop):

  * an item waits for approval → with ``auto_approve_rotations``, a member
    approves another node's *rotation* (the registry already checked the
    old key's signature and the proof of the new key) by signing an
    ``Approve`` with its own key. Revocations and admissions are never
    approved automatically: an operator signs them (``quorate keys revoke``,
    ``quorate keys approve``).
  * this node's own signing key was activated → it loads the new seed the
    rotating command left next to its key (``n1.key.next``), switches its
    signer (the old seed is kept for MAC checks during the overlap), makes
    the new seed its key file, and ``retire_after_s`` later retires the old
    key (signed with the new one). A TLS certificate works the same way
    (``n1.next.crt``/``n1.next.key`` become ``n1.crt``/``n1.key``; new
    connections present it; live ones keep the old one until it retires).
  * a peer's certificate pins changed or a node was revoked → the transport
    rechecks its live connections (``peer_check``) and closes refused ones;
    from that applied index on the node drops every message of a revoked
    node before stepping it (``refuses``) — at the same log index on every
    node. A node that finds itself revoked stops serving.

- *Proposing its own commands.* The node proposes to group 0's core; a Raft
  follower is redirected, so it relays the command to the leader on the
  peer connection (``SecurityRelay``, rate-limited per peer; only registry
  commands are relayed, and the leader stamps them itself). Until the
  registry shows the command took effect, it is proposed again every
  ``relay_retry_s`` (a relay lost with a leader).
- *Admission at the edge.* With ``admission = "quorum"`` a membership
  change that adds a node is refused until the registry admitted that node
  (⌊n/2⌋ + 1 approvals); membership changes and admission requests are
  rate-limited per source address (``admission_requests_per_s``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from quorate.core.evidence import Evidence
from quorate.core.protocol import Accepted, ProposeOutcome, Queued, Redirect
from quorate.crypto.keyfiles import key_file
from quorate.crypto.zk import VoteVerifier
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name
from quorate.observe.events import decision
from quorate.runtime.aio.security_relay import SecurityRelay
from quorate.runtime.aio.tls import TlsConfig
from quorate.runtime.aio.transport import DEFAULT_HANDSHAKE_TIMEOUT_S
from quorate.security.dkg_log import MACHINE_NAME as DKG_MACHINE
from quorate.security.dkg_log import MAX_MESSAGE_BYTES as MAX_DKG_MESSAGE_BYTES
from quorate.security.dkg_log import (
    CloseDkgPhase,
    DkgMachine,
    LogDkg,
    PostDkg,
    decode_dkg_command,
    encode_dkg_command,
    make_close,
    make_post,
    make_start,
)
from quorate.security.evidence_log import MACHINE_NAME as EVIDENCE_MACHINE
from quorate.security.evidence_log import EvidenceMachine, encode_evidence
from quorate.security.keyregistry import (
    KIND_SIGNING,
    KIND_TLS,
    MACHINE_NAME,
    Approve,
    KeyRegistry,
    RegistryEvent,
    RegistryPolicy,
    RequestAdmission,
    RetireKey,
    decode_registry_command,
    encode_registry_command,
    make_approval,
    make_retirement,
    public_key_of,
)
from quorate.security.limits import DEFAULT_MAX_INBOX, AddressRateLimiter, EdgeLimits
from quorate.security.ratelimit import PeerRateLimiter
from quorate.security.registry_keyring import NEXT_SUFFIX, ROTATED_SUFFIX, RegistryKeyring
from quorate.state.kv import Extension, decode_op
from quorate.state.private_votes import MACHINE_NAME as VOTES_MACHINE
from quorate.state.private_votes import PrivateVotes, VotesMachine

log = logging.getLogger("quorate.runtime.aio.security")

__all__ = ["DEFAULT_MAX_INBOX", "NodeSecurity", "SecurityRelay", "SecuritySettings"]

ADMISSION_POLICIES = ("ca", "quorum")
DEFAULT_RETIRE_AFTER_S = 2.0
DEFAULT_RELAY_RETRY_S = 1.0
DEFAULT_ADMISSION_REQUESTS_PER_S = 2.0
DEFAULT_RELAYS_PER_PEER_PER_S = 50.0
MAX_RELAY_BYTES = 4096
"""A registry command is a few hundred bytes; more is not one."""
DKG_PHASE_TIMEOUT_S = 10.0
"""A DKG participant that waits this long in one phase proposes to close it."""
EVIDENCE_POLL_S = 0.5
"""How often a node looks for new proofs of misbehaviour to record."""
DKG_SESSION_PREFIX = "dkg.session."
"""Metrics ``dkg.session.<name>.state`` (0 running, 1 done, 2 failed, 3 this
node takes no part) and ``.key`` (the first 48 bits of SHA-256 of the group public
key: members that agree show the same number)."""
DKG_RUNNING, DKG_DONE, DKG_FAILED, DKG_NOT_PARTICIPANT = 0, 1, 2, 3
GENESIS_DKG_SESSION = "genesis"
"""The session a cluster with ``dkg_threshold`` > 0 runs by itself."""
DKG_START_STAGGER_S = 2.0
"""Member k (by id) proposes the automatic start k times this late, so one start usually suffices."""
NEXT_CERTIFICATE = "{name}.next"
"""``n1.next.crt`` / ``n1.next.key``: a certificate rotation in progress."""


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """A node's security settings (the ``[security]`` table of its config).
    ``registry`` must be the same on every node of a cluster."""

    admission: str = "ca"
    """Who may be added as a member: ca (any node with a certificate of the cluster CA for its name) or quorum (only a node the key registry admitted with approvals of a majority of members)."""
    auto_approve_rotations: bool = True
    """Approve another member's key rotation once the registry has checked its old key's signature and the proof of its new key."""
    retire_after_s: float = DEFAULT_RETIRE_AFTER_S
    """After this node's own new key or certificate is activated, how long both stay valid (the overlap) before it retires the old one."""
    relay_retry_s: float = DEFAULT_RELAY_RETRY_S
    """How often this node proposes again a registry command of its own that has not taken effect yet."""
    admission_requests_per_s: float = DEFAULT_ADMISSION_REQUESTS_PER_S
    """Membership changes that add a node, and admission requests, per second per source address (a burst of 5)."""
    dkg_threshold: int = 0
    """When > 0, the members of the key registry generate a threshold key with this threshold (t of n signers) by themselves once the cluster runs, with no dealer: session "genesis" (quorate keys dkg status). 0: only on request (quorate keys dkg start)."""
    registry: RegistryPolicy = field(default_factory=RegistryPolicy)

    def validate(self) -> SecuritySettings:
        if self.admission not in ADMISSION_POLICIES:
            raise ConfigError(f"admission must be one of {', '.join(ADMISSION_POLICIES)}, got {self.admission!r}")
        if not self.retire_after_s > 0 or not self.relay_retry_s > 0:
            raise ConfigError("retire_after_s and relay_retry_s must be > 0 seconds")
        if self.dkg_threshold < 0:
            raise ConfigError(f"dkg_threshold must be >= 0 (0: no automatic key generation), got {self.dkg_threshold}")
        if not self.admission_requests_per_s > 0:
            raise ConfigError(f"admission_requests_per_s must be > 0, got {self.admission_requests_per_s}")
        self.registry.validate()
        return self


class SecurityHost(Protocol):
    """What the security manager asks of its node (``AioNode`` implements it)."""

    def propose_extension(self, machine: str, data: bytes) -> ProposeOutcome:
        """Propose a sessionless ``Extension`` command to group 0 (this node's stamp)."""
        ...

    def send_relay(self, to: NodeId, message: SecurityRelay) -> None: ...

    def reload_tls(self, tls: TlsConfig) -> None: ...

    def recheck_peers(self) -> None: ...

    def stop_serving(self, reason: str) -> None: ...

    def held_evidence(self) -> Sequence[Evidence]:
        """The proofs of misbehaviour group 0's core holds, oldest first."""
        ...


def fingerprint(certificate_der: bytes) -> bytes:
    """A certificate's identity in the registry: SHA-256 of its DER encoding."""
    return hashlib.sha256(certificate_der).digest()


def certificate_fingerprint_file(path: Path) -> bytes:
    """The fingerprint of the PEM certificate at ``path``."""
    import ssl

    try:
        der = ssl.PEM_cert_to_DER_cert(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the certificate {path}: {exc}") from None
    return fingerprint(der)


class NodeSecurity:
    """One node's security manager (see the module docstring)."""

    def __init__(
        self,
        node: NodeId,
        keyring: RegistryKeyring,
        settings: SecuritySettings | None = None,
        *,
        keys_dir: Path | None = None,
        tls_dir: Path | None = None,
        clock: Callable[[], float],
    ) -> None:
        self.node = node
        self.keyring = keyring
        self.registry: KeyRegistry = keyring.registry
        self.settings = (settings or SecuritySettings()).validate()
        self.keys_dir = keys_dir
        self.tls_dir = tls_dir
        self.clock = clock
        self.votes = VotesMachine(PrivateVotes(VoteVerifier()))
        self.dkg_machine = DkgMachine(self.registry)
        self.dkg = LogDkg(node, self.dkg_machine, lambda: self.keyring.own_signer.seed)
        self.evidence_machine = EvidenceMachine(self.registry)
        self._evidence_seen = 0
        """How many of the core's proofs this node has queued for the log."""
        self._evidence_timer: asyncio.TimerHandle | None = None
        self._evidence_noted: set[int] = set()
        """Offenders whose record in the log this node has logged."""
        self._dkg_announced: set[str] = set()
        """Sessions whose result or failure this node has logged."""
        self._dkg_phases: dict[str, str] = {}
        """Session -> the phase whose timeout is armed."""
        self.counters: Counter[str] = Counter()
        self.host: SecurityHost | None = None
        self._revoked: dict[int, int] = {}
        """Revoked node -> the index at which this node applied its revocation."""
        self._outbox: dict[bytes, tuple[str, bytes, Callable[[], bool]]] = {}
        """key -> (machine, command, "is it done?") proposed until done."""
        self._retry: asyncio.TimerHandle | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._flush_scheduled = False
        self._admission_limiter = AddressRateLimiter(self.settings.admission_requests_per_s, burst=5.0)
        self._relay_limiter = PeerRateLimiter(DEFAULT_RELAYS_PER_PEER_PER_S, DEFAULT_RELAYS_PER_PEER_PER_S)
        self._stopped = False

    # ------------------------------------------------------------ wiring
    def machines(self) -> dict[str, Any]:
        """The extension machines group 0's key-value store hosts."""
        return {
            MACHINE_NAME: self.registry,
            VOTES_MACHINE: self.votes,
            DKG_MACHINE: self.dkg_machine,
            EVIDENCE_MACHINE: self.evidence_machine,
        }

    def attach(self, host: SecurityHost) -> None:
        self.host = host
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not running (a unit test): nothing to poll
            loop = None
        if loop is not None:
            self._evidence_timer = loop.call_later(EVIDENCE_POLL_S, self._poll_evidence)
        if self.settings.dkg_threshold > 0:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not running yet: the first applied batch starts it
                return
            members = sorted(int(m) for m in self.registry.members())
            rank = members.index(int(self.node)) if int(self.node) in members else len(members)
            self._timers.add(loop.call_later(self.settings.relay_retry_s + rank * DKG_START_STAGGER_S, self._dkg_auto_start))

    # ------------------------------------------------------------ local checks
    def refuses(self, sender: int) -> bool:
        """Drop ``sender``'s messages (revoked at an index this node applied)."""
        return sender in self._revoked

    def peer_check(self, peer: NodeId, certificate: bytes | None) -> str | None:
        """The transport's question: may ``peer`` (with this certificate) be a peer now?"""
        at = self.registry.revoked_at(peer)
        if at is not None:
            return f"revoked at log index {at}"
        known = certificate is not None and int(peer) in self.registry.nodes
        if known and not self.registry.certificate_allowed(peer, fingerprint(certificate or b"")):
            return "its certificate is not pinned in the key registry (rotated or retired)"
        return None

    def admission_fault(self, node: NodeId) -> str | None:
        """Why ``node`` may not be added to the group now (None: it may)."""
        if self.settings.admission == "quorum" and self.registry.admitted_at(node) is None:
            return (
                f"{node_name(node)} has not been admitted: it needs approvals from "
                f"{self.registry.quorum()} members (quorate keys admit / quorate keys approve)"
            )
        at = self.registry.revoked_at(node)
        if at is not None:
            return f"{node_name(node)} was revoked at log index {at}"
        return None

    def admission_request_allowed(self, address: str, now: float) -> bool:
        """Rate limit of membership changes and admission requests per source address."""
        if self._admission_limiter.allow(address, now):
            return True
        self.counters["security.admission_rate_limited"] += 1
        return False

    @staticmethod
    def is_admission_request(op_bytes: bytes) -> bool:
        """Does this client operation ask for an admission (cheap test first)?"""
        if b"keys" not in op_bytes[:16]:
            return False
        try:
            op = decode_op(op_bytes)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        if not isinstance(op, Extension) or op.machine != MACHINE_NAME:
            return False
        try:
            return isinstance(decode_registry_command(op.data), RequestAdmission)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False

    # ------------------------------------------------------------ after apply
    def resync(self) -> None:
        """The registry was replaced by a snapshot: rebuild what follows from it."""
        self.registry.take_events()
        self.dkg.rebuild()
        self._dkg_after_apply()
        self._revoked = {n: k.revoked for n, k in self.registry.nodes.items() if k.revoked is not None}
        if self.node in self._revoked:
            self._stop(f"this node's keys were revoked at log index {self._revoked[int(self.node)]}")
        elif self.host is not None and not self._stopped:
            self.host.recheck_peers()

    def after_apply(self) -> None:
        """React to what the registry decided in the batch just applied."""
        events = self.registry.take_events()
        self._dkg_after_apply()
        self._note_recorded_evidence()
        if not events and not self._outbox:
            return
        peers_changed = False
        for event in events:
            self.counters[f"keys.events.{event.what}"] += 1
            if event.what == "revoked":
                self._revoked[int(event.node)] = event.index
                decision(
                    log, "keys.revoked", "%s: %s revoked at log index %d", node_name(self.node), node_name(event.node),
                    event.index, level=logging.WARNING, node=int(event.node), index=event.index,
                )
                if event.node == self.node:
                    self._stop(f"this node's keys were revoked at log index {event.index}")
                peers_changed = True
            elif event.what == "pending" and event.item == "rotate":
                self._approve(event)
            elif event.what == "activated":
                decision(
                    log, "keys.activated", "%s: %s's new %s key is active from log index %d",
                    node_name(self.node), node_name(event.node), event.kind, event.index,
                    node=int(event.node), kind=event.kind, index=event.index,
                )
                if event.node == self.node:
                    self._own_activation(event)
                elif event.kind == KIND_TLS:
                    peers_changed = True
            elif event.what == "retired":
                if event.node == self.node and event.kind == KIND_SIGNING:
                    self.keyring.own_signer.forget_previous()
                if event.kind == KIND_TLS and event.node != self.node:
                    peers_changed = True
        self._drop_done()
        if peers_changed and self.host is not None and not self._stopped:
            self.host.recheck_peers()
        if self._outbox:
            self._schedule_flush()

    # ------------------------------------------------------------ DKG
    def _dkg_after_apply(self) -> None:
        """Feed the DKG transcript to this node's participants; propose what
        they broadcast; arm a phase timeout for each run that waits."""
        dkg = self.dkg
        dkg.consume()
        if self._stopped:
            return
        me = int(self.node)
        seed = self.keyring.own_signer.seed
        cluster = self.registry.cluster
        for name, message in dkg.take_outgoing():
            post = make_post(cluster, name, me, message, seed)
            digest = hashlib.sha256(me.to_bytes(8, "big") + post.message).digest()

            def posted(name: str = name, digest: bytes = digest) -> bool:
                session = self.dkg_machine.sessions.get(name)
                return session is None or digest in session.posts

            self._queue(b"dkg:" + digest, encode_dkg_command(post), posted, DKG_MACHINE)
            self.counters["dkg.messages_posted"] += 1
        for name, result in dkg.results.items():
            if name not in self._dkg_announced:
                self._dkg_announced.add(name)
                decision(
                    log, "dkg.done", "%s: DKG session %s done: group public key %s; qualified dealers %s%s",
                    node_name(self.node), name, result.group_public_key.hex(),
                    " ".join(node_name(d) for d in result.qualified),
                    "".join(f"; {node_name(d)} disqualified: {why}" for d, why in sorted(result.disqualified.items())),
                    session=name, group_public_key=result.group_public_key.hex(),
                    qualified=[int(d) for d in result.qualified],
                    disqualified={node_name(d): why for d, why in sorted(result.disqualified.items())},
                )
        for name, why in dkg.failures.items():
            if name not in self._dkg_announced:
                self._dkg_announced.add(name)
                decision(
                    log, "dkg.failed", "%s: DKG session %s failed: %s", node_name(self.node), name, why,
                    level=logging.WARNING, session=name, reason=why,
                )
        waiting = dkg.waiting()
        for name in [n for n in self._dkg_phases if n not in waiting]:
            del self._dkg_phases[name]
        for name, phase in waiting.items():
            if self._dkg_phases.get(name) != phase:
                self._dkg_phases[name] = phase
                self._arm_dkg_timeout(name, phase)
        if self._outbox:
            self._schedule_flush()

    def _poll_evidence(self) -> None:
        """Queue every new proof the core holds for the log (see
        ``quorate.security.evidence_log``), until each offender is on record."""
        host = self.host
        if host is None or self._stopped:
            return
        held = host.held_evidence()
        for evidence in held[self._evidence_seen :]:
            offender = evidence.offender
            if self.evidence_machine.recorded(offender):
                continue
            self._queue(
                b"evidence:%d" % int(offender),
                encode_evidence(evidence),
                functools.partial(self.evidence_machine.recorded, offender),
                EVIDENCE_MACHINE,
            )
            self.counters["evidence.queued"] += 1
            first = evidence.first
            decision(
                log, "evidence.detected", "%s: proof that %s equivocated (%s at %d/%d)", node_name(self.node),
                node_name(offender), first.kind, first.height, first.round, level=logging.WARNING,
                offender=int(offender), statement=first.kind, height=first.height, round=first.round,
            )
            self._schedule_flush()
        self._evidence_seen = len(held)
        self._evidence_timer = asyncio.get_running_loop().call_later(EVIDENCE_POLL_S, self._poll_evidence)

    def _note_recorded_evidence(self) -> None:
        offenders = self.evidence_machine.offenders
        if len(offenders) == len(self._evidence_noted):
            return
        for offender, index in sorted(offenders.items()):
            if offender not in self._evidence_noted:
                self._evidence_noted.add(offender)
                decision(
                    log, "evidence.recorded", "%s: the log records that %s equivocated (log index %d)",
                    node_name(self.node), node_name(NodeId(offender)), index, offender=offender, index=index,
                )

    def _dkg_auto_start(self) -> None:
        """With ``dkg_threshold`` > 0: propose the ``genesis`` session among
        the registry's members until one start (anyone's) is in the log."""
        threshold = self.settings.dkg_threshold
        if threshold <= 0 or self._stopped or GENESIS_DKG_SESSION in self.dkg_machine.sessions:
            return
        members = tuple(sorted(int(m) for m in self.registry.members()))
        if int(self.node) not in members:
            return
        if threshold > len(members):
            if not self.counters["dkg.auto_start_refused"]:
                log.error(
                    "%s: dkg_threshold %d exceeds the %d members; no key is generated",
                    node_name(self.node), threshold, len(members),
                )
            self.counters["dkg.auto_start_refused"] += 1
            return
        start = make_start(
            self.registry.cluster, GENESIS_DKG_SESSION, members, threshold, int(self.node), self.keyring.own_signer.seed
        )
        self._queue(
            b"dkg-start:" + GENESIS_DKG_SESSION.encode(),
            encode_dkg_command(start),
            lambda: GENESIS_DKG_SESSION in self.dkg_machine.sessions,
            DKG_MACHINE,
        )
        self.counters["dkg.auto_starts_proposed"] += 1
        self._schedule_flush()

    def _arm_dkg_timeout(self, name: str, phase: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # replaying at start-up: the next applied batch arms it

        def fire() -> None:
            self._timers.discard(handle)
            if self._stopped or self.dkg.waiting().get(name) != phase:
                return
            close = make_close(self.registry.cluster, name, phase, int(self.node), self.keyring.own_signer.seed)

            def closed() -> bool:
                return self.dkg.waiting().get(name) != phase

            self._queue(b"dkg-close:" + name.encode() + phase.encode(), encode_dkg_command(close), closed, DKG_MACHINE)
            self.counters["dkg.phase_timeouts"] += 1
            self._schedule_flush()

        handle = loop.call_later(DKG_PHASE_TIMEOUT_S, fire)
        self._timers.add(handle)

    def _approve(self, event: RegistryEvent) -> None:
        if not self.settings.auto_approve_rotations or event.node == self.node:
            return
        if self.registry.newest_key(self.node) != self.keyring.own_signer.public_key:
            return  # not (yet) a member with this key: an approval would be refused
        approval = make_approval(self.registry.cluster, int(self.node), event.subject, self.keyring.own_signer.seed)
        subject = event.subject
        me = int(self.node)

        def done() -> bool:
            pending = self.registry.pending.get(subject)
            return pending is None or me in pending.approvals

        self._queue(b"approve:" + subject, encode_registry_command(approval), done)
        self.counters["keys.approvals_signed"] += 1

    def _own_activation(self, event: RegistryEvent) -> None:
        if event.kind == KIND_SIGNING:
            self._switch_signing_key(event)
        else:
            self._switch_certificate(event)

    def _switch_signing_key(self, event: RegistryEvent) -> None:
        signer = self.keyring.own_signer
        if signer.public_key == event.key:
            return
        if self.keys_dir is None:
            self._rotation_problem("no keys_dir: this node cannot load its new signing key")
            return
        current = key_file(self.keys_dir, self.node)
        pending = current.with_name(current.name + NEXT_SUFFIX)
        try:
            seed = bytes.fromhex(pending.read_text().strip())
        except (OSError, ValueError) as exc:
            self._rotation_problem(f"cannot read the new key {pending}: {exc}")
            return
        if len(seed) != 32 or public_key_of(seed) != event.key:
            self._rotation_problem(f"{pending} is not the key the registry activated")
            return
        old_key = signer.public_key
        signer.switch(seed)
        rotated = current.with_name(current.name + ROTATED_SUFFIX)
        with open(rotated, "a") as out:
            out.write(event.key.hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(pending, current)  # the new seed is the node's key from now on
        self.counters["keys.own_rotations"] += 1
        decision(
            log, "keys.switched", "%s: now signing with its new key (log index %d)", node_name(self.node), event.index,
            kind=KIND_SIGNING, index=event.index,
        )
        self._retire_later(KIND_SIGNING, old_key)

    def _switch_certificate(self, event: RegistryEvent) -> None:
        if self.tls_dir is None or self.host is None:
            self._rotation_problem("no tls_dir: this node cannot load its new certificate")
            return
        name = node_name(self.node)
        next_name = NEXT_CERTIFICATE.format(name=name)
        new_cert, new_key = self.tls_dir / f"{next_name}.crt", self.tls_dir / f"{next_name}.key"
        try:
            found = certificate_fingerprint_file(new_cert)
        except ConfigError as exc:
            self._rotation_problem(str(exc))
            return
        if found != event.key:
            self._rotation_problem(f"{new_cert} is not the certificate the registry activated")
            return
        live = self.registry.valid_keys(self.node, KIND_TLS)
        older = [k for k in live if k != event.key]
        os.replace(new_key, self.tls_dir / f"{name}.key")
        os.replace(new_cert, self.tls_dir / f"{name}.crt")
        self.host.reload_tls(TlsConfig.from_directory(self.tls_dir, name))
        self.counters["keys.own_certificate_rotations"] += 1
        decision(
            log, "keys.switched", "%s: presenting its new certificate from now on (log index %d)", name, event.index,
            kind=KIND_TLS, index=event.index,
        )
        for key in older:
            self._retire_later(KIND_TLS, key)

    def _retire_later(self, kind: str, key: bytes) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self._retire(kind, key)

        handle = loop.call_later(self.settings.retire_after_s, fire)
        self._timers.add(handle)

    def close(self) -> None:
        """The node is closing: no more proposals, no timers left behind."""
        self._stopped = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._evidence_timer is not None:
            self._evidence_timer.cancel()
            self._evidence_timer = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _retire(self, kind: str, key: bytes) -> None:
        if self._stopped or key not in self.registry.valid_keys(self.node, kind):
            return
        retirement = make_retirement(self.registry.cluster, int(self.node), kind, key, self.keyring.own_signer.seed)
        node = self.node

        def done() -> bool:
            return key not in self.registry.valid_keys(node, kind)

        self._queue(b"retire:" + kind.encode() + key, encode_registry_command(retirement), done)
        self._schedule_flush()

    def _rotation_problem(self, detail: str) -> None:
        self.counters["keys.rotation_problems"] += 1
        log.error("%s: key rotation: %s", node_name(self.node), detail)

    def _stop(self, reason: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._outbox.clear()
        log.critical("%s: %s; the node stops serving", node_name(self.node), reason)
        if self.host is not None:
            self.host.stop_serving(reason)

    # ------------------------------------------------------------ proposing
    def _queue(self, key: bytes, data: bytes, done: Callable[[], bool], machine: str = MACHINE_NAME) -> None:
        self._outbox[key] = (machine, data, done)

    def _drop_done(self) -> None:
        for key in [k for k, (_, _, done) in self._outbox.items() if done()]:
            del self._outbox[key]

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Propose (or relay) every command not yet done; retry later."""
        self._flush_scheduled = False
        self._drop_done()
        host = self.host
        if host is None or self._stopped or not self._outbox:
            return
        for machine, data, _ in list(self._outbox.values()):
            outcome = host.propose_extension(machine, data)
            if isinstance(outcome, Accepted | Queued):
                self.counters["keys.commands_proposed"] += 1
            elif isinstance(outcome, Redirect) and outcome.leader is not None and outcome.leader != self.node:
                host.send_relay(outcome.leader, SecurityRelay(machine, data))
                self.counters["keys.commands_relayed"] += 1
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(self.settings.relay_retry_s, self._retry_due)

    def _retry_due(self) -> None:
        self._retry = None
        self._flush()

    def on_relay(self, sender: NodeId, relay: SecurityRelay, now: float) -> None:
        """A member asks this node (the leader, it thinks) to propose its command."""
        if self.refuses(int(sender)) or not self._relay_limiter.allow(sender, now):
            self.counters["keys.relays_refused"] += 1
            return
        if relay.machine == DKG_MACHINE and len(relay.data) <= MAX_DKG_MESSAGE_BYTES + MAX_RELAY_BYTES:
            try:
                dkg_command = decode_dkg_command(relay.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.counters["keys.relays_refused"] += 1
                return
            # Only a participant's own messages are relayed (the machine checks the signature).
            if not isinstance(dkg_command, PostDkg | CloseDkgPhase) or dkg_command.sender != int(sender) or self.host is None:
                self.counters["keys.relays_refused"] += 1
                return
            if isinstance(self.host.propose_extension(DKG_MACHINE, relay.data), Accepted | Queued):
                self.counters["keys.relays_proposed"] += 1
            return
        if relay.machine != MACHINE_NAME or len(relay.data) > MAX_RELAY_BYTES:
            self.counters["keys.relays_refused"] += 1
            return
        try:
            command = decode_registry_command(relay.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.counters["keys.relays_refused"] += 1
            return
        if not isinstance(command, Approve | RetireKey) or self.host is None:
            self.counters["keys.relays_refused"] += 1
            return
        outcome = self.host.propose_extension(MACHINE_NAME, relay.data)
        if isinstance(outcome, Accepted | Queued):
            self.counters["keys.relays_proposed"] += 1

    # ------------------------------------------------------------ reporting
    @property
    def metrics(self) -> dict[str, int]:
        out = dict(self.counters)
        registry = self.registry
        out["keys.members"] = len(registry.members())
        out["keys.pending"] = len(registry.pending)
        out["keys.changes"] = registry.changes
        out["keys.refused"] = sum(registry.refused.values())
        for node, index in self._revoked.items():
            out[f"keys.revoked_at.{node_name(NodeId(node))}"] = index
        votes = self.votes.votes
        out["votes.proposals"] = len(votes.proposals())
        out["votes.refused"] = sum(votes.refused.values())
        outcomes = []
        ballots = 0
        for pid in votes.proposals():
            proposal = votes.proposal(pid)
            if proposal is None:
                continue
            ballots += len(proposal.ballots)
            if proposal.outcome is not None:
                outcomes.append((pid, proposal.outcome.yes, proposal.outcome.counted))
        out["votes.ballots"] = ballots
        out["votes.tallied"] = len(outcomes)
        # Replicas that accepted the same tallies show the same digest.
        digest = hashlib.sha256(repr(sorted(outcomes)).encode()).digest()
        out["votes.outcomes_digest"] = int.from_bytes(digest[:6], "big")
        dkg = self.dkg
        out["dkg.sessions"] = len(self.dkg_machine.sessions)
        out["dkg.done"] = len(dkg.results)
        out["dkg.failed"] = len(dkg.failures)
        out["dkg.refused"] = sum(self.dkg_machine.refused.values())
        out["evidence.on_record"] = len(self.evidence_machine.offenders)
        out["evidence.refused"] = sum(self.evidence_machine.refused.values())
        # Nodes that computed the same group keys show the same digest.
        keys = sorted((name, r.group_public_key) for name, r in dkg.results.items())
        out["dkg.keys_digest"] = int.from_bytes(hashlib.sha256(repr(keys).encode()).digest()[:6], "big")
        for name, session in self.dkg_machine.sessions.items():
            result = dkg.results.get(name)
            state = DKG_DONE if result is not None else DKG_FAILED if name in dkg.failures else DKG_RUNNING
            if int(self.node) not in session.encryption_keys:
                state = DKG_NOT_PARTICIPANT
            out[f"{DKG_SESSION_PREFIX}{name}.state"] = state
            if result is not None:
                digest = hashlib.sha256(result.group_public_key).digest()
                out[f"{DKG_SESSION_PREFIX}{name}.key"] = int.from_bytes(digest[:6], "big")
        return out


@dataclass(frozen=True, slots=True)
class NodeSecurityConfig:
    """The ``[security]`` table of a node config, validated: the settings of
    the security manager, the edge limits of the transport, the handshake
    timeout and the inbox bound."""

    settings: SecuritySettings = field(default_factory=SecuritySettings)
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    max_inbox: int = DEFAULT_MAX_INBOX


SECURITY_TABLE_EXTRAS = {
    "handshake_timeout_s": (
        DEFAULT_HANDSHAKE_TIMEOUT_S,
        "A connection must finish its TLS handshake and first frame within this many seconds "
        "(half-open connections are closed).",
    ),
    "max_inbox": (
        DEFAULT_MAX_INBOX,
        "Inputs a node holds between two turns; more are dropped and counted (inbox_drops).",
    ),
}
"""Keys of ``[security]`` that are neither settings nor edge limits: default and meaning."""


def security_table_fields() -> dict[str, tuple[type[Any], str]]:
    """Every key ``[security]`` accepts -> (the dataclass it belongs to, or
    ``NodeSecurityConfig`` for the extras, and its field name)."""
    out: dict[str, tuple[type[Any], str]] = {}
    for cls in (SecuritySettings, RegistryPolicy, EdgeLimits):
        for name in (f.name for f in dataclasses.fields(cls)):
            if name != "registry":
                out[name] = (cls, name)
    for name in SECURITY_TABLE_EXTRAS:
        out[name] = (NodeSecurityConfig, name)
    return out


def _typed(key: str, value: object, default: object) -> Any:
    """``value`` if it has ``default``'s type (an integer is a fine number)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = number
        value = float(value) if number else value  # type: ignore[arg-type]
    else:
        ok = isinstance(value, str)
    if not ok:
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[type(default)]
        raise ConfigError(f"[security] {key} must be {kind}, got {value!r}")
    return value


def parse_security_table(raw: Mapping[str, Any]) -> NodeSecurityConfig:
    """``[security]`` -> ``NodeSecurityConfig``; ``ConfigError`` naming a bad key."""
    known = security_table_fields()
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"unknown [security] key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    by_class: dict[type[Any], dict[str, Any]] = {}
    for key, value in raw.items():
        cls, name = known[key]
        default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
        by_class.setdefault(cls, {})[name] = _typed(key, value, default)
    try:
        registry = RegistryPolicy(**by_class.get(RegistryPolicy, {})).validate()
        settings = SecuritySettings(**by_class.get(SecuritySettings, {}), registry=registry).validate()
        limits = EdgeLimits(**by_class.get(EdgeLimits, {})).validate()
        extras = by_class.get(NodeSecurityConfig, {})
        config = NodeSecurityConfig(settings, limits, **extras)
    except ConfigError as exc:
        raise ConfigError(f"[security]: {exc}") from None
    if not config.handshake_timeout_s > 0 or config.max_inbox < 1:
        raise ConfigError("[security]: handshake_timeout_s must be > 0 seconds and max_inbox >= 1")
    return config
