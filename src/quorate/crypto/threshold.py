"""t-of-n threshold BLS signatures with a verifiable (Feldman) dealing.

Theory of operation.

Dealing (Shamir 1979; Feldman 1987). The dealer picks a polynomial
f(x) = a_0 + a_1·x + … + a_{t−1}·x^{t−1} over Z_r (r the BLS12-381 group order);
a_0 is the group secret key. Participant i (share index i = 1..n; 0 would be
the secret itself) receives s_i = f(i) privately. The dealer publishes the
*commitments* C_j = g1^{a_j}; C_0 is the group public key. Participant i checks
its share with g1^{s_i} = Σ_j i^j·C_j and, if the check fails, complains. The
dealer must then reveal s_i publicly: if the revealed share still fails the
check (or the dealer stays silent) the dealer is to blame, otherwise the
complaint was false and the complainer is to blame (``judge_complaint``). The
same commitments give every participant's share public key g1^{s_i}, so anyone
can check a partial signature without trusting the dealer.

Signing. Share i signs m as σ_i = s_i·H(m) — an ordinary PoP-scheme BLS
signature under the share key. Any t partials from a set S combine by Lagrange
interpolation in the exponent, σ = Σ_{i∈S} λ_i·σ_i = f(0)·H(m), an ordinary
signature under the group public key (``combine``). Fewer than t partials
interpolate to some other point, which does not verify.

Combining is optimistic like aggregation (``quorate.crypto.bls``): combine the
first t partials and verify once; only on failure check each partial, drop the
bad ones and combine t good ones (``ThresholdPublicKey.combine_verified``).

Invariants: 1 <= t <= n < r; share indices are 1..n; verification functions
never raise on peer input.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from blspy import G1Element, PopSchemeMPL, PrivateKey

from quorate.crypto.bls12381 import (
    GROUP_ORDER,
    SCALAR_SIZE_BYTES,
    decode_g1,
    decode_g2,
    g1_identity,
    g1_mul_generator,
    g2_identity,
    hash_to_scalar,
    lagrange_at_zero,
    multi_scalar_mult,
    private_key,
    small_scalar_mult,
)
from quorate.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from quorate.ids import NodeId

_COEFFICIENT_DOMAIN = b"quorate/threshold/coefficient/v1"
_SEED_SIZE_BYTES = 32


@dataclass(frozen=True, slots=True)
class KeyShare:
    """Share ``index`` (1..n) of the group secret key: s_i = f(index), 32 bytes."""

    index: int
    secret_key: bytes


@dataclass(frozen=True, slots=True)
class FeldmanDealing:
    """What a dealer produces: public ``commitments`` (C_j = g1^{a_j}, 48 bytes
    each; ``commitments[0]`` is the group public key) and the private ``shares``
    (``shares[i - 1]`` goes to participant i and to nobody else)."""

    threshold: int
    commitments: tuple[bytes, ...]
    shares: tuple[KeyShare, ...]

    @property
    def group_public_key(self) -> bytes:
        return self.commitments[0]

    def public_key(self) -> ThresholdPublicKey:
        """The public side of this dealing, as every participant sees it."""
        return ThresholdPublicKey(self.threshold, len(self.shares), self.commitments)


def _check_parameters(threshold: int, n: int) -> None:
    if not 1 <= threshold <= n:
        raise ConfigError(f"a threshold must satisfy 1 <= t <= n, got t={threshold}, n={n}")


def deal(
    threshold: int,
    n: int,
    *,
    seed: bytes | None = None,
    secret_key: bytes | None = None,
) -> FeldmanDealing:
    """Share a BLS secret key t-of-n and commit to the polynomial (Feldman).

    ``seed`` fixes every coefficient (tests and the simulator); without it the
    coefficients come from the operating system's randomness. ``secret_key``
    (32 bytes) shares an existing key instead of the seed-derived a_0.
    """
    _check_parameters(threshold, n)
    if seed is None:
        seed = secrets.token_bytes(_SEED_SIZE_BYTES)
    coefficients = [
        hash_to_scalar(_COEFFICIENT_DOMAIN, seed, j.to_bytes(4, "big")) for j in range(threshold)
    ]
    if secret_key is not None:
        if len(secret_key) != SCALAR_SIZE_BYTES:
            raise ConfigError(f"a BLS secret key is {SCALAR_SIZE_BYTES} bytes")
        coefficients[0] = int.from_bytes(secret_key, "big") % GROUP_ORDER
    commitments = tuple(bytes(g1_mul_generator(a)) for a in coefficients)
    shares = tuple(
        KeyShare(index=i, secret_key=bytes(private_key(_evaluate(coefficients, i))))
        for i in range(1, n + 1)
    )
    return FeldmanDealing(threshold=threshold, commitments=commitments, shares=shares)


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    """f(x) mod r by Horner's rule."""
    value = 0
    for a in reversed(coefficients):
        value = (value * x + a) % GROUP_ORDER
    return value


