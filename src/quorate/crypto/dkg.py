"""Distributed key generation and resharing for threshold BLS, with no dealer.

Theory of operation (Pedersen 1991, "joint Feldman"; the complaint rounds of
Gennaro–Jarecki–Krawczyk–Rabin 1999).

Every *dealer* runs the Feldman dealing of ``quorate.crypto.threshold.deal``
— a random polynomial f_d of degree t−1, public commitments C_dk = g1^{a_dk},
share s_dj = f_d(j) for receiver j — and broadcasts one ``Dealing``: the
commitments and each receiver's share encrypted to that receiver
(X25519 + XSalsa20-Poly1305, ``nacl.public.Box``). The group secret is
Σ_{d∈QUAL} f_d(0); nobody ever holds it: receiver j's share is
s_j = Σ_{d∈QUAL} s_dj and the group's commitments are Σ_d C_dk, so the result
is an ordinary ``ThresholdPublicKey`` and ``ThresholdSigner`` shares.

Phases. 1 *Dealing*: wait for every dealer's dealing. A dealing whose public
part is wrong (not t G1 points, a missing or extra receiver, or — when
resharing — a constant term that is not the dealer's old share key) is
rejected by everyone alike: its dealer is disqualified. 2 *Complaints*: every
receiver decrypts and checks its share of every dealing (``verify_share``)
and broadcasts the list of dealers whose share failed, possibly empty.
3 *Justifications*: an accused dealer reveals the accused shares in the clear;
everyone judges them (``judge_complaint``). A dealer that reveals a share off
its commitments, or does not answer, is disqualified; a good revealed share
is what the complainer uses. The dealers left are QUAL. A dealer that sends
two different dealings (or two conflicting revealed shares) is disqualified.

Resharing (Desmedt–Jajodia 1997; Herzberg et al. 1995) to a new member set
and a new threshold: the dealers are the old members, each sharing its *old
share* (f_d(0) = s_d, checked publicly: C_d0 must equal the old share key
g1^{s_d}); receiver j's new share is s'_j = Σ_{d∈QUAL} λ_d·s_dj with λ the
Lagrange coefficients of QUAL's old indices at 0, and C'_k = Σ λ_d·C_dk.
Then C'_0 = Σ λ_d·g1^{s_d} is the old group key: the key stays, the shares
and the threshold change, and old shares are useless with new ones.

Channel. The core is sans-IO: ``start``, ``step(sender, message)`` and
``close_phase()`` in, ``ready()`` out (messages to broadcast, rejected inputs,
the result). It assumes what a consensus log gives (an HRB core runs it at
an epoch change): every participant sees the same messages from each sender.
Within a phase the order does not matter (a message for a later phase is
held until that phase opens); a phase ends when every expected message is in
or when the driver calls ``close_phase()`` at an agreed point of the log (a
timeout); what arrives after is late and dropped, alike everywhere. The
result is a deterministic function of the inputs and the injected random
source.

Security notes. A rushing adversary can bias the distribution of a joint-
Feldman key (GJKR 1999); threshold BLS stays secure with such keys (GJKR,
"Secure applications of Pedersen's distributed key generation protocol",
CT-RSA 2003). At most t−1 corrupted participants learn nothing of the
secret; t shares sign. A revealed share is the complainer's own (a corrupt
complainer learns only what it already could).

Invariants: a participant's result has the same public key at every honest
participant; resharing never changes the group key; ``step`` never raises on
peer input (bad input is dropped with a ``Rejection``).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.public
from blspy import G1Element

from quorate.core.ready import Rejection
from quorate.core.wire import WireMessage
from quorate.crypto.bls12381 import (
    GROUP_ORDER,
    SCALAR_SIZE_BYTES,
    decode_g1,
    g1_identity,
    g1_mul_generator,
    lagrange_at_zero,
    multi_scalar_mult,
    private_key,
)
from quorate.crypto.threshold import (
    Blame,
    Complaint,
    FeldmanDealing,
    KeyShare,
    ThresholdPublicKey,
    deal,
    judge_complaint,
    verify_share,
)
from quorate.errors import ConfigError, LocalProtocolError, invariant
from quorate.ids import NodeId

RandomBytes = Callable[[int], bytes]
"""A source of randomness: ``n -> n random bytes`` (``secrets.token_bytes``)."""

ENCRYPTION_KEY_SIZE_BYTES = 32
"""An X25519 public or secret key."""
_DEAL_SEED_SIZE_BYTES = 32
_NONCE_DOMAIN = b"quorate/dkg/share-nonce/v1"


# -- messages -----------------------------------------------------------------
class Dealing(WireMessage, tag="dkg.Dealing", frozen=True):
    """A dealer's commitments (t G1 points) and each receiver's encrypted share."""

    session: bytes
    commitments: tuple[bytes, ...]
    shares: tuple[tuple[int, bytes], ...]
    """(receiver, ciphertext), one per receiver, in increasing receiver order."""


class Complaints(WireMessage, tag="dkg.Complaints", frozen=True):
    """A receiver's verdict on the dealings: the dealers whose share failed."""

    session: bytes
    accused: tuple[int, ...]


