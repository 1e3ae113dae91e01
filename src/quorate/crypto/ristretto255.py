"""The Ristretto255 prime-order group (RFC 9496), from libsodium.

Theory of operation. Ristretto255 turns Curve25519's Edwards group (order 8·ℓ)
into a group of prime order ℓ with one canonical 32-byte encoding per element:
decoding rejects every string that is not the encoding of a group element,
so there are no small-order points or cofactor pitfalls to guard against.
Pedersen commitments and the sigma protocols of ``quorate.crypto.zk`` need
exactly that.

libsodium (≥ 1.0.18) implements the group (``crypto_core_ristretto255_*``,
``crypto_scalarmult_ristretto255[_base]``). PyNaCl 1.6 neither declares nor
exports those functions (its bundled library is built without them), so this
module binds them from the system's libsodium shared library with ``ctypes``
(Debian: ``libsodium23``; macOS: ``brew install libsodium``). Importing the
module raises ``ImportError`` naming the fix when no such library is found.

Conventions: points are their 32-byte encodings; scalars are Python ints,
reduced mod ℓ (``GROUP_ORDER``) before they reach libsodium, little-endian as
libsodium wants. The identity (32 zero bytes) is a valid element here;
libsodium's multiplication refuses to produce it, so ``scalar_mult`` handles
that case itself.

Invariant: ``decode`` and ``is_point`` never raise on untrusted bytes; the
arithmetic functions are only called on encodings that passed ``decode``
(they raise ``ValueError`` otherwise: a caller bug, not peer input).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from collections.abc import Callable

GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
"""ℓ, the prime order of Ristretto255."""

POINT_SIZE_BYTES = 32
SCALAR_SIZE_BYTES = 32
HASH_SIZE_BYTES = 64
"""Input of the one-way map to the group (two Elligator 2 maps added)."""

IDENTITY = bytes(POINT_SIZE_BYTES)
"""The encoding of the neutral element."""

_LIBRARY_NAMES = ("sodium", "libsodium")
_SONAMES = ("libsodium.so.26", "libsodium.so.23", "libsodium.dylib")


def _load() -> ctypes.CDLL:
    candidates = [ctypes.util.find_library(name) for name in _LIBRARY_NAMES]
    for path in [*(c for c in candidates if c), *_SONAMES]:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "crypto_core_ristretto255_add"):
            if lib.sodium_init() < 0:
                raise ImportError(f"libsodium ({path}) failed to initialise")
            return lib
    raise ImportError(
        "Ristretto255 needs the libsodium shared library, version 1.0.18 or later "
        "(Debian/Ubuntu: apt-get install libsodium23; macOS: brew install libsodium)"
    )


_lib = _load()


def _scalar_bytes(scalar: int) -> bytes:
    return (scalar % GROUP_ORDER).to_bytes(SCALAR_SIZE_BYTES, "little")


def is_point(data: object) -> bool:
    """True iff ``data`` is the canonical encoding of a group element."""
    return (
        isinstance(data, bytes)
        and len(data) == POINT_SIZE_BYTES
        and _lib.crypto_core_ristretto255_is_valid_point(data) == 1
    )


def decode(data: object) -> bytes | None:
    """``data`` as a point if it is one (any bytes-like input), else None."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    raw = bytes(data)
    return raw if is_point(raw) else None


def _require(point: bytes) -> None:
    if not is_point(point):
        raise ValueError("not a Ristretto255 point encoding")


def add(p: bytes, q: bytes) -> bytes:
    """p + q."""
    out = ctypes.create_string_buffer(POINT_SIZE_BYTES)
    if _lib.crypto_core_ristretto255_add(out, p, q) != 0:
        raise ValueError("not a Ristretto255 point encoding")
    return out.raw


def sub(p: bytes, q: bytes) -> bytes:
    """p − q."""
    out = ctypes.create_string_buffer(POINT_SIZE_BYTES)
    if _lib.crypto_core_ristretto255_sub(out, p, q) != 0:
        raise ValueError("not a Ristretto255 point encoding")
    return out.raw


def scalar_mult(scalar: int, point: bytes) -> bytes:
    """scalar·point (the identity when the product is the identity)."""
    _require(point)
    out = ctypes.create_string_buffer(POINT_SIZE_BYTES)
    # libsodium returns -1 when the product is the identity (a zero scalar,
    # or the identity itself); the input was checked above, so that is what
    # -1 means here.
    if _lib.crypto_scalarmult_ristretto255(out, _scalar_bytes(scalar), point) != 0:
        return IDENTITY
    return out.raw


def scalar_mult_base(scalar: int) -> bytes:
    """scalar·G for the standard generator G."""
    out = ctypes.create_string_buffer(POINT_SIZE_BYTES)
    if _lib.crypto_scalarmult_ristretto255_base(out, _scalar_bytes(scalar)) != 0:
        return IDENTITY
    return out.raw


def from_hash(digest: bytes) -> bytes:
    """The one-way map of RFC 9496 §4.3.4 from 64 uniform bytes to the group.

    The result's discrete logarithm to any other point is unknown to anyone:
    that is how a second, independent generator is made.
    """
    if not isinstance(digest, bytes) or len(digest) != HASH_SIZE_BYTES:
        raise ValueError(f"the one-way map takes {HASH_SIZE_BYTES} bytes")
    out = ctypes.create_string_buffer(POINT_SIZE_BYTES)
    _lib.crypto_core_ristretto255_from_hash(out, digest)
    return out.raw


def hash_to_point(domain: bytes, *parts: bytes) -> bytes:
    """A group element from ``parts``, separated by ``domain`` (SHA-512, then
    the one-way map). Parts are length-prefixed, so distinct tuples differ."""
    return from_hash(hashlib.sha512(_frame(domain, parts)).digest())


def hash_to_scalar(domain: bytes, *parts: bytes) -> int:
    """A near-uniform scalar mod ℓ from ``parts``: 512 bits of SHA-512 reduced
    mod ℓ (bias below 2^-259), the Fiat–Shamir challenge of the sigma proofs."""
    return int.from_bytes(hashlib.sha512(_frame(domain, parts)).digest(), "little") % GROUP_ORDER


def random_scalar(random_bytes: Callable[[int], bytes]) -> int:
    """A uniform non-zero scalar from 64 bytes of ``random_bytes(n)``
    (``secrets.token_bytes`` in production, a seeded source in tests)."""
    while True:
        scalar = int.from_bytes(random_bytes(64), "little") % GROUP_ORDER
        if scalar:
            return scalar


def _frame(domain: bytes, parts: tuple[bytes, ...]) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in (domain, *parts))


GENERATOR = scalar_mult_base(1)
"""G, the standard generator (RFC 9496 §4.4)."""
