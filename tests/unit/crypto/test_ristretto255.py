"""Ristretto255 on every backend: RFC 9496 Appendix A (multiples of the
generator, invalid encodings, the one-way map, SQRT_RATIO_M1), the group
laws, and byte-for-byte agreement of the backends on random inputs."""

from __future__ import annotations

from collections.abc import Iterator

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.crypto import ristretto255 as group
from quorate.crypto import ristretto_nacl, ristretto_py
from quorate.crypto.ristretto_py import PythonRistretto

BACKENDS = group.available_backends()
FAST = settings(max_examples=40, deadline=None)

# RFC 9496 A.1: the encodings of 0·G, 1·G, ..., 15·G.
MULTIPLES_OF_G = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76",
    "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919",
    "94741f5d5d52755ece4f23f044ee27d5d1ea1e2bd196b462166b16152a9d0259",
    "da80862773358b466ffadfe0b3293ab3d9fd53c5ea6c955358f568322daf6a57",
    "e882b131016b52c1d3337080187cf768423efccbb517bb495ab812c4160ff44e",
    "f64746d3c92b13050ed8d80236a7f0007c3b3f962f5ba793d19a601ebb1df403",
    "44f53520926ec81fbd5a387845beb7df85a96a24ece18738bdcfa6a7822a176d",
    "903293d8f2287ebe10e2374dc1a53e0bc887e592699f02d077d5263cdd55601c",
    "02622ace8f7303a31cafc63f8fc48fdc16e1c8c8d234b2f0d6685282a9076031",
    "20706fd788b2720a1ed2a5dad4952b01f413bcf0e7564de8cdc816689e2db95f",
    "bce83f8ba5dd2fa572864c24ba1810f9522bc6004afe95877ac73241cafdab42",
    "e4549ee16b9aa03099ca208c67adafcafa4c3f3e4e5303de6026e3ca8ff84460",
    "aa52e000df2e16f55fb1032fc33bc42742dad6bd5a8fc0be0167436c5948501f",
    "46376b80f409b29dc2b5f6f0c52591990896e5716f41477cd30085ab7f10301e",
    "e0c418f7c8d9c4cdd7395b93ea124f3ad99021bb681dfc3302a9d99a2e53e64e",
]

