"""The cost model's remembered aggregate tags: the same answers as computing
each from the signers' tags, forgeries still refused, the table bounded, the
charge unchanged."""

from __future__ import annotations

from quorate.crypto import costmodel
from quorate.crypto.costmodel import (
    CostModelKeys,
    CostModelSigner,
    CostModelVerifier,
    CryptoCosts,
    Scheme,
)
from quorate.ids import NodeId

MESSAGE = b"a block to vote for"


def _signed(keys: CostModelKeys, nodes: range, message: bytes = MESSAGE) -> dict[NodeId, bytes]:
    return {NodeId(n): CostModelSigner(NodeId(n), keys, scheme=Scheme.BLS).sign(message) for n in nodes}


def test_a_remembered_aggregate_verifies_like_a_fresh_one_and_refuses_forgeries() -> None:
    keys = CostModelKeys(b"seed")
    verifier = CostModelVerifier(keys, scheme=Scheme.BLS)
    bitmap, aggregate = verifier.aggregate(_signed(keys, range(7)))
    for _ in range(3):  # first computed, then remembered
        assert verifier.verify_aggregate(bitmap, MESSAGE, aggregate)
    assert not verifier.verify_aggregate(bitmap | 1 << 7, MESSAGE, aggregate)  # a signer who did not sign
    assert not verifier.verify_aggregate(bitmap, b"another block", aggregate)
    other_bitmap, partial = verifier.aggregate(_signed(keys, range(6)))
    assert not verifier.verify_aggregate(bitmap, MESSAGE, partial)
    assert verifier.verify_aggregate(other_bitmap, MESSAGE, partial)


def test_every_verification_is_charged_whether_remembered_or_not() -> None:
    keys = CostModelKeys(b"seed")
    costs = CryptoCosts()
    verifier = CostModelVerifier(keys, costs, scheme=Scheme.BLS)
    bitmap, aggregate = verifier.aggregate(_signed(keys, range(5)))
    verifier.meter.take()
    verifier.verify_aggregate(bitmap, MESSAGE, aggregate)
    verifier.verify_aggregate(bitmap, MESSAGE, aggregate)
    assert verifier.meter.take() == 2 * costs.aggregate_verify_s(5)


def test_the_table_of_remembered_tags_is_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(costmodel, "AGGREGATE_CACHE_ENTRIES", 4)
    keys = CostModelKeys(b"seed")
    verifier = CostModelVerifier(keys, scheme=Scheme.BLS)
    bitmap, aggregate = verifier.aggregate(_signed(keys, range(3)))
    for i in range(10):
        keys.aggregate_tag(bitmap, b"message %d" % i)
        assert len(keys._aggregates) <= 4
    assert verifier.verify_aggregate(bitmap, MESSAGE, aggregate)
