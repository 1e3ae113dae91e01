"""A cost-model signer and verifier for the deterministic simulator.

Theory of operation. Simulating 1000 nodes with real BLS would spend the
simulator's own CPU on pairings; leaving crypto out would make Byzantine
protocols look free. So the simulator plugs these in instead of the real
schemes (DESIGN.md, "Signatures go through a Signer/Verifier passed in"):

- A signature is a keyed BLAKE2b tag of the data under the signer's secret
  (derived from a cluster seed), padded with zeros to the real scheme's size
  so messages weigh what they would on the wire. No node can make another
  node's tag without its secret, so forged, altered or misattributed
  signatures are still rejected and Byzantine tests stay meaningful.
- An aggregate is the XOR of its partial tags (like a BLS sum: computable
  only from the partials themselves); a threshold signature is the group's
  tag, released by ``combine`` only for t valid partials.
- Every call adds the CPU seconds the *real* primitive costs on this kind of
  machine to ``spent_s`` (a ``CpuMeter`` shared by a node's signer and
  verifier); the simulator reads and resets it (``take``) after each step and
  delays the node's output by that much.

The figures are a ``CryptoCosts``; the defaults were measured with
``quorate bench crypto --json`` (see its docstring).

Invariant: verification never raises on peer input; the meter is charged the
same whether a check succeeds or fails (a real verifier does the same work).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from quorate.errors import LocalProtocolError
from quorate.ids import NodeId

TAG_SIZE_BYTES = 32

_SECRET_DOMAIN = b"quorate/costmodel/node-secret/v1"
_SHARE_DOMAIN = b"quorate/costmodel/share-secret/v1"
_GROUP_DOMAIN = b"quorate/costmodel/group-secret/v1"


@dataclass(frozen=True, slots=True)
class CryptoCosts:
    """CPU seconds per call of the real primitives, as the simulator charges them.

    Defaults: the ``crypto_costs_s`` of ``quorate bench crypto --json
    --iterations 200`` — medians of thread CPU time (``time.thread_time_ns``)
    after a warm-up, microsecond-scale operations timed in batches of 100 —
    on a shared 2-core x86-64 Linux machine, Python 3.11, PyNaCl 1.6
    (libsodium), blspy 2.0.3. Messages are 32-byte digests.
    Linear terms are fitted through the two end points the benchmark measures
    (aggregates of 4 and 100 signatures; threshold t=5 and t=21). Re-run the
    command on the target hardware and pass a new ``CryptoCosts`` to model it.
    """

    ed25519_sign_s: float = 13.8e-6
    ed25519_verify_s: float = 37.0e-6
    bls_sign_s: float = 256.0e-6
    bls_verify_s: float = 879.0e-6
    bls_aggregate_per_signature_s: float = 58.7e-6
    """Decoding one partial (with its subgroup check) and adding it in."""
    bls_aggregate_verify_base_s: float = 887.0e-6
    bls_aggregate_verify_per_signer_s: float = 0.585e-6
    """One G1 addition per signer's public key, on top of the pairing check."""
    threshold_combine_base_s: float = 380.0e-6
    threshold_combine_per_share_s: float = 144.0e-6
    mac_create_per_receiver_s: float = 1.58e-6
    mac_verify_s: float = 1.65e-6

    def aggregate_verify_s(self, signers: int) -> float:
        """FastAggregateVerify over ``signers`` public keys: one pairing check
        plus one G1 addition per key."""
        return self.bls_aggregate_verify_base_s + signers * self.bls_aggregate_verify_per_signer_s

    def threshold_combine_s(self, threshold: int) -> float:
        """Lagrange interpolation of ``threshold`` partial signatures."""
        return self.threshold_combine_base_s + threshold * self.threshold_combine_per_share_s


class Scheme(enum.Enum):
    """Which real signature scheme the cost model stands in for."""

    ED25519 = "ed25519"
    BLS = "bls"

    @property
    def signature_size_bytes(self) -> int:
        return 64 if self is Scheme.ED25519 else 96


