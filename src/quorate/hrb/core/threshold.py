"""The core's threshold signatures and key generation, behind one interface
(``ThresholdSuite``), so real nodes use BLS and the simulator its cost model.

Theory of operation. An epoch's core signs its decisions with a t-of-C key
(t = 2f + 1). What the core needs from a scheme:

- ``EpochKey``: the public side of one epoch's key — check a member's partial
  signature, combine t partials into the group signature (optimistically: one
  check when the partials are good, ``quorate.crypto.threshold``), check a
  group signature;
- ``PartialSigner``: one member's share, signing partials;
- ``verify_group``: anyone's check of a group signature with the epoch's
  group public key alone (what a shard does with a ``CoreCertificate``);
- ``KeyGeneration``: one participant of the distributed key generation that
  makes the next epoch's key, run through the core's log: messages are bytes
  to this module (each suite encodes its own), ``close_phase(name)`` ends the
  named phase only if the run is still in it (the core orders phase timeouts
  by name, so a late timeout never closes the phase after it).

Two suites implement it: ``quorate.hrb.core.threshold_bls.BlsSuite`` (blspy:
``ThresholdPublicKey``, ``ThresholdSigner`` and ``DkgParticipant`` of
``quorate.crypto``) and ``CostModelSuite`` here (``CostModelThreshold``:
keyed hashes that still refuse forgeries and fewer than t partials, with the
CPU time of the real primitives charged to the node's ``CpuMeter``; its key
generation exchanges messages of the real sizes through the same phases but
deals no real shares and charges no CPU: epoch changes are rare and the
dealing cost is not part of the cost model's measured figures).

This module imports no blspy, so the core runs where blspy is missing (the
cost model needs none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from quorate.core.ready import Rejection
from quorate.core.wire import WireMessage
from quorate.crypto.costmodel import CostModelKeys, CostModelThreshold, CpuMeter, CryptoCosts
from quorate.errors import ConfigError, LocalProtocolError
from quorate.ids import NodeId

__all__ = [
    "PHASES",
    "CostModelSuite",
    "EpochKey",
    "KeyGenConfig",
    "KeyGenReady",
    "KeyGenResult",
    "KeyGeneration",
    "PartialSigner",
    "ThresholdSuite",
]

PHASES = ("dealing", "complaints", "justifications")
"""The phases of a key generation, in order (``quorate.crypto.dkg.Phase``)."""
GROUP_KEY_SIZE_BYTES = 48
"""A BLS12-381 G1 point: the size of a group public key and of a commitment."""
SHARE_SIZE_BYTES = 32
SEALED_SHARE_SIZE_BYTES = SHARE_SIZE_BYTES + 16
"""A share encrypted to its receiver (XSalsa20-Poly1305 adds a 16-byte tag)."""

RandomBytes = Callable[[int], bytes]


class EpochKey(Protocol):
    """The public side of one epoch's t-of-n key."""

    @property
    def threshold(self) -> int: ...

    @property
    def n(self) -> int: ...

    @property
    def group_public_key(self) -> bytes: ...

    @property
    def commitments(self) -> tuple[bytes, ...]: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...

    def verify_partial(self, index: int, message: bytes, partial: bytes) -> bool: ...

    def combine(self, message: bytes, partials: Mapping[int, bytes]) -> tuple[bytes | None, list[int]]:
        """``(group signature or None, bad share indices)`` from partials
        (share index -> partial); the signature returned verifies."""
        ...


class PartialSigner(Protocol):
    """One member's share of an epoch's key."""

    @property
    def index(self) -> int: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class KeyGenConfig:
    """One key generation run, the same at every participant: ``members``
    receive shares (member j holds share index j, the j-th smallest id) of
    a ``threshold``-of-len(members) key; ``encryption_keys`` are their X25519
    public keys."""

    session: bytes
    members: tuple[NodeId, ...]
    threshold: int
    encryption_keys: Mapping[NodeId, bytes]