class Justification(WireMessage, tag="dkg.Justification", frozen=True):
    """An accused dealer's answer: the accused shares, revealed."""

    session: bytes
    revealed: tuple[tuple[int, bytes], ...]
    """(complaining receiver, its share s_dj as 32 big-endian bytes)."""


DKG_MESSAGE_TYPES: tuple[type[WireMessage], ...] = (Dealing, Complaints, Justification)
DkgMessage = Dealing | Complaints | Justification


class Phase(enum.Enum):
    """Where a run is. Ends in DONE (a result) or FAILED (too few dealers)."""

    DEALING = "dealing"
    COMPLAINTS = "complaints"
    JUSTIFICATIONS = "justifications"
    DONE = "done"
    FAILED = "failed"


_PHASE_OF: dict[type, Phase] = {
    Dealing: Phase.DEALING,
    Complaints: Phase.COMPLAINTS,
    Justification: Phase.JUSTIFICATIONS,
}
_ORDER = [Phase.DEALING, Phase.COMPLAINTS, Phase.JUSTIFICATIONS, Phase.DONE]


# -- configuration ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Resharing:
    """The sharing being replaced: its members (old share i belongs to the
    i-th smallest member) and its public key."""

    members: tuple[NodeId, ...]
    public_key: ThresholdPublicKey

    def index_of(self, node: NodeId) -> int:
        return sorted(self.members).index(node) + 1


@dataclass(frozen=True, slots=True)
class DkgConfig:
    """One run, the same at every participant.

    ``session`` names the run and must never repeat (an epoch number and a
    hash of the membership, say). ``members`` receive shares of a
    ``threshold``-of-len(members) key: member j holds share index j (the
    j-th smallest id). ``encryption_keys`` are every participant's X25519
    public keys. Without ``resharing`` the members also deal (a fresh key);
    with it, the old members deal their old shares (the key stays).
    """

    session: bytes
    members: tuple[NodeId, ...]
    threshold: int
    encryption_keys: Mapping[NodeId, bytes]
    resharing: Resharing | None = None

    def __post_init__(self) -> None:
        if not self.session:
            raise ConfigError("a DKG session id must not be empty")
        if len(set(self.members)) != len(self.members) or not self.members:
            raise ConfigError("DKG members must be distinct and at least one")
        if not 1 <= self.threshold <= len(self.members):
            raise ConfigError(
                f"a threshold must satisfy 1 <= t <= n, got t={self.threshold}, "
                f"n={len(self.members)}"
            )
        for node in self.participants:
            key = self.encryption_keys.get(node)
            if not isinstance(key, bytes) or len(key) != ENCRYPTION_KEY_SIZE_BYTES:
                raise ConfigError(
                    f"participant {node} needs a {ENCRYPTION_KEY_SIZE_BYTES}-byte X25519 key"
                )
        if self.resharing is not None and self.resharing.public_key.n != len(
            self.resharing.members
        ):
            raise ConfigError("the old public key's n must match the old member count")

    @property
    def dealers(self) -> tuple[NodeId, ...]:
        source = self.members if self.resharing is None else self.resharing.members
        return tuple(sorted(source))

    @property
    def receivers(self) -> tuple[NodeId, ...]:
        return tuple(sorted(self.members))

    @property
    def participants(self) -> tuple[NodeId, ...]:
        return tuple(sorted(set(self.dealers) | set(self.receivers)))

    def share_index(self, receiver: NodeId) -> int:
        return self.receivers.index(receiver) + 1