class CpuMeter:
    """CPU seconds charged since the simulator last looked."""

    __slots__ = ("spent_s",)

    def __init__(self) -> None:
        self.spent_s = 0.0

    def charge(self, seconds: float) -> None:
        self.spent_s += seconds

    def take(self) -> float:
        """Return the charge so far and reset it to zero."""
        spent, self.spent_s = self.spent_s, 0.0
        return spent


class CostModelKeys:
    """Per-node secrets derived from one cluster ``seed`` (derived once, cached).

    The simulator holds this object; a node only ever gets its own signer.
    """

    __slots__ = ("_aggregates", "_cache", "_seed")

    def __init__(self, seed: bytes) -> None:
        self._seed = hashlib.sha256(seed).digest()
        self._cache: dict[tuple[bytes, int], bytes] = {}
        self._aggregates: dict[tuple[int, bytes], bytes] = {}

    def secret(self, node: int, domain: bytes = _SECRET_DOMAIN) -> bytes:
        """The secret key of ``node`` (or of share ``node`` under another domain)."""
        slot = (domain, int(node))
        key = self._cache.get(slot)
        if key is None:
            key = hmac.digest(self._seed, domain + int(node).to_bytes(8, "big", signed=True), "sha256")
            self._cache[slot] = key
        return key

    def aggregate_tag(self, bitmap: int, message: bytes) -> bytes:
        """The XOR of the tags of every node in ``bitmap`` over ``message``.

        Every replica checks the same quorum certificate, so the simulator
        computes each (bitmap, message) once and remembers it: without this a
        QC of 2f + 1 signers checked by n replicas costs the simulator n(2f + 1)
        keyed hashes (what it *charges* the nodes is unchanged). The memory is
        bounded: the table is emptied when it reaches
        ``AGGREGATE_CACHE_ENTRIES``."""
        slot = (bitmap, message)
        found = self._aggregates.get(slot)
        if found is not None:
            return found
        expected = 0
        node = 0
        rest = bitmap
        while rest:
            if rest & 1:
                expected ^= int.from_bytes(_tag(self.secret(node), message), "big")
            rest >>= 1
            node += 1
        tag = expected.to_bytes(TAG_SIZE_BYTES, "big")
        if len(self._aggregates) >= AGGREGATE_CACHE_ENTRIES:
            self._aggregates.clear()
        self._aggregates[slot] = tag
        return tag


AGGREGATE_CACHE_ENTRIES = 4096
"""Aggregate tags the simulator remembers (see ``CostModelKeys.aggregate_tag``)."""