# RFC 9496 A.2, by the reason each must be refused.
INVALID_ENCODINGS = {
    "non-canonical field element": [
        "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ],
    "negative field element": [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20",
        "c34c4e1826e5d403b78e246e88aa051c36ccf0aafebffe137d148a2bf9104562",
        "c940e5a4404157cfb1628b108db051a8d439e1a421394ec4ebccb9ec92a8ac78",
        "47cfc5497c53dc8e61c91d17fd626ffb1c49e2bca94eed052281b510b1117a24",
        "f1c6165d33367351b0da8f6e4511010c68174a03b6581212c71c0e1d026c3c72",
        "87260f7a2f12495118360f02c26a470f450dadf34a413d21042b43b9d93e1309",
    ],
    "non-square x²": [
        "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
        "4eac077a713c57b4f4397629a4145982c661f48044dd3f96427d40b147d9742f",
        "de6a7b00deadc788eb6b6c8d20c0ae96c2f2019078fa604fee5b87d6e989ad7b",
        "bcab477be20861e01e4a0e295284146a510150d9817763caf1a6f4b422d67042",
        "2a292df7e32cababbd9de088d1d1abec9fc0440f637ed2fba145094dc14bea08",
        "f4a9e534fc0d216c44b218fa0c42d99635a0127ee2e53c712f70609649fdff22",
        "8268436f8c4126196cf64b3c7ddbda90746a378625f9813dd9b8457077256731",
        "2810e5cbc2cc4d4eece54f61c6f69758e289aa7ab440b3cbeaa21995c2f4232b",
    ],
    "negative x·y": [
        "3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e",
        "a45fdc55c76448c049a1ab33f17023edfb2be3581e9c7aade8a6125215e04220",
        "d483fe813c6ba647ebbfd3ec41adca1c6130c2beeee9d9bf065c8d151c5f396e",
        "8a2e1d30050198c65a54483123960ccc38aef6848e1ec8f5f780e8523769ba32",
        "32888462f8b486c68ad7dd9610be5192bbeaf3b443951ac1a8118419d9fa097b",
        "227142501b9d4355ccba290404bde41575b037693cef1f438c47f8fbf35d1165",
        "5c37cc491da847cfeb9281d407efc41e15144c876e0170b499a96a22ed31e01e",
        "445425117cb8c90edcbc7c1cc0e74f747f2c1efa5630a967c64f287792a48a4b",
    ],
    "s = -1, so y = 0": [
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ],
}

# RFC 9496 A.3: the one-way map (64 uniform bytes -> element).
FROM_UNIFORM = [
    (
        "5d1be09e3d0c82fc538112490e35701979d99e06ca3e2b5b54bffe8b4dc772c1"
        "4d98b696a1bbfb5ca32c436cc61c16563790306c79eaca7705668b47dffe5bb6",
        "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46",
    ),
    (
        "f116b34b8f17ceb56e8732a60d913dd10cce47a6d53bee9204be8b44f6678b27"
        "0102a56902e2488c46120e9276cfe54638286b9e4b3cdb470b542d46c2068d38",
        "f26e5b6f7d362d2d2a94c5d0e7602cb4773c95a2e5c31a64f133189fa76ed61b",
    ),
    (
        "8422e1bbdaab52938b81fd602effb6f89110e1e57208ad12d9ad767e2e25510c"
        "27140775f9337088b982d83d7fcf0b2fa1edffe51952cbe7365e95c86eaf325c",
        "006ccd2a9e6867e6a2c5cea83d3302cc9de128dd2a9a57dd8ee7b9d7ffe02826",
    ),
    (
        "ac22415129b61427bf464e17baee8db65940c233b98afce8d17c57beeb7876c2"
        "150d15af1cb1fb824bbd14955f2b57d08d388aab431a391cfc33d5bafb5dbbaf",
        "f8f0c87cf237953c5890aec3998169005dae3eca1fbb04548c635953c817f92a",
    ),
    (
        "165d697a1ef3d5cf3c38565beefcf88c0f282b8e7dbd28544c483432f1cec767"
        "5debea8ebb4e5fe7d6f6e5db15f15587ac4d4d4a1de7191e0c1ca6664abcc413",
        "ae81e7dedf20a497e10c304a765c1767a42d6e06029758d2d7e8ef7cc4c41179",
    ),
    (
        "a836e6c9a9ca9f1e8d486273ad56a78c70cf18f0ce10abb1c7172ddd605d7fd2"
        "979854f47ae1ccf204a33102095b4200e5befc0465accc263175485f0e17ea5c",
        "e2705652ff9f5e44d3e841bf1c251cf7dddb77d140870d1ab2ed64f1a9ce8628",
    ),
    (
        "2cdc11eaeb95daf01189417cdddbf95952993aa9cb9c640eb5058d09702c7462"
        "2c9965a697a3b345ec24ee56335b556e677b30e6f90ac77d781064f866a3c982",
        "80bd07262511cdde4863f8a7434cef696750681cb9510eea557088f76d9e5065",
    ),
]
# A.3 also: field elements given non-canonically (>= p, top bit set) are
# reduced, so these four inputs map to one element.
FROM_UNIFORM_SAME_OUTPUT = (
    [
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "1200000000000000000000000000000000000000000000000000000000000000",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "0000000000000000000000000000000000000000000000000000000000000080"
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000"
        "1200000000000000000000000000000000000000000000000000000000000080",
    ],
    "304282791023b73128d277bdcb5c7746ef2eac08dde9f2983379cb8e5ef0517f",
)

# RFC 9496 A.4: SQRT_RATIO_M1(u, v) -> (was_square, r), little-endian.
SQRT_RATIO = [
    ("00", "00", True, "00"),
    ("00", "01", True, "00"),
    ("01", "00", False, "00"),
    ("02", "01", False, "3c5ff1b5d8e4113b871bd052f9e7bcd0582804c266ffb2d4f4203eb07fdb7c54"),
    ("04", "01", True, "02"),
    ("01", "04", True, "f6ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff3f"),
]


def _field(hex_le: str) -> int:
    return int.from_bytes(bytes.fromhex(hex_le), "little")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    name: str = request.param
    with group.using_backend(name):
        group.clear_cache()
        yield name


def test_every_machine_has_the_pip_only_backends() -> None:
    assert {"pynacl", "python"} <= set(BACKENDS)
    assert group.backend_name() in BACKENDS


def test_a1_multiples_of_the_generator(backend: str) -> None:
    total = group.IDENTITY
    for k, expected in enumerate(MULTIPLES_OF_G):
        encoding = bytes.fromhex(expected)
        assert group.scalar_mult_base(k) == encoding, k
        assert group.scalar_mult(k, group.GENERATOR) == encoding, k
        assert total == encoding, k
        assert group.decode(encoding) == encoding
        total = group.add(total, group.GENERATOR)
    for i, first in enumerate(MULTIPLES_OF_G):
        for j, second in enumerate(MULTIPLES_OF_G[: i + 1]):
            group.clear_cache()  # decode, not recall
            difference = group.sub(bytes.fromhex(first), bytes.fromhex(second))
            assert difference == bytes.fromhex(MULTIPLES_OF_G[i - j]), (i, j)


@pytest.mark.parametrize(
    ("reason", "encoding"),
    [(reason, e) for reason, encodings in INVALID_ENCODINGS.items() for e in encodings],
)
def test_a2_invalid_encodings_are_refused(backend: str, reason: str, encoding: str) -> None:
    data = bytes.fromhex(encoding)
    assert not group.is_point(data), reason
    assert group.decode(data) is None
    with pytest.raises(ValueError):
        group.add(data, group.GENERATOR)
    with pytest.raises(ValueError):
        group.sub(group.GENERATOR, data)
    with pytest.raises(ValueError):
        group.scalar_mult(3, data)


def test_a2_counts_every_vector() -> None:
    assert sum(len(e) for e in INVALID_ENCODINGS.values()) == 29


def test_the_top_bit_makes_an_encoding_non_canonical(backend: str) -> None:
    # RFC 9496 reads all 32 bytes as the integer s, so 2^255 + s >= p is
    # refused; libsodium 1.0.18 masked the bit and accepted these.
    for encoding in (*MULTIPLES_OF_G[1:], "00" * 31 + "80"):
        data = bytearray.fromhex(encoding)
        data[31] |= 0x80
        assert not group.is_point(bytes(data)), encoding
        with pytest.raises(ValueError):
            group.add(bytes(data), group.IDENTITY)
        with pytest.raises(ValueError):
            group.scalar_mult(2, bytes(data))


def test_a3_the_one_way_map(backend: str) -> None:
    for uniform, expected in FROM_UNIFORM:
        assert group.from_hash(bytes.fromhex(uniform)).hex() == expected
    inputs, expected = FROM_UNIFORM_SAME_OUTPUT
    for uniform in inputs:
        assert group.from_hash(bytes.fromhex(uniform)).hex() == expected


def test_a4_sqrt_ratio_m1() -> None:
    for u, v, was_square, r in SQRT_RATIO:
        assert ristretto_py.sqrt_ratio_m1(_field(u), _field(v)) == (was_square, _field(r))


def test_the_constants_are_the_roots_they_are_named_for() -> None:
    p, d = ristretto_py.FIELD_PRIME, ristretto_py.EDWARDS_D
    assert ristretto_py._SQRT_M1**2 % p == p - 1
    assert ristretto_py._SQRT_AD_MINUS_ONE**2 % p == (-d - 1) % p
    assert ristretto_py._INVSQRT_A_MINUS_D**2 * (-1 - d) % p == 1
    assert ristretto_py._SQRT_A_MINUS_D**2 % p == (-1 - d) % p
    x, y, z, t = ristretto_py.BASE_POINT
    assert z == 1 and x * y % p == t
    assert (-x * x + y * y) % p == (1 + d * x * x * y * y) % p
    base = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp((1).to_bytes(32, "little"))
    assert ristretto_py.ed25519_bytes(ristretto_py.BASE_POINT) == base


def test_the_identity_and_reduced_scalars(backend: str) -> None:
    g, order = group.GENERATOR, group.GROUP_ORDER
    assert group.scalar_mult(0, g) == group.IDENTITY
    assert group.scalar_mult(order, g) == group.IDENTITY
    assert group.scalar_mult(5, group.IDENTITY) == group.IDENTITY
    assert group.scalar_mult_base(order) == group.IDENTITY
    assert group.scalar_mult_base(order + 2) == bytes.fromhex(MULTIPLES_OF_G[2])
    assert group.scalar_mult(-1, g) == group.sub(group.IDENTITY, g)
    assert group.add(g, group.sub(group.IDENTITY, g)) == group.IDENTITY
    assert group.sub(g, g) == group.IDENTITY
    assert group.add(group.IDENTITY, group.IDENTITY) == group.IDENTITY


def test_inputs_that_are_not_32_bytes(backend: str) -> None:
    for bad in (b"", group.GENERATOR[:31], group.GENERATOR + b"\x00", "text", None):
        assert not group.is_point(bad)
        assert group.decode(bad) is None
        with pytest.raises(ValueError):
            group.add(bad, group.GENERATOR)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            group.scalar_mult(1, bad)  # type: ignore[arg-type]
    assert group.decode(bytearray(group.GENERATOR)) == group.GENERATOR
    with pytest.raises(ValueError):
        group.from_hash(bytes(63))


# -- the backends agree ---------------------------------------------------------
scalars = st.integers(min_value=0, max_value=group.GROUP_ORDER - 1)
uniform = st.binary(min_size=64, max_size=64)


def _each_backend(call: object, *args: object) -> set[object]:
    """``call(*args)`` under every backend, starting cold and then warm."""
    results = set()
    for name in BACKENDS:
        with group.using_backend(name):
            for _ in range(2):
                group.clear_cache()
                results.add(call(*args))  # type: ignore[operator]
            results.add(call(*args))  # type: ignore[operator]
    return results


@FAST
@given(a=scalars, b=scalars, h=uniform)
def test_backends_agree_on_arithmetic(a: int, b: int, h: bytes) -> None:
    [p] = _each_backend(group.scalar_mult_base, a)
    [q] = _each_backend(group.from_hash, h)
    [total] = _each_backend(group.add, p, q)
    [difference] = _each_backend(group.sub, p, q)
    [product] = _each_backend(group.scalar_mult, b, q)
    [chained] = _each_backend(group.scalar_mult, a, group.sub(product, p))
    assert len(_each_backend(group.add, product, total)) == 1
    assert len(_each_backend(group.sub, difference, chained)) == 1
    assert group.sub(total, q) == p
    assert group.scalar_mult(b, group.scalar_mult(a, q)) == group.scalar_mult(a * b, q)


@FAST
@given(data=st.binary(min_size=32, max_size=32))
def test_backends_agree_on_what_decodes(data: bytes) -> None:
    assert len(_each_backend(group.is_point, data)) == 1
    # Even strings are canonical half the time: make sure some are points.
    [point] = _each_backend(group.from_hash, data + data)
    assert _each_backend(group.is_point, point) == {True}
    assert _each_backend(group.decode, point) == {point}


@FAST
@given(a=scalars, b=scalars)
def test_python_multiplication_matches_its_definition(a: int, b: int) -> None:
    base = ristretto_py.BASE_POINT
    expected = ristretto_py.encode(ristretto_py.multiply(a, base))
    assert ristretto_py.encode(ristretto_py.multiply_base(a)) == expected
    half = ristretto_py.multiply(a * ristretto_py._HALF % group.GROUP_ORDER, base)
    assert ristretto_py.encode_double(half) == expected
    q = ristretto_py.from_uniform(a.to_bytes(32, "little") + b.to_bytes(32, "little"))
    total = ristretto_py.add(ristretto_py.multiply(a, q), ristretto_py.multiply(b, q))
    assert ristretto_py.encode(total) == ristretto_py.encode(ristretto_py.multiply(a + b, q))


def test_a_tiny_cache_changes_nothing_but_speed() -> None:
    tiny = PythonRistretto(cache_size=1)
    roomy = PythonRistretto()
    for backend_ in (tiny, roomy):
        p = backend_.scalar_mult_base(7)
        q = backend_.from_hash(bytes(range(64)))
        r = backend_.scalar_mult(11, backend_.add(p, q))
        assert r == group.scalar_mult(11, group.add(p, q))
        assert backend_.sub(r, p) == group.sub(r, p)


def test_pynacl_falls_back_to_a_square_root_when_the_addition_law_is_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # x is read off Q + B unless 1 + d·y·yB·y3 = 0; force that branch.
    monkeypatch.setattr(ristretto_nacl, "_x_beside_base", lambda y, y3: None)
    fallback = ristretto_nacl.PyNaClRistretto()
    for k, expected in enumerate(MULTIPLES_OF_G):
        encoding = bytes.fromhex(expected)
        assert fallback.scalar_mult_base(k) == encoding
        assert fallback.is_point(encoding)
    point = group.from_hash(bytes(64))
    fallback.clear_cache()
    assert fallback.scalar_mult(5, point) == group.scalar_mult(5, point)
    for encodings in INVALID_ENCODINGS.values():
        assert not any(fallback.is_point(bytes.fromhex(e)) for e in encodings)