@dataclass(frozen=True, slots=True)
class DkgResult:
    """The outcome at one participant: the group's public side (the same
    everywhere), this participant's share (None if it is not a member, or
    if its complaint against a qualified dealer missed the agreed end of the
    complaint phase), the qualified dealers and why the others were
    disqualified."""

    session: bytes
    public_key: ThresholdPublicKey
    share: KeyShare | None
    qualified: tuple[NodeId, ...]
    disqualified: Mapping[NodeId, str]

    @property
    def group_public_key(self) -> bytes:
        return self.public_key.group_public_key


@dataclass(slots=True)
class DkgReady:
    """What the driver must do: broadcast ``broadcasts`` to every participant
    (through the consensus log), and note the ``rejected`` inputs. ``result``
    or ``failure`` is set once, when the run ends."""

    broadcasts: list[DkgMessage] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    result: DkgResult | None = None
    failure: str | None = None


def encryption_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """(secret, public) X25519 keys fixed by ``seed`` (tests and the simulator)."""
    secret = nacl.public.PrivateKey.from_seed(hashlib.sha256(b"quorate/dkg/x25519" + seed).digest())
    return bytes(secret), bytes(secret.public_key)


def _nonce(session: bytes, dealer: NodeId, receiver: NodeId, commitments: Sequence[bytes]) -> bytes:
    digest = hashlib.sha256(_NONCE_DOMAIN)
    for part in (session, int(dealer).to_bytes(8, "big"), int(receiver).to_bytes(8, "big")):
        digest.update(len(part).to_bytes(4, "big") + part)
    for c in commitments:
        digest.update(c)
    return digest.digest()[: nacl.public.Box.NONCE_SIZE]


