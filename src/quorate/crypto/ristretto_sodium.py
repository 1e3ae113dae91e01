"""Ristretto255 from the system's libsodium (≥ 1.0.18), through ``ctypes``.

Theory of operation. libsodium implements the group
(``crypto_core_ristretto255_*``, ``crypto_scalarmult_ristretto255[_base]``)
but PyNaCl neither declares nor exports those functions (its bundled
library is built without them), so ``load()`` binds them from the shared
library the system provides (Debian: ``libsodium23``; macOS: ``brew install
libsodium``) and raises ``ImportError`` naming the fix when there is none.

Two corrections to what the library does:
- libsodium 1.0.18 ignores the top bit of an encoding (fixed in later
  releases), so it accepts 2^255 + s as s; RFC 9496 reads the 32 bytes as
  an integer, which is then ≥ p and refused. Every input is checked here.
- Its multiplications refuse to produce the identity (they return −1);
  ``scalar_mult`` and ``scalar_mult_base`` answer the identity themselves.

Scalars arrive reduced mod ℓ and go to libsodium little-endian.
"""

from __future__ import annotations

import ctypes
import ctypes.util

ENCODING_SIZE_BYTES = 32
_LIBRARY_NAMES = ("sodium", "libsodium")
_SONAMES = ("libsodium.so.26", "libsodium.so.23", "libsodium.dylib")
_TOP_BIT = 0x80
_IDENTITY = bytes(ENCODING_SIZE_BYTES)


def load() -> SodiumRistretto:
    """The system library's group, or ``ImportError`` saying what to install."""
    candidates = [ctypes.util.find_library(name) for name in _LIBRARY_NAMES]
    for path in [*(c for c in candidates if c), *_SONAMES]:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "crypto_core_ristretto255_add"):
            if lib.sodium_init() < 0:
                raise ImportError(f"libsodium ({path}) failed to initialise")
            return SodiumRistretto(lib)
    raise ImportError(
        "Ristretto255 from libsodium needs the shared library, version 1.0.18 or later "
        "(Debian/Ubuntu: apt-get install libsodium23; macOS: brew install libsodium)"
    )


def _scalar_bytes(scalar: int) -> bytes:
    return scalar.to_bytes(ENCODING_SIZE_BYTES, "little")


class SodiumRistretto:
    """The group as libsodium computes it. Points are 32-byte encodings;
    scalars are ints already reduced mod ℓ."""

    name = "libsodium"

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib

    def clear_cache(self) -> None:
        """Nothing to forget: libsodium decodes every input."""

    def is_point(self, data: bytes) -> bool:
        return data[31] < _TOP_BIT and self._lib.crypto_core_ristretto255_is_valid_point(data) == 1

    def _require(self, *points: bytes) -> None:
        if any(p[31] >= _TOP_BIT for p in points):
            raise ValueError("not a Ristretto255 point encoding")

    def add(self, p: bytes, q: bytes) -> bytes:
        self._require(p, q)
        out = ctypes.create_string_buffer(ENCODING_SIZE_BYTES)
        if self._lib.crypto_core_ristretto255_add(out, p, q) != 0:
            raise ValueError("not a Ristretto255 point encoding")
        return out.raw

    def sub(self, p: bytes, q: bytes) -> bytes:
        self._require(p, q)
        out = ctypes.create_string_buffer(ENCODING_SIZE_BYTES)
        if self._lib.crypto_core_ristretto255_sub(out, p, q) != 0:
            raise ValueError("not a Ristretto255 point encoding")
        return out.raw

    def scalar_mult(self, scalar: int, point: bytes) -> bytes:
        if not self.is_point(point):
            raise ValueError("not a Ristretto255 point encoding")
        out = ctypes.create_string_buffer(ENCODING_SIZE_BYTES)
        # −1 means the product is the identity (a zero scalar, or the
        # identity itself): the input was checked above.
        if self._lib.crypto_scalarmult_ristretto255(out, _scalar_bytes(scalar), point) != 0:
            return _IDENTITY
        return out.raw

    def scalar_mult_base(self, scalar: int) -> bytes:
        out = ctypes.create_string_buffer(ENCODING_SIZE_BYTES)
        if self._lib.crypto_scalarmult_ristretto255_base(out, _scalar_bytes(scalar)) != 0:
            return _IDENTITY
        return out.raw

    def from_hash(self, digest: bytes) -> bytes:
        out = ctypes.create_string_buffer(ENCODING_SIZE_BYTES)
        self._lib.crypto_core_ristretto255_from_hash(out, digest)
        return out.raw