def _commitment_at(points: Sequence[G1Element], index: int) -> G1Element:
    """Σ_j index^j·C_j = g1^{f(index)}, by Horner's rule in the group: each step
    multiplies by the small integer ``index``, far cheaper than a full scalar."""
    acc = g1_identity()
    for point in reversed(points):
        acc = small_scalar_mult(acc, index, g1_identity()) + point
    return acc


def _decode_commitments(commitments: Sequence[bytes]) -> list[G1Element] | None:
    points = [decode_g1(c) for c in commitments]
    if any(p is None for p in points):
        return None
    return [p for p in points if p is not None]


def verify_share(commitments: Sequence[bytes], share: KeyShare) -> bool:
    """True iff ``share`` lies on the polynomial the dealer committed to."""
    points = _decode_commitments(commitments)
    if not points or not isinstance(share.index, int) or share.index < 1:
        return False
    if not isinstance(share.secret_key, bytes) or len(share.secret_key) != SCALAR_SIZE_BYTES:
        return False
    try:
        key = PrivateKey.from_bytes(share.secret_key)
    except ValueError:
        return False
    return bool(key.get_g1() == _commitment_at(points, share.index))


class Blame(enum.Enum):
    """Who a complaint about a share convicts."""

    DEALER = "dealer"
    COMPLAINER = "complainer"


@dataclass(frozen=True, slots=True)
class Complaint:
    """Participant ``index`` says the share ``dealer`` sent it fails the check."""

    dealer: NodeId
    index: int


def judge_complaint(
    commitments: Sequence[bytes], complaint: Complaint, revealed: KeyShare | None
) -> Blame:
    """Settle a complaint once the dealer has (or has not) revealed the share.

    A dealer that reveals nothing, reveals the share of another index, or
    reveals a share off its committed polynomial is to blame; a dealer that
    reveals a share passing the check is vindicated and the complainer lied.
    """
    if revealed is None or revealed.index != complaint.index:
        return Blame.DEALER
    return Blame.COMPLAINER if verify_share(commitments, revealed) else Blame.DEALER


def reconstruct_secret_key(shares: Sequence[KeyShare]) -> bytes:
    """The group secret key from t or more shares (Lagrange at 0 over Z_r).

    For recovery and tests; threshold signing never needs the key in one place.
    """
    indices = [s.index for s in shares]
    lambdas = lagrange_at_zero(indices)
    total = sum(
        lam * int.from_bytes(s.secret_key, "big") for lam, s in zip(lambdas, shares)
    ) % GROUP_ORDER
    return bytes(private_key(total))


class ThresholdSigner:
    """Signs partial signatures as ``node`` with key share ``share``."""

    __slots__ = ("_key", "_node", "index")

    def __init__(self, node: NodeId, share: KeyShare) -> None:
        try:
            self._key = PrivateKey.from_bytes(share.secret_key)
        except ValueError as exc:
            raise ConfigError(f"the key share of node {node} is invalid: {exc}") from exc
        self._node = node
        self.index = share.index

    @property
    def node(self) -> NodeId:
        return self._node

    def sign(self, data: bytes) -> bytes:
        """This share's 96-byte partial signature of ``data``."""
        return bytes(PopSchemeMPL.sign(self._key, data))