# -- the participant ------------------------------------------------------------
class DkgParticipant:
    """One participant's view of one DKG (or resharing) run.

    ``encryption_secret`` is this node's X25519 secret key; ``old_share`` is
    its share of the old key when it deals in a resharing; ``random_bytes``
    draws the dealing polynomial (``secrets.token_bytes`` in production).
    """

    def __init__(
        self,
        config: DkgConfig,
        me: NodeId,
        encryption_secret: bytes,
        random_bytes: RandomBytes,
        old_share: KeyShare | None = None,
    ) -> None:
        if me not in config.participants:
            raise ConfigError(f"node {me} does not take part in DKG session {config.session!r}")
        secret = nacl.public.PrivateKey(encryption_secret)
        if bytes(secret.public_key) != config.encryption_keys[me]:
            raise ConfigError(f"node {me}'s encryption secret does not match its public key")
        self.config = config
        self.me = me
        self.phase = Phase.DEALING
        self._secret = secret
        self._random_bytes = random_bytes
        self._boxes: dict[NodeId, nacl.public.Box] = {}
        resharing = config.resharing
        self._is_dealer = me in config.dealers
        if (
            resharing is not None
            and self._is_dealer
            and (old_share is None or old_share.index != resharing.index_of(me))
        ):
            raise ConfigError(
                f"node {me} deals in a resharing and needs its old share "
                f"(index {resharing.index_of(me)})"
            )
        self._old_share = old_share
        self._started = False
        self._dealings: dict[NodeId, Dealing] = {}
        self._my_shares: dict[NodeId, int] = {}
        self._disqualified: dict[NodeId, str] = {}
        self._complaints: dict[NodeId, set[NodeId]] = {}  # dealer -> complaining receivers
        self._complained: set[NodeId] = set()  # receivers whose Complaints arrived
        self._revealed: dict[NodeId, dict[NodeId, set[bytes]]] = {}  # dealer -> receiver -> shares
        self._answered: set[NodeId] = set()
        self._held: list[tuple[NodeId, DkgMessage]] = []
        self._ready = DkgReady()
        self.result: DkgResult | None = None
        self.failure: str | None = None

    # -- inputs ---------------------------------------------------------------------
    def start(self) -> None:
        """Deal (if this node is a dealer). Call once."""
        if self._started:
            raise LocalProtocolError("a DKG participant starts once")
        self._started = True
        if not self._is_dealer:
            return
        self._ready.broadcasts.append(self._seal(self._make_dealing()))

    def _make_dealing(self) -> FeldmanDealing:
        """This dealer's polynomial: random, or (resharing) through its old share."""
        return deal(
            self.config.threshold,
            len(self.config.receivers),
            seed=self._random_bytes(_DEAL_SEED_SIZE_BYTES),
            secret_key=None if self._old_share is None else self._old_share.secret_key,
        )

    def _seal(self, dealing: FeldmanDealing) -> Dealing:
        """The broadcast form: commitments, and each share encrypted to its receiver."""
        config = self.config
        shares = []
        for receiver, share in zip(config.receivers, dealing.shares, strict=True):
            nonce = _nonce(config.session, self.me, receiver, dealing.commitments)
            sealed = self._box(receiver).encrypt(share.secret_key, nonce).ciphertext
            shares.append((int(receiver), bytes(sealed)))
        return Dealing(config.session, dealing.commitments, tuple(shares))

    def step(self, sender: NodeId, message: object) -> None:
        """A broadcast message from ``sender`` (this node's own included)."""
        kind = type(message).__name__
        if not isinstance(message, Dealing | Complaints | Justification):
            self._reject(sender, kind, "not a DKG message")
            return
        if sender not in self.config.participants:
            self._reject(sender, kind, "sender takes no part in this run")
            return
        if message.session != self.config.session:
            self._reject(sender, kind, "another session")
            return
        phase = _PHASE_OF[type(message)]
        if self.phase in (Phase.DONE, Phase.FAILED) or _ORDER.index(phase) < _ORDER.index(
            self.phase
        ):
            self._reject(sender, kind, f"late: the {phase.value} phase is over")
            return
        if phase != self.phase:
            self._held.append((sender, message))
            return
        self._handle(sender, message)
        self._maybe_close()

    def close_phase(self) -> None:
        """End the current phase now (the agreed timeout): what is missing stays missing."""
        if self.phase in (Phase.DONE, Phase.FAILED):
            return
        self._close()

    def ready(self) -> DkgReady:
        """Take what the driver must do (and reset it)."""
        out, self._ready = self._ready, DkgReady()
        return out

    # -- handling messages -----------------------------------------------------------
    def _handle(self, sender: NodeId, message: DkgMessage) -> None:
        if isinstance(message, Dealing):
            self._on_dealing(sender, message)
        elif isinstance(message, Complaints):
            self._on_complaints(sender, message)
        else:
            self._on_justification(sender, message)

    def _on_dealing(self, dealer: NodeId, dealing: Dealing) -> None:
        if dealer not in self.config.dealers:
            self._reject(dealer, "Dealing", "sender is not a dealer")
            return
        previous = self._dealings.get(dealer)
        if previous is not None:
            if previous != dealing:
                # Equivocation is the reason whichever dealing came first, so
                # every participant records the same one.
                self._disqualified[dealer] = "equivocation: two different dealings"
            else:
                self._reject(dealer, "Dealing", "duplicate")
            return
        self._dealings[dealer] = dealing
        fault = self._dealing_fault(dealer, dealing)
        if fault is not None:
            self._disqualify(dealer, fault)

    def _dealing_fault(self, dealer: NodeId, dealing: Dealing) -> str | None:
        """What is publicly wrong with a dealing (everyone finds the same)."""
        config = self.config
        commitments = dealing.commitments
        if not isinstance(commitments, tuple) or len(commitments) != config.threshold:
            return f"malformed dealing: needs {config.threshold} commitments"
        points = [decode_g1(c) for c in commitments]
        if any(p is None for p in points):
            return "malformed dealing: a commitment is not a G1 point"
        if not isinstance(dealing.shares, tuple) or [
            r for r, _ in _pairs(dealing.shares)
        ] != [int(r) for r in config.receivers]:
            return "malformed dealing: not one encrypted share per receiver"
        if config.resharing is not None:
            old_key = config.resharing.public_key.share_public_key(
                config.resharing.index_of(dealer)
            )
            if commitments[0] != old_key:
                return "resharing dealing does not share the dealer's old share"
        return None

    def _on_complaints(self, receiver: NodeId, complaints: Complaints) -> None:
        if receiver not in self.config.receivers:
            self._reject(receiver, "Complaints", "sender is not a receiver")
            return
        if not isinstance(complaints.accused, tuple) or not all(
            isinstance(d, int) for d in complaints.accused
        ):
            self._reject(receiver, "Complaints", "malformed")
            return
        self._complained.add(receiver)
        for dealer in complaints.accused:
            # Complaints about a dealer everyone already excluded change nothing.
            if NodeId(dealer) in self._dealings and NodeId(dealer) not in self._disqualified:
                self._complaints.setdefault(NodeId(dealer), set()).add(receiver)

    def _on_justification(self, dealer: NodeId, justification: Justification) -> None:
        if dealer not in self._complaints or dealer in self._disqualified:
            self._reject(dealer, "Justification", "no complaint to answer")
            return
        revealed = self._revealed.setdefault(dealer, {})
        for receiver, share in _pairs(justification.revealed):
            revealed.setdefault(NodeId(receiver), set()).add(share)
        self._answered.add(dealer)

    # -- phases ----------------------------------------------------------------
    def _expected(self) -> set[NodeId]:
        if self.phase == Phase.DEALING:
            return set(self.config.dealers) - set(self._dealings)
        if self.phase == Phase.COMPLAINTS:
            return set(self.config.receivers) - self._complained
        return {d for d in self._complaints if d not in self._disqualified} - self._answered

    def _maybe_close(self) -> None:
        if self.phase not in (Phase.DONE, Phase.FAILED) and not self._expected():
            self._close()

    def _close(self) -> None:
        if self.phase == Phase.DEALING:
            for dealer in self.config.dealers:
                if dealer not in self._dealings:
                    self._disqualify(dealer, "no dealing")
            self.phase = Phase.COMPLAINTS
            if self.me in self.config.receivers:
                self._ready.broadcasts.append(
                    Complaints(self.config.session, tuple(int(d) for d in self._check_my_shares()))
                )
        elif self.phase == Phase.COMPLAINTS:
            self.phase = Phase.JUSTIFICATIONS
            accused = sorted(d for d in self._complaints if d not in self._disqualified)
            if self.me in accused:
                self._ready.broadcasts.append(self._justify())
        elif self.phase == Phase.JUSTIFICATIONS:
            self._judge()
            self._finish()
            return
        self._release_held()
        self._maybe_close()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for sender, message in held:
            if _PHASE_OF[type(message)] == self.phase:
                self._handle(sender, message)
            else:
                self._held.append((sender, message))

    def _check_my_shares(self) -> list[NodeId]:
        """Decrypt and check this receiver's share of every dealing still in;
        the dealers to complain about."""
        accused = []
        index = self.config.share_index(self.me)
        for dealer, dealing in sorted(self._dealings.items()):
            if dealer in self._disqualified:
                continue
            share = self._open_share(dealer, dealing)
            if share is None or not verify_share(dealing.commitments, KeyShare(index, share)):
                accused.append(dealer)
            else:
                self._my_shares[dealer] = int.from_bytes(share, "big")
        return accused

    def _open_share(self, dealer: NodeId, dealing: Dealing) -> bytes | None:
        ciphertext = dict(_pairs(dealing.shares)).get(int(self.me))
        if ciphertext is None:
            return None
        nonce = _nonce(self.config.session, dealer, self.me, dealing.commitments)
        try:
            plaintext = self._box(dealer).decrypt(ciphertext, nonce)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            return None
        return plaintext if len(plaintext) == SCALAR_SIZE_BYTES else None

    def _justify(self) -> Justification:
        dealing = self._dealings[self.me]
        revealed = []
        for receiver in sorted(self._complaints[self.me]):
            nonce = _nonce(self.config.session, self.me, receiver, dealing.commitments)
            ciphertext = dict(_pairs(dealing.shares))[int(receiver)]
            revealed.append((int(receiver), self._box(receiver).decrypt(ciphertext, nonce)))
        return Justification(self.config.session, tuple(revealed))

    def _judge(self) -> None:
        for dealer, receivers in sorted(self._complaints.items()):
            if dealer in self._disqualified:
                continue
            commitments = self._dealings[dealer].commitments
            revealed = self._revealed.get(dealer, {})
            for receiver in sorted(receivers):
                shares = revealed.get(receiver, set())
                if len(shares) > 1:
                    self._disqualify(dealer, f"equivocation: two shares revealed for {receiver}")
                    break
                index = self.config.share_index(receiver)
                share = next(iter(shares), None)
                candidate = None if share is None else KeyShare(index, share)
                blame = judge_complaint(commitments, Complaint(dealer, index), candidate)
                if blame is Blame.DEALER:
                    reason = "did not answer" if share is None else "revealed a bad share"
                    self._disqualify(dealer, f"{reason} for the complaint of node {receiver}")
                    break
                if receiver == self.me and share is not None:
                    self._my_shares[dealer] = int.from_bytes(share, "big")

    def _finish(self) -> None:
        config = self.config
        qualified = tuple(d for d in config.dealers if d not in self._disqualified)
        needed = config.threshold if config.resharing is None else config.resharing.public_key.threshold
        if len(qualified) < needed:
            self.phase = Phase.FAILED
            self.failure = f"only {len(qualified)} qualified dealers, {needed} needed"
            self._ready.failure = self.failure
            return
        if config.resharing is None:
            weights = [1] * len(qualified)
        else:
            weights = lagrange_at_zero([config.resharing.index_of(d) for d in qualified])
        commitments = self._combine_commitments(qualified, weights)
        public_key = ThresholdPublicKey(config.threshold, len(config.receivers), commitments)
        if config.resharing is not None:
            invariant(
                public_key.group_public_key == config.resharing.public_key.group_public_key,
                "resharing changed the group public key",
            )
        share = None
        # A receiver whose complaint missed the agreed end of the complaint
        # phase has no good share from that dealer: it gets the public key
        # but no share (and must be reshared to later).
        if self.me in config.receivers and all(d in self._my_shares for d in qualified):
            value = sum(w * self._my_shares[d] for w, d in zip(weights, qualified)) % GROUP_ORDER
            index = config.share_index(self.me)
            share = KeyShare(index, bytes(private_key(value)))
            invariant(
                bytes(g1_mul_generator(value)) == public_key.share_public_key(index),
                "a combined share is off the combined commitments",
            )
        self.result = DkgResult(
            config.session, public_key, share, qualified, dict(sorted(self._disqualified.items()))
        )
        self.phase = Phase.DONE
        self._ready.result = self.result

    def _combine_commitments(
        self, qualified: Sequence[NodeId], weights: Sequence[int]
    ) -> list[bytes]:
        out = []
        for k in range(self.config.threshold):
            points: list[G1Element] = []
            for dealer in qualified:
                point = decode_g1(self._dealings[dealer].commitments[k])
                invariant(point is not None, "a qualified dealing has a bad commitment")
                assert point is not None
                points.append(point)
            if self.config.resharing is None:
                total = g1_identity()
                for point in points:
                    total = total + point
            else:
                total = multi_scalar_mult(points, list(weights), g1_identity())
            out.append(bytes(total))
        return out

    # -- bookkeeping ---------------------------------------------------------------
    def _disqualify(self, dealer: NodeId, reason: str) -> None:
        self._disqualified.setdefault(dealer, reason)

    def _reject(self, sender: NodeId, kind: str, reason: str) -> None:
        self._ready.rejected.append(Rejection(sender, kind, reason))

    def _box(self, peer: NodeId) -> nacl.public.Box:
        box = self._boxes.get(peer)
        if box is None:
            box = nacl.public.Box(
                self._secret, nacl.public.PublicKey(self.config.encryption_keys[peer])
            )
            self._boxes[peer] = box
        return box

    @property
    def disqualified(self) -> Mapping[NodeId, str]:
        """The dealers disqualified so far, with the reason."""
        return dict(self._disqualified)


