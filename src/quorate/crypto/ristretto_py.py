"""Ristretto255 (RFC 9496) in pure Python: the field, the Edwards curve, the
encoding and the one-way map, and scalar multiplication.

Theory of operation. The field is the integers mod p = 2^255 − 19, held as
Python ints. Curve points are edwards25519 points (−x² + y² = 1 + d·x²·y²)
in extended coordinates (X : Y : Z : T) with x = X/Z, y = Y/Z, x·y = T/Z;
the addition and doubling formulas (Hisil–Wong–Carter–Dawson 2008, a = −1)
are complete, so no input needs a special case. A Ristretto255 element is a
class of four such points (a point plus the 4-torsion); ``decode``,
``encode`` and ``elligator`` are RFC 9496 §4.3.1, §4.3.2 and §4.3.4 written
with ``sqrt_ratio_m1`` (§4.2).

Square roots are what cost: Python's ``pow`` over the 252-bit exponent
takes about seven times an inversion (``pow(x, -1, p)``, Euclid). Decoding
a string needs one; encoding an arbitrary point needs one. Encoding a point
known as a *double* 2·Q needs none: for P = 2·Q the quantity whose inverse
square root the encoding takes, u1·u2², is (E²·F·G²·H)²·(a − d) in Q's
doubling terms (E, F, G, H as the doubling formula names them; the curve
equation turns (Y² − Z²)(X² + Z²) into X²·Y²·(1 + d)), and √(a − d) is a
constant, so one inversion replaces the square root (``encode_double``).
Scalar multiplication exploits it: s·A is computed as 2·((s/2 mod ℓ)·A),
or as 2·(s·R) when A is remembered as 2·R; the product is remembered as the
half it was computed from, so sums of products encode without a square root
too. ``PythonRistretto`` keeps these representations of the encodings it
produced or decoded in a bounded least-recently-used table
(``ELEMENT_CACHE_SIZE``): an encoding that comes back is neither decoded
nor checked again, because it is a string this process made or already
validated.

Multiplication here: a variable point by width-5 wNAF (one doubling per
bit and an addition every six bits or so); the generator by 64 signed
radix-16 digits over a table of 8·64 precomputed multiples built on first
use, so no doublings at all. ``quorate.crypto.ristretto_nacl`` replaces the
two multiplications with libsodium's (through PyNaCl) and keeps the rest.

Not constant-time: Python integers take time that depends on their values,
wNAF branches on the scalar's digits and the base-point table is indexed by
them, and the encoding branches on the point. See ``quorate.crypto.
ristretto255`` for which secrets pass through here and what that leaks.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import suppress

FIELD_PRIME = 2**255 - 19
"""p, the field of edwards25519."""

GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
"""ℓ, the prime order of Ristretto255 (and of edwards25519's main subgroup)."""

ENCODING_SIZE_BYTES = 32
UNIFORM_SIZE_BYTES = 64
"""Input of the one-way map: two 32-byte field elements."""

ELEMENT_CACHE_SIZE = 2048
"""Encodings whose points ``PythonRistretto`` remembers (a few hundred bytes each)."""

Point = tuple[int, int, int, int]
"""Extended coordinates (X, Y, Z, T) of an edwards25519 point."""

EDWARDS_D = -121665 * pow(121666, -1, FIELD_PRIME) % FIELD_PRIME
"""d of edwards25519, −121665/121666 mod p."""

_P = FIELD_PRIME
_L = GROUP_ORDER
_D = EDWARDS_D
_D2 = 2 * _D % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
# The two roots below are the ones RFC 9496 §4.1 fixes (either root is a
# square root; the encoding depends on which).
_SQRT_AD_MINUS_ONE = 25063068953384623474111414158702152701244531502492656460079210482610430750235
_INVSQRT_A_MINUS_D = 54469307008909316920995813868745141605393597292927456921205312896311721017578
_SQRT_A_MINUS_D = pow(_INVSQRT_A_MINUS_D, -1, _P)
_ONE_MINUS_D_SQ = (1 - _D * _D) % _P
_D_MINUS_ONE_SQ = (_D - 1) ** 2 % _P
_SQRT_EXPONENT = (_P - 5) // 8
_LOW_255_BITS = (1 << 255) - 1
_HALF = pow(2, -1, _L)
"""1/2 mod ℓ: s·A = 2·((s/2)·A) in a group of odd order."""

IDENTITY_POINT: Point = (0, 1, 1, 0)

BASE_X = 15112221349535400772501151409588531511454012693041857206046113283949847762202
BASE_Y = 4 * pow(5, -1, _P) % _P
BASE_POINT: Point = (BASE_X, BASE_Y, 1, BASE_X * BASE_Y % _P)
"""B, the Ed25519 base point (RFC 8032); its class is the Ristretto generator."""

_WNAF_WIDTH = 5
_WNAF_TABLE_SIZE = 1 << (_WNAF_WIDTH - 2)
"""Odd multiples 1·A, 3·A, ..., 15·A."""
_BASE_WINDOWS = 64
_BASE_DIGIT_MAX = 8
"""Signed radix-16 digits of a scalar < 2^253 lie in [−8, 8)."""


# -- the field ---------------------------------------------------------------
def is_negative(x: int) -> bool:
    """RFC 9496's sign: the least significant bit of the reduced value."""
    return bool(x % _P & 1)


def sqrt_ratio_m1(u: int, v: int) -> tuple[bool, int]:
    """(was_square, r) with r the non-negative √(u/v) when u/v is a square,
    else the non-negative √(√−1·u/v) (RFC 9496 §4.2); 0/0 gives (True, 0)."""
    u %= _P
    v %= _P
    v3 = v * v % _P * v % _P
    v7 = v3 * v3 % _P * v % _P
    r = u * v3 % _P * pow(u * v7 % _P, _SQRT_EXPONENT, _P) % _P
    check = v * r % _P * r % _P
    minus_u = -u % _P
    correct_sign = check == u
    flipped_sign = check == minus_u
    if flipped_sign or check == minus_u * _SQRT_M1 % _P:
        r = r * _SQRT_M1 % _P
    if r & 1:
        r = _P - r
    return correct_sign or flipped_sign, r


# -- the curve ---------------------------------------------------------------
def add(p: Point, q: Point) -> Point:
    """p + q (complete: any two points, doubling included)."""
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * _D2 % _P * t2 % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def negate(p: Point) -> Point:
    x, y, z, t = p
    return -x % _P, y, z, -t % _P


def double(p: Point) -> Point:
    """2·p, with the terms ``encode_double`` also uses."""
    e, f, g, h = _doubling_terms(p)
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _doubling_terms(p: Point) -> tuple[int, int, int, int]:
    x, y, z, _ = p
    a = x * x % _P
    b = y * y % _P
    c = 2 * z * z % _P
    e = 2 * x * y % _P
    g = b - a
    return e, g - c, g, -(a + b)


def affine(p: Point) -> tuple[int, int]:
    """(x, y), at the cost of one inversion."""
    x, y, z, _ = p
    z_inv = pow(z, -1, _P)
    return x * z_inv % _P, y * z_inv % _P


def ed25519_bytes(p: Point) -> bytes:
    """The RFC 8032 encoding of p (y, and the sign of x in the top bit)."""
    x, y = affine(p)
    return (y | (x & 1) << 255).to_bytes(ENCODING_SIZE_BYTES, "little")


def ed25519_point(data: bytes) -> Point | None:
    """The point an RFC 8032 encoding names, or None (one square root)."""
    word = int.from_bytes(data, "little")
    y = word & _LOW_255_BITS
    if y >= _P:
        return None
    y2 = y * y % _P
    was_square, x = sqrt_ratio_m1(y2 - 1, _D * y2 + 1)
    if not was_square or (x == 0 and word >> 255):
        return None
    if word >> 255:
        x = _P - x
    return x, y, 1, x * y % _P


# -- RFC 9496 ----------------------------------------------------------------
def decode(data: bytes) -> Point | None:
    """§4.3.1: the point a 32-byte string encodes, or None if it encodes none."""
    s = int.from_bytes(data, "little")
    if s >= _P or s & 1:
        return None
    ss = s * s % _P
    u1 = (1 - ss) % _P
    u2 = (1 + ss) % _P
    u2_sqr = u2 * u2 % _P
    v = (-_D * u1 % _P * u1 - u2_sqr) % _P
    was_square, invsqrt = sqrt_ratio_m1(1, v * u2_sqr)
    den_x = invsqrt * u2 % _P
    den_y = invsqrt * den_x % _P * v % _P
    x = 2 * s * den_x % _P
    if x & 1:
        x = _P - x
    y = u1 * den_y % _P
    t = x * y % _P
    if not was_square or t & 1 or y == 0:
        return None
    return x, y, 1, t


def encode(p: Point) -> bytes:
    """§4.3.2: the canonical encoding of p's class (one square root)."""
    x, y, z, _ = p
    u1 = (z + y) * (z - y) % _P
    u2 = x * y % _P
    _, invsqrt = sqrt_ratio_m1(1, u1 * u2 % _P * u2)
    return _encode_with(p, u1, u2, invsqrt)


def encode_double(q: Point) -> bytes:
    """The encoding of 2·q with one inversion instead of a square root.

    u1·u2² of P = 2·q is (E²·F·G²·H)²·(a − d) (see the module docstring), so
    its inverse square root is ±1/(E²·F·G²·H·√(a − d)). Either sign gives the
    same encoding: the encoding uses the root squared, and then |s|.
    """
    e, f, g, h = _doubling_terms(q)
    p = (e * f % _P, g * h % _P, f * g % _P, e * h % _P)
    u1 = g * g % _P * (f * f - h * h) % _P
    u2 = p[0] * p[1] % _P
    root = e * e % _P * f % _P * g % _P * g % _P * h % _P * _SQRT_A_MINUS_D % _P
    invsqrt = pow(root, -1, _P) if root else 0
    return _encode_with(p, u1, u2, invsqrt)


def _encode_with(p: Point, u1: int, u2: int, invsqrt: int) -> bytes:
    x0, y0, z0, t0 = (c % _P for c in p)
    den1 = invsqrt * u1 % _P
    den2 = invsqrt * u2 % _P
    z_inv = den1 * den2 % _P * t0 % _P
    if t0 * z_inv % _P & 1:
        x, y, den_inv = y0 * _SQRT_M1 % _P, x0 * _SQRT_M1 % _P, den1 * _INVSQRT_A_MINUS_D % _P
    else:
        x, y, den_inv = x0, y0, den2
    if x * z_inv % _P & 1:
        y = _P - y
    s = den_inv * (z0 - y) % _P
    if s & 1:
        s = _P - s
    return s.to_bytes(ENCODING_SIZE_BYTES, "little")


def elligator(t: int) -> Point:
    """§4.3.4's MAP: a field element to a point (Elligator 2, Ristretto flavour)."""
    r = _SQRT_M1 * t % _P * t % _P
    u = (r + 1) * _ONE_MINUS_D_SQ % _P
    v = (-1 - r * _D) * (r + _D) % _P
    was_square, s = sqrt_ratio_m1(u, v)
    if was_square:
        c = _P - 1
    else:
        st = s * t % _P
        magnitude = _P - st if st & 1 else st
        s = -magnitude % _P  # s' = −|s·t|
        c = r
    n = (c * (r - 1) % _P * _D_MINUS_ONE_SQ - v) % _P
    w0 = 2 * s * v % _P
    w1 = n * _SQRT_AD_MINUS_ONE % _P
    ss = s * s % _P
    w2 = (1 - ss) % _P
    w3 = (1 + ss) % _P
    return w0 * w3 % _P, w2 * w1 % _P, w1 * w3 % _P, w0 * w2 % _P


def from_uniform(data: bytes) -> Point:
    """§4.3.4: 64 uniform bytes to a point, MAP of each half (top bit masked,
    reduced mod p), added."""
    first = int.from_bytes(data[:32], "little") & _LOW_255_BITS
    second = int.from_bytes(data[32:64], "little") & _LOW_255_BITS
    return add(elligator(first % _P), elligator(second % _P))


# -- scalar multiplication ---------------------------------------------------
def multiply(scalar: int, p: Point) -> Point:
    """scalar·p for 0 <= scalar, by width-5 wNAF."""
    if scalar == 0:
        return IDENTITY_POINT
    twice = double(p)
    odd = [p]
    for _ in range(_WNAF_TABLE_SIZE - 1):
        odd.append(add(odd[-1], twice))
    # Cached form (Y + X, Y − X, 2·Z, 2·d·T): what an addition reads.
    table = [((y + x) % _P, (y - x) % _P, 2 * z % _P, t * _D2 % _P) for x, y, z, t in odd]
    digits = _wnaf(scalar)
    x1, y1, z1, t1 = IDENTITY_POINT
    prime = _P
    for digit in reversed(digits):
        a = x1 * x1 % prime
        b = y1 * y1 % prime
        c = 2 * z1 * z1 % prime
        e = 2 * x1 * y1 % prime
        g = b - a
        f = g - c
        h = -(a + b)
        x1, y1, z1, t1 = e * f % prime, g * h % prime, f * g % prime, e * h % prime
        if digit:
            if digit > 0:
                ypx, ymx, z2, t2 = table[digit >> 1]
            else:
                ymx, ypx, z2, t2 = table[-digit >> 1]
                t2 = -t2
            a = (y1 - x1) * ymx % prime
            b = (y1 + x1) * ypx % prime
            c = t1 * t2 % prime
            d = z1 * z2 % prime
            e, f, g, h = b - a, d - c, d + c, b + a
            x1, y1, z1, t1 = e * f % prime, g * h % prime, f * g % prime, e * h % prime
    return x1, y1, z1, t1


def _wnaf(scalar: int) -> list[int]:
    """Width-5 non-adjacent form, least significant digit first."""
    digits = []
    window = 1 << _WNAF_WIDTH
    while scalar:
        digit = 0
        if scalar & 1:
            digit = scalar & (window - 1)
            if digit >= window >> 1:
                digit -= window
            scalar -= digit
        digits.append(digit)
        scalar >>= 1
    return digits


_base_table: list[list[tuple[int, int, int]]] = []


def multiply_base(scalar: int) -> Point:
    """scalar·B for 0 <= scalar < 2^253: one table addition per radix-16 digit."""
    table = _base_table or _build_base_table()
    digits = _signed_radix16(scalar)
    x1, y1, z1, t1 = IDENTITY_POINT
    prime = _P
    for window, digit in enumerate(digits):
        if not digit:
            continue
        if digit > 0:
            ypx, ymx, t2 = table[window][digit - 1]
        else:
            ymx, ypx, t2 = table[window][-digit - 1]
            t2 = -t2
        a = (y1 - x1) * ymx % prime
        b = (y1 + x1) * ypx % prime
        c = t1 * t2 % prime
        d = 2 * z1
        e, f, g, h = b - a, d - c, d + c, b + a
        x1, y1, z1, t1 = e * f % prime, g * h % prime, f * g % prime, e * h % prime
    return x1, y1, z1, t1


def _signed_radix16(scalar: int) -> list[int]:
    digits = [(scalar >> (4 * i)) & 15 for i in range(_BASE_WINDOWS)]
    carry = 0
    for i in range(_BASE_WINDOWS - 1):
        digits[i] += carry
        carry = (digits[i] + _BASE_DIGIT_MAX) >> 4
        digits[i] -= carry << 4
    digits[-1] += carry
    return digits


def _build_base_table() -> list[list[tuple[int, int, int]]]:
    """table[i][j] = (j + 1)·16^i·B in affine cached form (Y + X, Y − X, 2·d·T),
    normalised with one inversion for all 512 points (Montgomery's trick)."""
    points: list[Point] = []
    window_base = BASE_POINT
    for _ in range(_BASE_WINDOWS):
        multiple = window_base
        for _ in range(_BASE_DIGIT_MAX):
            points.append(multiple)
            multiple = add(multiple, window_base)
        for _ in range(4):
            window_base = double(window_base)
    prefix = [1]
    for point in points:
        prefix.append(prefix[-1] * point[2] % _P)
    inverse = pow(prefix[-1], -1, _P)
    cached: list[tuple[int, int, int]] = [(0, 0, 0)] * len(points)
    for i in range(len(points) - 1, -1, -1):
        x, y, z, _ = points[i]
        z_inv = inverse * prefix[i] % _P
        inverse = inverse * z % _P
        xa, ya = x * z_inv % _P, y * z_inv % _P
        cached[i] = ((ya + xa) % _P, (ya - xa) % _P, xa * ya % _P * _D2 % _P)
    _base_table[:] = [
        cached[i * _BASE_DIGIT_MAX : (i + 1) * _BASE_DIGIT_MAX] for i in range(_BASE_WINDOWS)
    ]
    return _base_table


# -- the group, element by element ---------------------------------------------
class Element:
    """What an encoding is remembered as: the element is ``point`` or, when
    ``halved``, 2·``point``. ``prime_order`` says ``point`` is known to lie in
    the order-ℓ subgroup (a product libsodium computed, or a sum of such)."""

    __slots__ = ("ed25519", "halved", "point", "prime_order")

    def __init__(self, point: Point, halved: bool, prime_order: bool = False) -> None:
        self.point = point
        self.halved = halved
        self.prime_order = prime_order
        self.ed25519: tuple[bytes, int] | None = None
        """(M, m): an RFC 8032 encoding of a point M of order ℓ and a scalar m
        with element = m·M, for libsodium's multiplication; made on demand."""

    def full_point(self) -> Point:
        return double(self.point) if self.halved else self.point


IDENTITY_ENCODING = bytes(ENCODING_SIZE_BYTES)


class PythonRistretto:
    """The ``python`` backend of ``quorate.crypto.ristretto255``: the group in
    pure Python. Points are 32-byte encodings; scalars are ints already
    reduced mod ℓ."""

    name = "python"

    def __init__(self, cache_size: int = ELEMENT_CACHE_SIZE) -> None:
        self._cache_size = cache_size
        self._elements: OrderedDict[bytes, Element] = OrderedDict()
        self._remember(IDENTITY_ENCODING, Element(IDENTITY_POINT, True, True))

    def clear_cache(self) -> None:
        """Forget every encoding remembered so far, as a process that has
        never seen them (benchmarks time what a replica pays for new bytes)."""
        self._elements.clear()
        self._remember(IDENTITY_ENCODING, Element(IDENTITY_POINT, True, True))

    # The two hooks a faster backend replaces.
    def _decode(self, data: bytes) -> Element | None:
        point = decode(data)
        return None if point is None else Element(point, False)

    def _half_of_product(self, scalar: int, element: Element) -> Element:
        """Q with 2·Q = scalar·element, for 0 < scalar < ℓ and element ≠ 0."""
        factor = scalar if element.halved else scalar * _HALF % _L
        return Element(multiply(factor, element.point), True, element.prime_order)

    def _half_of_base_product(self, scalar: int) -> Element:
        return Element(multiply_base(scalar * _HALF % _L), True, True)

    # The group.
    def is_point(self, data: bytes) -> bool:
        return self._element(data) is not None

    def add(self, p: bytes, q: bytes) -> bytes:
        return self._combine(p, q, subtract=False)

    def sub(self, p: bytes, q: bytes) -> bytes:
        return self._combine(p, q, subtract=True)

    def scalar_mult(self, scalar: int, point: bytes) -> bytes:
        element = self._require(point)
        if scalar == 0 or point == IDENTITY_ENCODING:
            return IDENTITY_ENCODING
        return self._remember_half(self._half_of_product(scalar, element))

    def scalar_mult_base(self, scalar: int) -> bytes:
        if scalar == 0:
            return IDENTITY_ENCODING
        return self._remember_half(self._half_of_base_product(scalar))

    def from_hash(self, digest: bytes) -> bytes:
        point = from_uniform(digest)
        return self._remember_full(Element(point, False))

    # Bookkeeping.
    def _combine(self, p: bytes, q: bytes, subtract: bool) -> bytes:
        left, right = self._require(p), self._require(q)
        if q == IDENTITY_ENCODING:
            return p
        if p == IDENTITY_ENCODING and not subtract:
            return q
        if left.halved and right.halved:
            other = negate(right.point) if subtract else right.point
            return self._remember_half(
                Element(add(left.point, other), True, left.prime_order and right.prime_order)
            )
        other = right.full_point()
        total = add(left.full_point(), negate(other) if subtract else other)
        return self._remember_full(Element(total, False, left.prime_order and right.prime_order))

    def _remember_half(self, element: Element) -> bytes:
        return self._remember(encode_double(element.point), element)

    def _remember_full(self, element: Element) -> bytes:
        return self._remember(encode(element.point), element)

    # Another thread may evict an entry between two of these steps: then a
    # point is computed again, nothing worse.
    def _remember(self, encoding: bytes, element: Element) -> bytes:
        elements = self._elements
        if encoding in elements:
            with suppress(KeyError):
                elements.move_to_end(encoding)
        else:
            elements[encoding] = element
            if len(elements) > self._cache_size:
                with suppress(KeyError):
                    elements.popitem(last=False)
        return encoding

    def _element(self, data: bytes) -> Element | None:
        elements = self._elements
        element = elements.get(data)
        if element is not None:
            with suppress(KeyError):
                elements.move_to_end(data)
            return element
        element = self._decode(data)
        if element is not None:
            self._remember(data, element)
        return element

    def _require(self, data: bytes) -> Element:
        element = self._element(data)
        if element is None:
            raise ValueError("not a Ristretto255 point encoding")
        return element
