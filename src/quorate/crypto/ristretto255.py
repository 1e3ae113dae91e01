"""The Ristretto255 prime-order group (RFC 9496), from whichever backend is here.

Theory of operation. Ristretto255 turns Curve25519's Edwards group (order 8·ℓ)
into a group of prime order ℓ with one canonical 32-byte encoding per element:
decoding rejects every string that is not the encoding of a group element,
so there are no small-order points or cofactor pitfalls to guard against.
Pedersen commitments and the sigma protocols of ``quorate.crypto.zk`` need
exactly that.

Backends. Three compute the same group, byte for byte (the tests hold them
to RFC 9496's vectors and to each other on random inputs):

- ``libsodium``: the system's shared library (≥ 1.0.18) through ``ctypes``
  (``quorate.crypto.ristretto_sodium``; Debian: ``libsodium23``). Fastest.
- ``pynacl``: RFC 9496's encoding, decoding and one-way map in Python on
  top of the Ed25519 group operations PyNaCl does expose — libsodium's
  constant-time scalar multiplication, its point addition as a square-root
  oracle (``quorate.crypto.ristretto_nacl``). Needs only pip packages.
- ``python``: everything in Python ints (``quorate.crypto.ristretto_py``):
  wNAF multiplication, a precomputed table for the generator. Needs nothing.

Without a choice the first that loads is used, in that order; the
environment variable ``QUORATE_RISTRETTO255`` (``libsodium``, ``pynacl``,
``python`` or ``auto``) forces one, and ``using_backend`` switches for a
block (tests, benchmarks). Why ``pynacl`` is the pip-only default rather
than ``python``: measured on the shared 2-core machine (``quorate bench
crypto --json``, section ``ristretto255``, medians), a variable-base
multiplication costs 4× libsodium's through PyNaCl's Ed25519 operations and
20× in pure Python (whose every doubling is eight big-int products), and
checking a ballot 3× and 13.5×; libsodium's multiplication is also
constant-time, the wNAF one is not. Both Python backends encode a product
as a double, which needs an inversion where encoding otherwise needs a
square root (seven times dearer in Python), and remember the points behind
the encodings they made or decoded, so zk's chains of operations pay for a
square root mostly where a peer's bytes are decoded.

Secrets, and what a non-constant-time backend leaks. Verifying — what every
replica does with ballots, tallies and DLEQ proofs — handles public values
only. Secrets pass through here when a voter casts a ballot (the vote v in
v·G, the blinding r in r·H, the bit proof's nonce and simulated branch, the
sealing key e and the shared point e·P) and when the tallier opens one (its
secret x in x·E and in the DLEQ proof, and the shared point x·E). libsodium
(system or PyNaCl) multiplies in constant time; the Python code around it
does not: it reduces and halves the scalar with Python ints, encodes the
product with branches and an inversion whose time depends on the point,
and answers a zero scalar (a 0 vote's v·G) without multiplying. The
``python`` backend's multiplication also branches on the scalar's digits
and indexes its table by them. Someone who can time the voter's or the
tallier's process closely (same host, many runs) may so learn the vote, or
bits of a blinding or nonce — and nonce bits leak the secret a proof's
response hides (z = nonce + c·secret): a blinding, or over many DLEQ
proofs the tally key. A voter or tallier on a shared host should have the
system libsodium; it is picked automatically when present.

Conventions: points are their 32-byte encodings; scalars are Python ints,
reduced mod ℓ (``GROUP_ORDER``) before they reach a backend. The identity
(32 zero bytes) is a valid element here.

Invariant: ``decode`` and ``is_point`` never raise on untrusted bytes; the
arithmetic functions are only called on encodings that passed ``decode``
(they raise ``ValueError`` otherwise: a caller bug, not peer input).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeGuard

from quorate.crypto.ristretto_py import GROUP_ORDER as GROUP_ORDER
from quorate.crypto.ristretto_py import PythonRistretto
from quorate.errors import ConfigError

POINT_SIZE_BYTES = 32
SCALAR_SIZE_BYTES = 32
HASH_SIZE_BYTES = 64
"""Input of the one-way map to the group (two Elligator 2 maps added)."""

IDENTITY = bytes(POINT_SIZE_BYTES)
"""The encoding of the neutral element."""

BACKENDS = ("libsodium", "pynacl", "python")
"""Every backend, fastest first: the order ``auto`` tries them in."""

BACKEND_ENVIRONMENT_VARIABLE = "QUORATE_RISTRETTO255"
_AUTO = "auto"


class Ristretto255Backend(Protocol):
    """What a backend computes. Inputs are checked 32-byte strings (64 for
    ``from_hash``) and scalars in 0..ℓ-1; points that do not decode raise
    ``ValueError``."""

    name: str

    def is_point(self, data: bytes) -> bool: ...
    def add(self, p: bytes, q: bytes) -> bytes: ...
    def sub(self, p: bytes, q: bytes) -> bytes: ...
    def scalar_mult(self, scalar: int, point: bytes) -> bytes: ...
    def scalar_mult_base(self, scalar: int) -> bytes: ...
    def from_hash(self, digest: bytes) -> bytes: ...
    def clear_cache(self) -> None: ...


_loaded: dict[str, Ristretto255Backend] = {}


def load_backend(name: str) -> Ristretto255Backend:
    """The backend ``name`` (loaded once), or ``ImportError`` saying why it
    cannot run here; ``ConfigError`` for a name that is not a backend."""
    backend = _loaded.get(name)
    if backend is not None:
        return backend
    if name == "libsodium":
        from quorate.crypto.ristretto_sodium import load

        backend = load()
    elif name == "pynacl":
        try:
            from quorate.crypto import ristretto_nacl
        except ImportError as exc:
            raise ImportError(
                f"the pynacl Ristretto255 backend needs PyNaCl ({exc}); "
                "pip install 'quorate[crypto]'"
            ) from exc
        if not ristretto_nacl.available():
            raise ImportError("this PyNaCl is a minimal build without Ed25519 group operations")
        backend = ristretto_nacl.PyNaClRistretto()
    elif name == "python":
        backend = PythonRistretto()
    else:
        raise ConfigError(
            f"{BACKEND_ENVIRONMENT_VARIABLE} must be one of {', '.join((_AUTO, *BACKENDS))}; "
            f"got {name!r}"
        )
    _loaded[name] = backend
    return backend


def available_backends() -> tuple[str, ...]:
    """The backends that load here, fastest first."""
    found = []
    for name in BACKENDS:
        try:
            load_backend(name)
        except ImportError:
            continue
        found.append(name)
    return tuple(found)


def _choose(requested: str) -> Ristretto255Backend:
    if requested != _AUTO:
        return load_backend(requested)
    for name in BACKENDS:
        try:
            return load_backend(name)
        except ImportError:
            continue
    raise AssertionError("the python backend always loads")


_backend = _choose(os.environ.get(BACKEND_ENVIRONMENT_VARIABLE, _AUTO).strip().lower() or _AUTO)


def backend_name() -> str:
    """The backend in use: ``libsodium``, ``pynacl`` or ``python``."""
    return _backend.name


@contextmanager
def using_backend(name: str) -> Iterator[None]:
    """Compute with backend ``name`` inside the block (they agree byte for
    byte, so only the speed changes)."""
    global _backend
    previous = _backend
    _backend = load_backend(name)
    try:
        yield
    finally:
        _backend = previous


def clear_cache() -> None:
    """Make the backend in use forget the encodings it remembers (the Python
    backends keep the points behind recent encodings); only the speed of
    what follows changes. Benchmarks call it to time bytes never seen."""
    _backend.clear_cache()


def _is_encoding(data: object) -> TypeGuard[bytes]:
    return isinstance(data, bytes) and len(data) == POINT_SIZE_BYTES


def _require(*points: object) -> None:
    if not all(_is_encoding(p) for p in points):
        raise ValueError("not a Ristretto255 point encoding")


def is_point(data: object) -> bool:
    """True iff ``data`` is the canonical encoding of a group element."""
    return _is_encoding(data) and _backend.is_point(data)


def decode(data: object) -> bytes | None:
    """``data`` as a point if it is one (any bytes-like input), else None."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    raw = bytes(data)
    return raw if is_point(raw) else None


def add(p: bytes, q: bytes) -> bytes:
    """p + q."""
    _require(p, q)
    return _backend.add(p, q)


def sub(p: bytes, q: bytes) -> bytes:
    """p − q."""
    _require(p, q)
    return _backend.sub(p, q)


def scalar_mult(scalar: int, point: bytes) -> bytes:
    """scalar·point (the identity when the product is the identity)."""
    _require(point)
    return _backend.scalar_mult(scalar % GROUP_ORDER, point)


def scalar_mult_base(scalar: int) -> bytes:
    """scalar·G for the standard generator G."""
    return _backend.scalar_mult_base(scalar % GROUP_ORDER)


def from_hash(digest: bytes) -> bytes:
    """The one-way map of RFC 9496 §4.3.4 from 64 uniform bytes to the group.

    The result's discrete logarithm to any other point is unknown to anyone:
    that is how a second, independent generator is made.
    """
    if not isinstance(digest, bytes) or len(digest) != HASH_SIZE_BYTES:
        raise ValueError(f"the one-way map takes {HASH_SIZE_BYTES} bytes")
    return _backend.from_hash(digest)


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