def _tag(secret: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(data, key=secret, digest_size=TAG_SIZE_BYTES).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class CostModelSigner:
    """Signs as ``node`` with a keyed hash; charges the real scheme's signing cost."""

    __slots__ = ("_node", "_padding", "_secret", "_sign_s", "meter")

    def __init__(
        self,
        node: NodeId,
        keys: CostModelKeys,
        costs: CryptoCosts | None = None,
        scheme: Scheme = Scheme.ED25519,
        meter: CpuMeter | None = None,
    ) -> None:
        costs = costs or CryptoCosts()
        self._node = node
        self._secret = keys.secret(node)
        self._padding = bytes(scheme.signature_size_bytes - TAG_SIZE_BYTES)
        self._sign_s = costs.ed25519_sign_s if scheme is Scheme.ED25519 else costs.bls_sign_s
        self.meter = meter or CpuMeter()

    @property
    def node(self) -> NodeId:
        return self._node

    @property
    def spent_s(self) -> float:
        return self.meter.spent_s

    @spent_s.setter
    def spent_s(self, value: float) -> None:
        self.meter.spent_s = value

    def sign(self, data: bytes) -> bytes:
        self.meter.charge(self._sign_s)
        return _tag(self._secret, data) + self._padding


class CostModelVerifier:
    """Checks cost-model signatures of any node and BLS-style aggregates of them,
    charging what the real verification costs. Same surface as ``BlsVerifier``
    for aggregates (``aggregate``, ``verify_aggregate``, ``find_bad_partials``,
    ``certify``) so a protocol core runs unchanged on either."""

    __slots__ = ("_costs", "_keys", "_padding", "_scheme", "_size", "_verify_s", "meter")

    def __init__(
        self,
        keys: CostModelKeys,
        costs: CryptoCosts | None = None,
        scheme: Scheme = Scheme.ED25519,
        meter: CpuMeter | None = None,
    ) -> None:
        self._costs = costs or CryptoCosts()
        self._keys = keys
        self._scheme = scheme
        self._size = scheme.signature_size_bytes
        self._padding = bytes(self._size - TAG_SIZE_BYTES)
        self._verify_s = (
            self._costs.ed25519_verify_s if scheme is Scheme.ED25519 else self._costs.bls_verify_s
        )
        self.meter = meter or CpuMeter()

    @property
    def spent_s(self) -> float:
        return self.meter.spent_s

    @spent_s.setter
    def spent_s(self, value: float) -> None:
        self.meter.spent_s = value

    def _expected(self, node: int, data: bytes) -> bytes:
        return _tag(self._keys.secret(node), data)

    def _well_formed(self, signature: object) -> bool:
        return (
            isinstance(signature, bytes)
            and len(signature) == self._size
            and signature[TAG_SIZE_BYTES:] == self._padding
        )

    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        self.meter.charge(self._verify_s)
        if not isinstance(node, int) or not isinstance(data, bytes):
            return False
        if not self._well_formed(signature):
            return False
        return hmac.compare_digest(signature[:TAG_SIZE_BYTES], self._expected(node, data))

    def aggregate(self, partials: Mapping[NodeId, bytes]) -> tuple[int, bytes]:
        """``(signer_bitmap, aggregate)``: the XOR of the partial tags."""
        if not partials:
            raise LocalProtocolError("cannot aggregate zero signatures")
        self.meter.charge(len(partials) * self._costs.bls_aggregate_per_signature_s)
        bitmap = 0
        combined = bytes(TAG_SIZE_BYTES)
        for node, signature in partials.items():
            if node < 0:
                raise LocalProtocolError(f"node ids in a bitmap must be >= 0, got {node}")
            tag = signature[:TAG_SIZE_BYTES] if isinstance(signature, bytes) else b""
            if len(tag) != TAG_SIZE_BYTES:
                tag = bytes(TAG_SIZE_BYTES)  # malformed: the aggregate will not verify
            bitmap |= 1 << node
            combined = _xor(combined, tag)
        return bitmap, combined + self._padding

    def verify_aggregate(self, bitmap: int, message: bytes, aggregate_signature: bytes) -> bool:
        """True iff every node in ``bitmap`` signed ``message``."""
        if not isinstance(bitmap, int) or bitmap <= 0 or not isinstance(message, bytes):
            return False
        signers = bitmap.bit_count()
        self.meter.charge(self._costs.aggregate_verify_s(signers))
        if not self._well_formed(aggregate_signature):
            return False
        expected = self._keys.aggregate_tag(bitmap, message)
        return hmac.compare_digest(aggregate_signature[:TAG_SIZE_BYTES], expected)

    def find_bad_partials(self, message: bytes, partials: Mapping[NodeId, bytes]) -> list[NodeId]:
        """The nodes whose partial over ``message`` does not verify, in increasing order."""
        return sorted(node for node, sig in partials.items() if not self.verify(node, message, sig))

    def certify(
        self, message: bytes, partials: Mapping[NodeId, bytes]
    ) -> tuple[int, bytes, list[NodeId]]:
        """As ``BlsVerifier.certify``: aggregate, check once, fall back to partials."""
        if partials:
            bitmap, signature = self.aggregate(partials)
            if self.verify_aggregate(bitmap, message, signature):
                return bitmap, signature, []
        bad = self.find_bad_partials(message, partials)
        good = {node: sig for node, sig in partials.items() if node not in bad}
        if not good:
            return 0, b"", bad
        bitmap, signature = self.aggregate(good)
        return bitmap, signature, bad


class CostModelThreshold:
    """t-of-n threshold signatures in the cost model: partials are tags under
    share secrets, the group signature is the tag under a group secret that
    ``combine`` releases only for t valid partials. Charges like BLS.

    Share indices are 1..n as in ``quorate.crypto.threshold``.
    """

    __slots__ = ("_costs", "_group_secret", "_keys", "_padding", "meter", "n", "threshold")

    def __init__(
        self,
        keys: CostModelKeys,
        threshold: int,
        n: int,
        costs: CryptoCosts | None = None,
        meter: CpuMeter | None = None,
    ) -> None:
        if not 1 <= threshold <= n:
            raise LocalProtocolError(f"a threshold must satisfy 1 <= t <= n, got t={threshold}, n={n}")
        self._costs = costs or CryptoCosts()
        self._keys = keys
        self._group_secret = keys.secret(0, _GROUP_DOMAIN)
        self._padding = bytes(Scheme.BLS.signature_size_bytes - TAG_SIZE_BYTES)
        self.threshold = threshold
        self.n = n
        self.meter = meter or CpuMeter()

    @property
    def spent_s(self) -> float:
        return self.meter.spent_s

    @spent_s.setter
    def spent_s(self, value: float) -> None:
        self.meter.spent_s = value

    def _share_tag(self, index: int, message: bytes) -> bytes:
        return _tag(self._keys.secret(index, _SHARE_DOMAIN), message)

    def sign_partial(self, index: int, message: bytes) -> bytes:
        """Share ``index``'s partial signature (the caller is share ``index``)."""
        if not 1 <= index <= self.n:
            raise LocalProtocolError(f"share index must be in 1..{self.n}, got {index}")
        self.meter.charge(self._costs.bls_sign_s)
        return self._share_tag(index, message) + self._padding

    def _partial_ok(self, index: object, message: bytes, partial: object) -> bool:
        return (
            isinstance(index, int)
            and 1 <= index <= self.n
            and isinstance(partial, bytes)
            and len(partial) == Scheme.BLS.signature_size_bytes
            and partial[TAG_SIZE_BYTES:] == self._padding
            and hmac.compare_digest(partial[:TAG_SIZE_BYTES], self._share_tag(index, message))
        )

    def verify_partial(self, index: int, message: bytes, partial: bytes) -> bool:
        self.meter.charge(self._costs.bls_verify_s)
        return isinstance(message, bytes) and self._partial_ok(index, message, partial)

    def combine(self, message: bytes, partials: Mapping[int, bytes]) -> bytes:
        """The group signature from the t lowest-indexed partials, unchecked as in
        the real scheme: bad partials give a signature that does not verify."""
        chosen = sorted(i for i in partials if isinstance(i, int) and 1 <= i <= self.n)
        if len(chosen) < self.threshold:
            raise LocalProtocolError(
                f"need {self.threshold} partial signatures, got {len(chosen)}"
            )
        chosen = chosen[: self.threshold]
        self.meter.charge(self._costs.threshold_combine_s(self.threshold))
        if all(self._partial_ok(i, message, partials[i]) for i in chosen):
            return _tag(self._group_secret, message) + self._padding
        # Junk, as real interpolation of a bad partial gives: never a group tag.
        junk = bytes(TAG_SIZE_BYTES)
        for i in chosen:
            part = partials[i]
            tag = part[:TAG_SIZE_BYTES] if isinstance(part, bytes) else b""
            junk = _xor(junk, tag.ljust(TAG_SIZE_BYTES, b"\x00"))
        return junk + self._padding

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is the group's signature over ``message``."""
        self.meter.charge(self._costs.bls_verify_s)
        if not isinstance(message, bytes) or not isinstance(signature, bytes):
            return False
        if len(signature) != Scheme.BLS.signature_size_bytes:
            return False
        expected = _tag(self._group_secret, message) + self._padding
        return hmac.compare_digest(signature, expected)
