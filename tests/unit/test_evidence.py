"""Equivocation evidence: conflicts are found, verified by third parties,
and forged or non-conflicting 'evidence' is refused."""

from __future__ import annotations

import hashlib
import hmac

from quorate.core.evidence import (
    Evidence,
    EvidencePool,
    sign_statement,
)
from quorate.ids import NodeId


class KeyedSigner:
    def __init__(self, node: int) -> None:
        self._node = NodeId(node)

    @property
    def node(self) -> NodeId:
        return self._node

    def sign(self, data: bytes) -> bytes:
        return hmac.new(b"secret-%d" % self._node, data, hashlib.sha256).digest()


class KeyedVerifier:
    def verify(self, node: NodeId, data: bytes, signature: bytes) -> bool:
        expected = hmac.new(b"secret-%d" % node, data, hashlib.sha256).digest()
        return hmac.compare_digest(expected, signature)


def test_conflicting_statements_become_evidence_that_others_accept() -> None:
    liar = KeyedSigner(3)
    a = sign_statement(liar, "vote", 10, 0, b"block-A")
    b = sign_statement(liar, "vote", 10, 0, b"block-B")
    pool = EvidencePool(KeyedVerifier())
    assert pool.observe(a) is None
    assert pool.observe(a) is None  # the same statement twice is not a conflict
    evidence = pool.observe(b)
    assert evidence is not None and evidence.offender == 3 and pool.is_excluded(NodeId(3))
    other = EvidencePool(KeyedVerifier())
    assert other.receive(evidence) and other.is_excluded(NodeId(3))
    assert not other.receive(evidence)  # already convicted


def test_statements_in_different_slots_do_not_conflict() -> None:
    s = KeyedSigner(1)
    pool = EvidencePool(KeyedVerifier())
    assert pool.observe(sign_statement(s, "vote", 1, 0, b"x")) is None
    assert pool.observe(sign_statement(s, "vote", 2, 0, b"y")) is None
    assert pool.observe(sign_statement(s, "proposal", 1, 0, b"y")) is None
    assert not pool.excluded


def test_framing_an_honest_node_is_refused() -> None:
    honest = KeyedSigner(2)
    forger = KeyedSigner(9)
    real = sign_statement(honest, "vote", 5, 0, b"A")
    fake = sign_statement(forger, "vote", 5, 0, b"B")
    framed = Evidence(real, type(fake)(2, "vote", 5, 0, b"B", fake.signature))
    pool = EvidencePool(KeyedVerifier())
    assert not pool.receive(framed) and not pool.excluded
    same_payload = Evidence(real, real)
    assert not pool.receive(same_payload)


def test_forget_below_bounds_memory() -> None:
    s = KeyedSigner(1)
    pool = EvidencePool(KeyedVerifier())
    for h in range(100):
        pool.observe(sign_statement(s, "vote", h, 0, b"x"))
    pool.forget_below(90)
    assert pool.statements() == 10