def interpolate(partials: Mapping[int, bytes]) -> bytes:
    """Σ λ_i·σ_i over exactly the given partials (share index -> signature).

    With t valid partials this is the group signature; with fewer it is some
    other point. Raises ``RemoteProtocolError`` if a partial is not a G2 point.
    """
    indices = sorted(partials)
    points = []
    for i in indices:
        point = decode_g2(partials[i])
        if point is None:
            raise RemoteProtocolError(f"malformed partial signature for share {i}")
        points.append(point)
    return bytes(multi_scalar_mult(points, lagrange_at_zero(indices), g2_identity()))


class ThresholdPublicKey:
    """The public side of a t-of-n dealing: the group key, each share's key
    (derived from the commitments, so nobody has to trust the dealer for them),
    and combining partial signatures into group signatures."""

    __slots__ = ("_commitments", "_group", "_share_keys", "n", "threshold")

    def __init__(self, threshold: int, n: int, commitments: Sequence[bytes]) -> None:
        _check_parameters(threshold, n)
        if len(commitments) != threshold:
            raise ConfigError(
                f"a t-of-n dealing has t={threshold} commitments, got {len(commitments)}"
            )
        points = _decode_commitments(commitments)
        if points is None:
            raise ConfigError("a threshold commitment is not a valid G1 point")
        self.threshold = threshold
        self.n = n
        self._commitments = points
        self._group = points[0]
        self._share_keys: dict[int, G1Element] = {}

    @property
    def group_public_key(self) -> bytes:
        return bytes(self._group)

    @property
    def commitments(self) -> tuple[bytes, ...]:
        """The t commitments (48 bytes each) this key was built from, so it can
        be stored and rebuilt (``commitments[0]`` is the group public key)."""
        return tuple(bytes(p) for p in self._commitments)

    def _share_key(self, index: int) -> G1Element | None:
        if not isinstance(index, int) or not 1 <= index <= self.n:
            return None
        key = self._share_keys.get(index)
        if key is None:
            key = _commitment_at(self._commitments, index)
            self._share_keys[index] = key
        return key

    def share_public_key(self, index: int) -> bytes:
        """g1^{s_index}, the key that checks share ``index``'s partials."""
        key = self._share_key(index)
        if key is None:
            raise LocalProtocolError(f"share index must be in 1..{self.n}, got {index}")
        return bytes(key)

    def verify_partial(self, index: int, message: bytes, partial: bytes) -> bool:
        key = self._share_key(index)
        point = decode_g2(partial)
        if key is None or point is None or not isinstance(message, bytes):
            return False
        return bool(PopSchemeMPL.verify(key, message, point))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is the group's signature over ``message``."""
        point = decode_g2(signature)
        if point is None or not isinstance(message, bytes):
            return False
        return bool(PopSchemeMPL.verify(self._group, message, point))

    def combine(self, partials: Mapping[int, bytes]) -> bytes:
        """The group signature from the t lowest-indexed partials, unchecked.

        Raises ``LocalProtocolError`` with fewer than t partials (count first)
        and ``RemoteProtocolError`` if a used partial is not a G2 point.
        """
        valid_indices = [i for i in sorted(partials) if isinstance(i, int) and 1 <= i <= self.n]
        if len(valid_indices) < self.threshold:
            raise LocalProtocolError(
                f"need {self.threshold} partial signatures with indices in 1..{self.n}, "
                f"got {len(valid_indices)}"
            )
        chosen = valid_indices[: self.threshold]
        return interpolate({i: partials[i] for i in chosen})

    def combine_verified(
        self, message: bytes, partials: Mapping[int, bytes]
    ) -> tuple[bytes | None, list[int]]:
        """``(group_signature or None, bad_indices)``.

        One verification when the first t partials are good; otherwise every
        partial is checked, the bad ones are reported, and t good ones (if
        there are t) are combined.
        """
        try:
            signature = self.combine(partials)
        except (LocalProtocolError, RemoteProtocolError):
            pass
        else:
            if self.verify(message, signature):
                return signature, []
        bad = sorted(i for i, p in partials.items() if not self.verify_partial(i, message, p))
        good = {i: p for i, p in partials.items() if i not in bad}
        if len(good) < self.threshold:
            return None, bad
        return self.combine(good), bad