def _pairs(items: object) -> list[tuple[int, bytes]]:
    """``(int, bytes)`` pairs out of a peer's tuple; anything else is dropped,
    so a malformed entry counts as missing."""
    if not isinstance(items, tuple | list):
        return []
    return [
        (p[0], p[1])
        for p in items
        if isinstance(p, tuple | list)
        and len(p) == 2
        and isinstance(p[0], int)
        and isinstance(p[1], bytes)
    ]


def run_in_memory(participants: Mapping[NodeId, DkgParticipant]) -> None:
    """Run ``participants`` to the end in one process: every broadcast goes
    to every participant (its sender too) in the order it was made, and when
    nothing is in flight the open phases are closed everywhere at once (the
    agreed timeout). For benchmarks, tests and tools; a real group runs the
    participants over its consensus log."""
    in_flight: list[tuple[NodeId, DkgMessage]] = []

    def collect(node: NodeId) -> None:
        in_flight.extend((node, message) for message in participants[node].ready().broadcasts)

    for node, participant in participants.items():
        participant.start()
        collect(node)
    while True:
        if not in_flight:
            open_runs = [
                n for n, p in participants.items() if p.phase not in (Phase.DONE, Phase.FAILED)
            ]
            if not open_runs:
                return
            for node in open_runs:
                participants[node].close_phase()
                collect(node)
            continue
        sender, message = in_flight.pop(0)
        for node, participant in participants.items():
            participant.step(sender, message)
            collect(node)