@dataclass(frozen=True, slots=True)
class KeyGenResult:
    """A participant's outcome: the key's public side and its own share."""

    session: bytes
    threshold: int
    n: int
    commitments: tuple[bytes, ...]
    share_index: int | None
    share_secret: bytes | None
    qualified: tuple[NodeId, ...]

    @property
    def group_public_key(self) -> bytes:
        return self.commitments[0]


@dataclass(slots=True)
class KeyGenReady:
    """What a key generation participant asks: broadcast ``broadcasts``
    (encoded messages) through the core's log; note ``rejected``; a run ends
    with ``result`` or ``failure``."""

    broadcasts: list[bytes] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    result: KeyGenResult | None = None
    failure: str | None = None


class KeyGeneration(Protocol):
    """One participant of a key generation run (``quorate.crypto.dkg``'s shape)."""

    @property
    def phase(self) -> str:
        """One of ``PHASES``, or ``done`` / ``failed``."""
        ...

    def start(self) -> None: ...

    def step(self, sender: NodeId, message: bytes) -> None: ...

    def close_phase(self, phase: str) -> None:
        """End ``phase`` now if the run is still in it."""
        ...

    def ready(self) -> KeyGenReady: ...


class ThresholdSuite(Protocol):
    """A threshold signature scheme and its key generation."""

    @property
    def name(self) -> str: ...

    def epoch_key(self, threshold: int, n: int, commitments: Sequence[bytes]) -> EpochKey:
        """The public key of a dealing; ``ConfigError`` if malformed."""
        ...

    def partial_signer(self, key: EpochKey, index: int, secret: bytes) -> PartialSigner:
        """Share ``index`` of ``key``, whose secret is ``secret``."""
        ...

    def verify_group(self, group_public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is the group's over ``message``; never raises."""
        ...

    def key_generation(
        self, config: KeyGenConfig, me: NodeId, encryption_secret: bytes, random_bytes: RandomBytes
    ) -> KeyGeneration: ...

    def deal(
        self, threshold: int, members: Sequence[NodeId], seed: bytes
    ) -> tuple[tuple[bytes, ...], dict[NodeId, tuple[int, bytes]]]:
        """A trusted dealing (genesis and tests): commitments and member ->
        (share index, secret)."""
        ...


# -- the cost model ------------------------------------------------------------------
_COST_GROUP_DOMAIN = b"quorate/hrb/costmodel-group/v1"


class CostModelEpochKey:
    """An ``EpochKey`` over ``CostModelThreshold``."""

    __slots__ = ("_commitments", "scheme")

    def __init__(self, scheme: CostModelThreshold, commitments: tuple[bytes, ...]) -> None:
        self.scheme = scheme
        self._commitments = commitments

    @property
    def threshold(self) -> int:
        return self.scheme.threshold

    @property
    def n(self) -> int:
        return self.scheme.n

    @property
    def group_public_key(self) -> bytes:
        return self._commitments[0]

    @property
    def commitments(self) -> tuple[bytes, ...]:
        return self._commitments

    def verify(self, message: bytes, signature: bytes) -> bool:
        return self.scheme.verify(message, signature)

    def verify_partial(self, index: int, message: bytes, partial: bytes) -> bool:
        return self.scheme.verify_partial(index, message, partial)

    def combine(self, message: bytes, partials: Mapping[int, bytes]) -> tuple[bytes | None, list[int]]:
        try:
            signature: bytes | None = self.scheme.combine(message, partials)
        except LocalProtocolError:
            signature = None
        if signature is not None and self.scheme.verify(message, signature):
            return signature, []
        bad = sorted(i for i, p in partials.items() if not self.scheme.verify_partial(i, message, p))
        good = {i: p for i, p in partials.items() if i not in bad}
        if len(good) < self.scheme.threshold:
            return None, bad
        return self.scheme.combine(message, good), bad


class _CostModelPartialSigner:
    __slots__ = ("_index", "_scheme")

    def __init__(self, scheme: CostModelThreshold, index: int) -> None:
        self._scheme = scheme
        self._index = index

    @property
    def index(self) -> int:
        return self._index

    def sign(self, message: bytes) -> bytes:
        return self._scheme.sign_partial(self._index, message)


class CostDealing(WireMessage, tag="hrb.cost.Dealing", frozen=True):
    """A cost-model dealing: the real message's shape and size."""

    session: bytes
    commitments: tuple[bytes, ...]
    shares: tuple[tuple[int, bytes], ...]


class CostComplaints(WireMessage, tag="hrb.cost.Complaints", frozen=True):
    session: bytes
    accused: tuple[int, ...]


_cost_decoder = msgspec.msgpack.Decoder(CostDealing | CostComplaints)
_encoder = msgspec.msgpack.Encoder()


class CostModelKeyGeneration:
    """A key generation participant for the cost model: every member deals
    (a ``CostDealing`` of the real size), every member sends an empty
    ``CostComplaints``, there is nothing to justify; the qualified dealers
    are those whose dealing was in when the dealing phase closed, and the
    group key is derived from the session and them (the suite's registry
    turns it into a ``CostModelThreshold``)."""

    def __init__(self, suite: CostModelSuite, config: KeyGenConfig, me: NodeId) -> None:
        if me not in config.members:
            raise ConfigError(f"node {me} does not take part in key generation {config.session!r}")
        self._suite = suite
        self.config = config
        self.me = me
        self._phase = "dealing"
        self._dealt: list[NodeId] = []
        self._complained: set[NodeId] = set()
        self._ready = KeyGenReady()
        self._held: list[tuple[NodeId, CostDealing | CostComplaints]] = []
        self._started = False

    @property
    def phase(self) -> str:
        return self._phase

    def start(self) -> None:
        if self._started:
            raise LocalProtocolError("a key generation participant starts once")
        self._started = True
        commitments = tuple(
            hashlib.sha256(self.config.session + int(self.me).to_bytes(8, "big") + bytes([k])).digest().ljust(GROUP_KEY_SIZE_BYTES, b"\0")
            for k in range(self.config.threshold)
        )
        shares = tuple((int(r), bytes(SEALED_SHARE_SIZE_BYTES)) for r in sorted(self.config.members))
        self._ready.broadcasts.append(_encoder.encode(CostDealing(self.config.session, commitments, shares)))

    def step(self, sender: NodeId, message: bytes) -> None:
        try:
            decoded = _cost_decoder.decode(message)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._ready.rejected.append(Rejection(sender, "bytes", "not a cost-model key generation message"))
            return
        if sender not in self.config.members or decoded.session != self.config.session:
            self._ready.rejected.append(Rejection(sender, type(decoded).__name__, "not of this run"))
            return
        if self._phase in ("done", "failed"):
            return
        wanted = "dealing" if isinstance(decoded, CostDealing) else "complaints"
        if PHASES.index(wanted) < PHASES.index(self._phase):
            self._ready.rejected.append(Rejection(sender, type(decoded).__name__, f"late: the {wanted} phase is over"))
            return
        if wanted != self._phase:
            self._held.append((sender, decoded))
            return
        self._handle(sender, decoded)

    def _handle(self, sender: NodeId, message: CostDealing | CostComplaints) -> None:
        if isinstance(message, CostDealing):
            if sender not in self._dealt:
                self._dealt.append(sender)
            if len(self._dealt) == len(self.config.members):
                self._close()
        else:
            self._complained.add(sender)
            if len(self._complained) == len(self.config.members):
                self._close()

    def close_phase(self, phase: str) -> None:
        if phase == self._phase:
            self._close()

    def _close(self) -> None:
        if self._phase == "dealing":
            self._phase = "complaints"
            self._ready.broadcasts.append(_encoder.encode(CostComplaints(self.config.session, ())))
            held, self._held = self._held, []
            for sender, message in held:
                self._handle(sender, message)
        elif self._phase == "complaints":
            # Nothing to justify in the cost model: the run ends here.
            self._finish()
        elif self._phase == "justifications":
            self._finish()

    def _finish(self) -> None:
        qualified = tuple(sorted(self._dealt))
        if len(qualified) < self.config.threshold:
            self._phase = "failed"
            self._ready.failure = f"only {len(qualified)} qualified dealers, {self.config.threshold} needed"
            return
        commitments = self._suite.commitments_for(self.config.session, qualified, self.config.threshold)
        index = sorted(self.config.members).index(self.me) + 1
        self._phase = "done"
        self._ready.result = KeyGenResult(
            session=self.config.session,
            threshold=self.config.threshold,
            n=len(self.config.members),
            commitments=commitments,
            share_index=index,
            share_secret=b"",
            qualified=qualified,
        )

    def ready(self) -> KeyGenReady:
        out, self._ready = self._ready, KeyGenReady()
        return out


class CostModelSuite:
    """The simulator's ``ThresholdSuite``: one per node (its ``meter``), all
    built from one run ``seed`` so every node derives the same keys. A group
    public key names its key: the group secret is derived from the seed and
    the key (the simulator is the oracle that knows every key)."""

    name = "costmodel"

    def __init__(self, seed: bytes, *, costs: CryptoCosts | None = None, meter: CpuMeter | None = None) -> None:
        self._seed = hashlib.sha256(b"quorate/hrb/costmodel-suite/v1" + seed).digest()
        self.costs = costs or CryptoCosts()
        self.meter = meter or CpuMeter()
        self._schemes: dict[tuple[bytes, int, int], CostModelThreshold] = {}

    def _scheme(self, group_public_key: bytes, threshold: int, n: int) -> CostModelThreshold:
        slot = (group_public_key, threshold, n)
        scheme = self._schemes.get(slot)
        if scheme is None:
            keys = CostModelKeys(self._seed + group_public_key)
            scheme = self._schemes[slot] = CostModelThreshold(keys, threshold, n, self.costs, self.meter)
        return scheme

    def commitments_for(self, session: bytes, qualified: Sequence[NodeId], threshold: int) -> tuple[bytes, ...]:
        digest = hashlib.sha256(_COST_GROUP_DOMAIN + session + b"".join(int(q).to_bytes(8, "big") for q in qualified))
        group = digest.digest().ljust(GROUP_KEY_SIZE_BYTES, b"\0")
        rest = (
            hashlib.sha256(group + bytes([k])).digest().ljust(GROUP_KEY_SIZE_BYTES, b"\0") for k in range(1, threshold)
        )
        return (group, *rest)

    def epoch_key(self, threshold: int, n: int, commitments: Sequence[bytes]) -> EpochKey:
        if not 1 <= threshold <= n or len(commitments) != threshold:
            raise ConfigError(f"a t-of-n key needs 1 <= t <= n and t commitments, got t={threshold}, n={n}, {len(commitments)}")
        if any(not isinstance(c, bytes) or len(c) != GROUP_KEY_SIZE_BYTES for c in commitments):
            raise ConfigError("a commitment is not 48 bytes")
        return CostModelEpochKey(self._scheme(commitments[0], threshold, n), tuple(commitments))

    def partial_signer(self, key: EpochKey, index: int, secret: bytes) -> PartialSigner:
        if not isinstance(key, CostModelEpochKey):
            raise ConfigError("the cost model signs only with cost-model epoch keys")
        if not 1 <= index <= key.n:
            raise ConfigError(f"share index must be in 1..{key.n}, got {index}")
        return _CostModelPartialSigner(key.scheme, index)

    def verify_group(self, group_public_key: bytes, message: bytes, signature: bytes) -> bool:
        if not isinstance(group_public_key, bytes) or len(group_public_key) != GROUP_KEY_SIZE_BYTES:
            return False
        return self._scheme(group_public_key, 1, 1).verify(message, signature)

    def key_generation(
        self, config: KeyGenConfig, me: NodeId, encryption_secret: bytes, random_bytes: RandomBytes
    ) -> KeyGeneration:
        return CostModelKeyGeneration(self, config, me)

    def deal(
        self, threshold: int, members: Sequence[NodeId], seed: bytes
    ) -> tuple[tuple[bytes, ...], dict[NodeId, tuple[int, bytes]]]:
        ordered = sorted(members)
        commitments = self.commitments_for(b"deal:" + seed, ordered, threshold)
        return commitments, {NodeId(m): (i + 1, b"") for i, m in enumerate(ordered)}
