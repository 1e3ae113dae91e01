"""BLS12-381 arithmetic that blspy's Python face leaves out.

Theory of operation. blspy 2.0.3 exposes point addition and negation on
``G1Element``/``G2Element``, fixed-base multiplication in G1
(``PrivateKey.get_g1``) and signing (a multiplication of a hashed G2 point by a
secret key), but no multiplication of an *arbitrary* point by a scalar. Threshold
signatures (Lagrange interpolation in the exponent), Feldman share checks and
Schnorr proofs all need that, so this module builds it from addition:

- scalars live in Z_r, r the prime order of G1 and G2 (``GROUP_ORDER``);
- ``scalar_mult`` is a fixed-window (``WINDOW_BITS``) double-and-add;
- ``multi_scalar_mult`` is Straus' interleaving: one shared chain of doublings
  for all points, so combining t partial signatures costs ~256 doublings plus
  ~64 additions per point instead of t full multiplications;
- ``hash_to_scalar`` reduces 512 bits of SHA-256 output mod r, so the bias
  is below 2^-256 (a near-uniform challenge for Fiat–Shamir).

Invariant: every scalar handed to blspy (``PrivateKey.from_bytes``) is reduced
into [0, r), since blspy refuses anything at or above the group order.
This module imports blspy at import time: it is only loaded by the BLS
modules, which need blspy anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, TypeVar

from blspy import G1Element, G2Element, PrivateKey

GROUP_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
"""r, the prime order of G1, G2 and the scalar field of BLS12-381."""

SCALAR_SIZE_BYTES = 32
G1_SIZE_BYTES = 48
G2_SIZE_BYTES = 96

WINDOW_BITS = 4
"""Digits of 4 bits: a 16-entry table per point, 64 additions per 256-bit scalar."""

_SCALAR_BITS = 256  # r < 2^255, rounded up to a whole number of windows
_WINDOW_MASK = (1 << WINDOW_BITS) - 1


class _GroupElement(Protocol):
    def __add__(self, other: _G, /) -> _G: ...


_G = TypeVar("_G", bound=_GroupElement)


def private_key(scalar: int) -> PrivateKey:
    """The blspy secret key for ``scalar`` (reduced mod r first)."""
    return PrivateKey.from_bytes((scalar % GROUP_ORDER).to_bytes(SCALAR_SIZE_BYTES, "big"))


def scalar_of(key: PrivateKey) -> int:
    """The integer in [0, r) behind a blspy secret key."""
    return int.from_bytes(bytes(key), "big")


def g1_mul_generator(scalar: int) -> G1Element:
    """g1^scalar, using blspy's fixed-base multiplication."""
    return private_key(scalar).get_g1()


def g1_identity() -> G1Element:
    """The identity (point at infinity) of G1."""
    return G1Element()


def g2_identity() -> G2Element:
    """The identity (point at infinity) of G2."""
    return G2Element()


def _window_table(point: _G, identity: _G) -> list[_G]:
    table = [identity, point]
    for _ in range(2, 1 << WINDOW_BITS):
        table.append(table[-1] + point)
    return table


def multi_scalar_mult(points: Sequence[_G], scalars: Sequence[int], identity: _G) -> _G:
    """Σ scalars[i]·points[i] by Straus' method (shared doublings).

    ``identity`` is the group's neutral element (``g1_identity()`` or
    ``g2_identity()``), which also fixes the group of the result.
    """
    if len(points) != len(scalars):
        raise ValueError(f"{len(points)} points but {len(scalars)} scalars")
    reduced = [s % GROUP_ORDER for s in scalars]
    tables = [_window_table(p, identity) for p in points]
    acc = identity
    for shift in range(_SCALAR_BITS - WINDOW_BITS, -1, -WINDOW_BITS):
        for _ in range(WINDOW_BITS):
            acc = acc + acc
        for table, scalar in zip(tables, reduced):
            digit = (scalar >> shift) & _WINDOW_MASK
            if digit:
                acc = acc + table[digit]
    return acc


def scalar_mult(point: _G, scalar: int, identity: _G) -> _G:
    """scalar·point for an arbitrary point (windowed double-and-add)."""
    return multi_scalar_mult([point], [scalar], identity)


def small_scalar_mult(point: _G, scalar: int, identity: _G) -> _G:
    """scalar·point for a small non-negative ``scalar`` (a share index, say):
    plain binary double-and-add, cheaper than a full window table."""
    if scalar < 0:
        raise ValueError(f"small_scalar_mult needs a non-negative scalar, got {scalar}")
    acc = identity
    for bit in bin(scalar)[2:]:
        acc = acc + acc
        if bit == "1":
            acc = acc + point
    return acc


def hash_to_scalar(domain: bytes, *parts: bytes) -> int:
    """A near-uniform scalar in [0, r) from ``parts``, separated by ``domain``.

    Each part is length-prefixed, so distinct tuples never hash alike.
    """
    framed = b"".join(len(p).to_bytes(4, "big") + p for p in (domain, *parts))
    wide = hashlib.sha256(b"\x00" + framed).digest() + hashlib.sha256(b"\x01" + framed).digest()
    return int.from_bytes(wide, "big") % GROUP_ORDER


def lagrange_at_zero(indices: Sequence[int]) -> list[int]:
    """Lagrange coefficients λ_i with f(0) = Σ λ_i·f(i) for distinct non-zero ``indices``.

    λ_i = Π_{j≠i} j / (j − i)  (mod r).
    """
    if len(set(indices)) != len(indices):
        raise ValueError(f"share indices must be distinct, got {list(indices)}")
    if any(i % GROUP_ORDER == 0 for i in indices):
        raise ValueError("share index 0 (mod r) is the secret itself, not a share")
    coefficients = []
    for i in indices:
        numerator = 1
        denominator = 1
        for j in indices:
            if j != i:
                numerator = numerator * j % GROUP_ORDER
                denominator = denominator * (j - i) % GROUP_ORDER
        coefficients.append(numerator * pow(denominator, -1, GROUP_ORDER) % GROUP_ORDER)
    return coefficients


def decode_g1(data: object) -> G1Element | None:
    """A G1 point from its 48-byte compressed form, or None if ``data`` is not one."""
    if not isinstance(data, bytes | bytearray) or len(data) != G1_SIZE_BYTES:
        return None
    try:
        return G1Element.from_bytes(bytes(data))
    except (ValueError, RuntimeError):
        return None


def decode_g2(data: object) -> G2Element | None:
    """A G2 point from its 96-byte compressed form, or None if ``data`` is not one."""
    if not isinstance(data, bytes | bytearray) or len(data) != G2_SIZE_BYTES:
        return None
    try:
        return G2Element.from_bytes(bytes(data))
    except (ValueError, RuntimeError):
        return None
