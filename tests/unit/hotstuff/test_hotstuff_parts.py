"""HotStuff's parts on their own: configuration, signer bitmaps, quorum
signers (individual and BLS aggregate), wire types, the Byzantine wrapper."""

from __future__ import annotations

import random

import pytest
from hotstuff_net import FAST_CONFIG, HmacSigner, HmacVerifier
from hypothesis import given
from hypothesis import strategies as st

from quorate.codec.wire import WireCodec
from quorate.errors import ConfigError
from quorate.hotstuff import (
    BEHAVIOURS,
    GENESIS_QC,
    HOTSTUFF_MESSAGE_TYPES,
    AggregateSignatures,
    Block,
    BlockRequest,
    BlockResponse,
    ByzantineReplica,
    Forward,
    HotStuffConfig,
    HotStuffReplica,
    IndividualSignatures,
    NewView,
    Proposal,
    QuorumCertificate,
    SyncInfo,
    TimeoutCertificate,
    Vote,
    block_hash,
    decode_signers,
    encode_signers,
)
from quorate.hotstuff.messages import vote_bytes
from quorate.ids import NodeId


@pytest.mark.parametrize(
    "field, value",
    [
        ("view_timeout_s", 0.0),
        ("max_view_timeout_s", 0.5),
        ("batch_max", 0),
        ("max_pending_commands", -1),
        ("fetch_max_blocks", 3),
        ("views_per_leader", 0),
        ("retained_blocks", True),
        ("reputation_epoch_blocks", 0),
        ("leader_reputation", 1),
    ],
)
def test_config_rejects_bad_settings_naming_the_field(field: str, value: object) -> None:
    config = HotStuffConfig(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=field):
        config.validate()


def test_default_config_is_valid() -> None:
    assert HotStuffConfig().validate() == HotStuffConfig()


def test_replica_rejects_a_signer_for_another_node_and_unknown_ids() -> None:
    ids = [NodeId(i) for i in range(4)]
    common = dict(config=FAST_CONFIG, verifier=HmacVerifier(), rng=random.Random(0), now=0.0)
    with pytest.raises(ConfigError):
        HotStuffReplica(NodeId(0), ids, signer=HmacSigner(NodeId(1)), **common)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        HotStuffReplica(NodeId(9), ids, signer=HmacSigner(NodeId(9)), **common)  # type: ignore[arg-type]


@given(st.sets(st.integers(min_value=0, max_value=2000)))
def test_signer_bitmap_round_trips(nodes: set[int]) -> None:
    assert decode_signers(encode_signers(map(NodeId, nodes))) == sorted(nodes)


def _partials(message: bytes, nodes: list[int]) -> dict[NodeId, bytes]:
    return {NodeId(i): HmacSigner(NodeId(i)).sign(message) for i in nodes}


def test_individual_signatures_check_every_signer() -> None:
    qs = IndividualSignatures(HmacVerifier())
    message = vote_bytes(3, b"h" * 32)
    signers, sigs = qs.combine(message, _partials(message, [2, 0, 1]))
    assert decode_signers(signers) == [0, 1, 2]
    assert qs.verify(message, signers, sigs)
    assert not qs.verify(vote_bytes(4, b"h" * 32), signers, sigs)  # another view
    assert not qs.verify(message, signers, sigs[:2])  # a signature missing
    assert not qs.verify(message, encode_signers([NodeId(0), NodeId(1), NodeId(3)]), sigs)
    assert not qs.verify(message, b"", ())


def test_bls_aggregate_certificate_verifies_once_and_rejects_a_wrong_bitmap() -> None:
    bls = pytest.importorskip("quorate.crypto.bls")
    keys = bls.bls_cluster_keys(b"hotstuff-test", [NodeId(i) for i in range(4)])
    verifier = bls.BlsVerifier({n: k.public_key for n, k in keys.items()})
    qs = AggregateSignatures(verifier)
    message = vote_bytes(7, b"b" * 32)
    partials = {
        NodeId(n): bls.BlsSigner(NodeId(n), keys[n].secret_key).sign(message) for n in (0, 1, 3)
    }
    signers, sigs = qs.combine(message, partials)
    assert len(sigs) == 1 and decode_signers(signers) == [0, 1, 3]
    assert qs.verify(message, signers, sigs)
    assert not qs.verify(message, encode_signers([NodeId(0), NodeId(1), NodeId(2)]), sigs)
    assert not qs.verify(vote_bytes(8, b"b" * 32), signers, sigs)
    # A replica using it accepts a QC made this way (and only a quorum).
    r = HotStuffReplica(
        NodeId(2), list(keys), config=FAST_CONFIG, signer=bls.BlsSigner(NodeId(2), keys[2].secret_key),
        verifier=verifier, rng=random.Random(0), now=0.0, quorum_signer=qs,
    )
    small, small_sigs = qs.combine(message, {NodeId(n): partials[NodeId(n)] for n in (0, 1)})
    assert not r._check_qc(QuorumCertificate(7, b"b" * 32, small, small_sigs))
    assert r._check_qc(QuorumCertificate(7, b"b" * 32, signers, sigs))


