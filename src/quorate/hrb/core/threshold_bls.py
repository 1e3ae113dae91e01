"""The core's threshold suite on BLS12-381 (blspy): what real nodes and
correctness tests use (``quorate.hrb.core.threshold`` has the interface).

Theory of operation. Composition only: an epoch key is a
``quorate.crypto.threshold.ThresholdPublicKey`` (share keys derived from the
Feldman commitments, optimistic ``combine_verified``), a member's share a
``ThresholdSigner``, and key generation a ``quorate.crypto.dkg.DkgParticipant``
(joint Feldman with complaints and justifications, no dealer) whose messages
this module encodes to bytes for the core's log. A group signature is checked
with the group public key alone (``PopSchemeMPL.verify``), which is what a
shard does with a core certificate.

Imports blspy: load it only where BLS is wanted (the cost model needs none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
from blspy import PopSchemeMPL

from quorate.core.ready import Rejection
from quorate.crypto.bls12381 import decode_g1, decode_g2
from quorate.crypto.dkg import (
    Complaints,
    Dealing,
    DkgConfig,
    DkgParticipant,
    Justification,
    Phase,
)
from quorate.crypto.threshold import KeyShare, ThresholdPublicKey, ThresholdSigner, deal
from quorate.errors import ConfigError
from quorate.hrb.core.threshold import (
    EpochKey,
    KeyGenConfig,
    KeyGeneration,
    KeyGenReady,
    KeyGenResult,
    PartialSigner,
    RandomBytes,
)
from quorate.ids import NodeId

__all__ = ["BlsEpochKey", "BlsKeyGeneration", "BlsSuite"]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Dealing | Complaints | Justification)


class BlsEpochKey:
    """An ``EpochKey`` over ``ThresholdPublicKey``."""

    __slots__ = ("key",)

    def __init__(self, key: ThresholdPublicKey) -> None:
        self.key = key

    @property
    def threshold(self) -> int:
        return self.key.threshold

    @property
    def n(self) -> int:
        return self.key.n

    @property
    def group_public_key(self) -> bytes:
        return self.key.group_public_key

    @property
    def commitments(self) -> tuple[bytes, ...]:
        return self.key.commitments

    def verify(self, message: bytes, signature: bytes) -> bool:
        return self.key.verify(message, signature)

    def verify_partial(self, index: int, message: bytes, partial: bytes) -> bool:
        return self.key.verify_partial(index, message, partial)

    def combine(self, message: bytes, partials: Mapping[int, bytes]) -> tuple[bytes | None, list[int]]:
        return self.key.combine_verified(message, partials)


class _BlsPartialSigner:
    __slots__ = ("_signer",)

    def __init__(self, signer: ThresholdSigner) -> None:
        self._signer = signer

    @property
    def index(self) -> int:
        return self._signer.index

    def sign(self, message: bytes) -> bytes:
        return self._signer.sign(message)


class BlsKeyGeneration:
    """A ``KeyGeneration`` over ``DkgParticipant``."""

    __slots__ = ("_participant", "_rejected")

    def __init__(self, participant: DkgParticipant) -> None:
        self._participant = participant
        self._rejected: list[Rejection] = []

    @property
    def phase(self) -> str:
        return self._participant.phase.value

    def start(self) -> None:
        self._participant.start()

    def step(self, sender: NodeId, message: bytes) -> None:
        try:
            decoded = _decoder.decode(message)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._rejected.append(Rejection(sender, "bytes", "not a DKG message"))
            return
        self._participant.step(sender, decoded)

    def close_phase(self, phase: str) -> None:
        if self._participant.phase is Phase(phase):
            self._participant.close_phase()

    def ready(self) -> KeyGenReady:
        inner = self._participant.ready()
        out = KeyGenReady(
            broadcasts=[_encoder.encode(m) for m in inner.broadcasts],
            rejected=self._rejected + list(inner.rejected),
            failure=inner.failure,
        )
        self._rejected = []
        result = inner.result
        if result is not None:
            share = result.share
            out.result = KeyGenResult(
                session=result.session,
                threshold=result.public_key.threshold,
                n=result.public_key.n,
                commitments=result.public_key.commitments,
                share_index=None if share is None else share.index,
                share_secret=None if share is None else share.secret_key,
                qualified=result.qualified,
            )
        return out


class BlsSuite:
    """The ``ThresholdSuite`` of real nodes: threshold BLS and its DKG."""

    name = "bls"

    def epoch_key(self, threshold: int, n: int, commitments: Sequence[bytes]) -> EpochKey:
        return BlsEpochKey(ThresholdPublicKey(threshold, n, commitments))

    def partial_signer(self, key: EpochKey, index: int, secret: bytes) -> PartialSigner:
        if not 1 <= index <= key.n:
            raise ConfigError(f"share index must be in 1..{key.n}, got {index}")
        return _BlsPartialSigner(ThresholdSigner(NodeId(index), KeyShare(index, secret)))

    def verify_group(self, group_public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = decode_g1(group_public_key)
        point = decode_g2(signature)
        if key is None or point is None or not isinstance(message, bytes):
            return False
        return bool(PopSchemeMPL.verify(key, message, point))

    def key_generation(
        self, config: KeyGenConfig, me: NodeId, encryption_secret: bytes, random_bytes: RandomBytes
    ) -> KeyGeneration:
        dkg_config = DkgConfig(config.session, config.members, config.threshold, dict(config.encryption_keys))
        return BlsKeyGeneration(DkgParticipant(dkg_config, me, encryption_secret, random_bytes))

    def deal(
        self, threshold: int, members: Sequence[NodeId], seed: bytes
    ) -> tuple[tuple[bytes, ...], dict[NodeId, tuple[int, bytes]]]:
        ordered = sorted(members)
        dealing = deal(threshold, len(ordered), seed=seed)
        shares = {NodeId(m): (s.index, s.secret_key) for m, s in zip(ordered, dealing.shares, strict=True)}
        return dealing.commitments, shares
