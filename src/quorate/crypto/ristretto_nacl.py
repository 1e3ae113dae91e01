"""Ristretto255 in Python over the Ed25519 group operations PyNaCl exposes.

Theory of operation. This is ``quorate.crypto.ristretto_py`` with its two
costly parts handed to libsodium (PyNaCl's bundled copy, which has
``crypto_scalarmult_ed25519[_base]_noclamp`` and ``crypto_core_ed25519_add``
but not the Ristretto functions):

- Multiplication. libsodium multiplies only points of the order-ℓ subgroup
  other than the identity, and a Ristretto representative can carry a
  4-torsion part (8-torsion for a half). So an element A is handed over as
  a point M of order ℓ and a scalar m with A = m·M: M = 8·P and m = 1/8 for
  a decoded point P (8·P has lost its torsion; 1/8 is mod ℓ), M = Q and
  m = 2 for a half Q that libsodium itself made. s·A is then 2·Q' with
  Q' = (s·m/2)·M, which libsodium computes; the identity (s = 0, A = 0) is
  answered without it.
- Recovering x. libsodium answers in RFC 8032 form (y and the sign of x);
  the encoding needs x. Instead of a square root, one more libsodium call:
  y3 of Q' + B for the base point B = (xB, yB) gives, from the addition law
  y3·(1 − d·x·xB·y·yB) = y·yB + x·xB, x = (y3 − y·yB) / (xB·(1 + d·y·yB·y3))
  — a fraction, so Q' comes back in projective coordinates with no
  inversion, and ``encode_double`` spends the only inversion. When the
  denominator vanishes (for a few points) the square root is taken.
- Decoding. RFC 9496's decoding gives y = (1 − s²)/(1 + s²) without a root;
  the RFC 8032 string (y, x non-negative) names a curve point exactly when
  the Ristretto string is valid (x² = (y² − 1)/(d·y² + 1) = 4·s²/v), and
  libsodium decompresses it inside an addition with B, which also yields x
  as above. The remaining checks (x·y non-negative, y ≠ 0) are the RFC's.

Leaks. libsodium's scalar multiplication is constant-time, so the secret
scalar itself never drives a branch here; the Python parts still do
arithmetic on the scalar (s·m/2 mod ℓ) and on the product point whose time
depends on their values.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions

from quorate.crypto.ristretto_py import (
    BASE_X,
    BASE_Y,
    EDWARDS_D,
    ENCODING_SIZE_BYTES,
    FIELD_PRIME,
    GROUP_ORDER,
    Element,
    Point,
    PythonRistretto,
    decode,
    double,
    ed25519_bytes,
    ed25519_point,
)

_P = FIELD_PRIME
_L = GROUP_ORDER
_D = EDWARDS_D
_HALF = pow(2, -1, _L)
_EIGHTH = pow(8, -1, _L)
_LOW_255_BITS = (1 << 255) - 1
_BASE_BYTES = BASE_Y.to_bytes(ENCODING_SIZE_BYTES, "little")
"""B in RFC 8032 form (x is even: the top bit is clear)."""


def available() -> bool:
    """Does the installed PyNaCl have the Ed25519 group operations?"""
    return bool(
        nacl.bindings.has_crypto_core_ed25519 and nacl.bindings.has_crypto_scalarmult_ed25519
    )


def _y(data: bytes) -> int:
    return int.from_bytes(data, "little") & _LOW_255_BITS


def _scalar_bytes(scalar: int) -> bytes:
    return scalar.to_bytes(ENCODING_SIZE_BYTES, "little")


def _x_beside_base(y: int, y3: int) -> tuple[int, int] | None:
    """x as (numerator, denominator) for the point with y-coordinate ``y``
    whose sum with B has y-coordinate ``y3``; None when the addition law does
    not determine x (the denominator vanishes)."""
    denominator = BASE_X * (1 + _D * y % _P * BASE_Y % _P * y3) % _P
    if denominator == 0:
        return None
    return (y3 - y * BASE_Y) % _P, denominator


def _recover(compressed: bytes) -> Point:
    """The point libsodium returned as an RFC 8032 string, with its x."""
    y = _y(compressed)
    x = _x_beside_base(y, _y(nacl.bindings.crypto_core_ed25519_add(compressed, _BASE_BYTES)))
    if x is not None:
        # (x/z, y) in extended coordinates: (x·z, y·z², z², x·y·z).
        numerator, z = x
        return numerator * z % _P, y * z % _P * z % _P, z * z % _P, numerator * y % _P * z % _P
    point = ed25519_point(compressed)
    if point is None:
        raise AssertionError("libsodium returned a string that names no point")
    return point


class PyNaClRistretto(PythonRistretto):
    """The ``pynacl`` backend of ``quorate.crypto.ristretto255``: the group in
    Python over PyNaCl's Ed25519 operations."""

    name = "pynacl"

    def _decode(self, data: bytes) -> Element | None:
        s = int.from_bytes(data, "little")
        if s >= _P or s & 1:
            return None
        if s == 0:
            return Element((0, 1, 1, 0), False, True)
        ss = s * s % _P
        u2 = (1 + ss) % _P
        if u2 == 0:
            return None
        y = (1 - ss) * pow(u2, -1, _P) % _P
        if y == 0:
            return None
        try:
            y3 = _y(nacl.bindings.crypto_core_ed25519_add(_scalar_bytes(y), _BASE_BYTES))
        except nacl.exceptions.RuntimeError:
            return None  # (y² − 1)/(d·y² + 1) is not a square: no such point
        fraction = _x_beside_base(y, y3)
        if fraction is None:
            point = decode(data)
            return None if point is None else Element(point, False)
        x = fraction[0] * pow(fraction[1], -1, _P) % _P
        t = x * y % _P
        if t & 1:
            return None
        return Element((x, y, 1, t), False)

    def _half_of_product(self, scalar: int, element: Element) -> Element:
        point, factor = self._ed25519_form(element)
        half = scalar * factor * _HALF % _L
        product = nacl.bindings.crypto_scalarmult_ed25519_noclamp(_scalar_bytes(half), point)
        return self._libsodium_half(product)

    def _half_of_base_product(self, scalar: int) -> Element:
        half = scalar * _HALF % _L
        return self._libsodium_half(
            nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(_scalar_bytes(half))
        )

    @staticmethod
    def _libsodium_half(compressed: bytes) -> Element:
        element = Element(_recover(compressed), True, True)
        element.ed25519 = (compressed, 2)
        return element

    @staticmethod
    def _ed25519_form(element: Element) -> tuple[bytes, int]:
        """(M, m) with element = m·M and M of order ℓ (see the module docstring)."""
        if element.ed25519 is None:
            twice = 2 if element.halved else 1
            if element.prime_order:
                element.ed25519 = (ed25519_bytes(element.point), twice)
            else:
                eight = double(double(double(element.point)))
                element.ed25519 = (ed25519_bytes(eight), twice * _EIGHTH % _L)
        return element.ed25519