def _samples() -> list[object]:
    tc = TimeoutCertificate(3, b"\x07", (b"a", b"b", b"c"))
    block = Block(b"p" * 32, 4, 2, 1, QuorumCertificate(3, b"p" * 32, b"\x0b", (b"s",)), (b"cmd",), b"\x01")
    return [
        Proposal(block, b"sig", tc),
        Vote(4, block_hash(block), 2, b"v", b"ps"),
        NewView(5, 3, b"nv", GENESIS_QC, tc),
        SyncInfo(GENESIS_QC, None),
        SyncInfo(GENESIS_QC, tc, QuorumCertificate(3, b"p" * 32, b"\x0b", (b"s",))),
        BlockRequest(b"x" * 32, 8),
        BlockResponse((block,)),
        Forward((b"a", b"b")),
    ]


def test_every_message_round_trips_through_the_wire_codec() -> None:
    codec = WireCodec(HOTSTUFF_MESSAGE_TYPES)
    for message in _samples():
        sender, decoded = codec.decode(codec.encode(NodeId(3), message))  # type: ignore[arg-type]
        assert sender == 3 and decoded == message


def test_block_hash_covers_every_field() -> None:
    block = Block(b"p" * 32, 4, 2, 1, GENESIS_QC, (b"cmd",))
    variants = [
        Block(b"q" * 32, 4, 2, 1, GENESIS_QC, (b"cmd",)),
        Block(b"p" * 32, 5, 2, 1, GENESIS_QC, (b"cmd",)),
        Block(b"p" * 32, 4, 3, 1, GENESIS_QC, (b"cmd",)),
        Block(b"p" * 32, 4, 2, 2, GENESIS_QC, (b"cmd",)),
        Block(b"p" * 32, 4, 2, 1, QuorumCertificate(1, b"p" * 32), (b"cmd",)),
        Block(b"p" * 32, 4, 2, 1, GENESIS_QC, (b"cme",)),
        Block(b"p" * 32, 4, 2, 1, GENESIS_QC, (b"cmd",), b"\x01"),
    ]
    assert len({block_hash(b) for b in [block, *variants]}) == len(variants) + 1


def test_byzantine_wrapper_rejects_unknown_behaviours_and_keeps_the_contract() -> None:
    ids = [NodeId(i) for i in range(4)]

    def inner() -> HotStuffReplica:
        return HotStuffReplica(
            NodeId(0), ids, config=FAST_CONFIG, signer=HmacSigner(NodeId(0)),
            verifier=HmacVerifier(), rng=random.Random(0), now=0.0,
        )

    with pytest.raises(ConfigError):
        ByzantineReplica(inner(), "teleport", rng=random.Random(0), signer=HmacSigner(NodeId(0)), peers=ids)
    for behaviour in BEHAVIOURS:
        b = ByzantineReplica(
            inner(), behaviour, rng=random.Random(0), signer=HmacSigner(NodeId(0)), peers=ids,
            view_timeout_s=FAST_CONFIG.view_timeout_s,
        )
        assert b.id == 0
        b.propose(b"x", 0.0)  # node 0 leads view 1: it proposes at once
        ready = b.ready()
        b.advance(ready)
        sent = [m for _, m in ready.messages]
        if behaviour == "silent":
            assert sent == []
        if behaviour == "slow":
            assert not any(isinstance(m, Proposal) for m in sent)
            assert ready.wake_at is not None and ready.wake_at < FAST_CONFIG.view_timeout_s
            b.tick(ready.wake_at)
            assert any(isinstance(m, Proposal) for _, m in b.ready().messages)
        if behaviour == "equivocate":
            blocks = {block_hash(m.block) for m in sent if isinstance(m, Proposal)}
            assert len(blocks) == 2
