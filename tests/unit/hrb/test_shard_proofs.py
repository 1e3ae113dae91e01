"""The hash chain, commit certificates and the commit quorums, tested where
they are implemented (``quorate.hrb.shard.chain`` and ``.proofs``)."""

from __future__ import annotations

import hashlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.hrb.shard_net import ShardNet, txn

from quorate.core.ready import Entry
from quorate.errors import ConfigError
from quorate.hrb.messages import TxnOp
from quorate.hrb.shard.chain import digests_after, entry_digest, link_of
from quorate.hrb.shard.config import ShardConfig
from quorate.hrb.shard.proofs import (
    CommitCertificate,
    FollowerMajorityQuorum,
    verify_commit_certificate,
)
from quorate.ids import NodeId
from quorate.raft.hooks import ByzantineQuorum

entries_st = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 1), st.binary(max_size=16)), min_size=1, max_size=12
)


@given(entries_st, st.data())
def test_links_recompute_every_later_digest_and_any_change_breaks_them(raw: list[tuple[int, int, bytes]], data: st.DataObject) -> None:
    digests, digest = [], b""
    for index, (term, kind, payload) in enumerate(raw, start=1):
        digest = entry_digest(digest, term, index, kind, payload)
        digests.append(digest)
    start = data.draw(st.integers(0, len(raw) - 1))
    links = [link_of(Entry(t, i, k, d)) for i, (t, k, d) in enumerate(raw, start=1)][start:]
    assert digests_after(b"" if start == 0 else digests[start - 1], start, links) == digests[start:]
    # Changing one entry's data changes its digest and every digest after it.
    at = data.draw(st.integers(0, len(raw) - 1))
    term, kind, payload = raw[at]
    changed = [*raw[:at], (term, kind, payload + b"!"), *raw[at + 1 :]]
    digest, other = b"", []
    for index, (t, k, d) in enumerate(changed, start=1):
        digest = entry_digest(digest, t, index, k, d)
        other.append(digest)
    assert other[:at] == digests[:at]
    assert all(a != b for a, b in zip(other[at:], digests[at:], strict=True))


def test_a_field_beyond_64_bits_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        entry_digest(b"", 1 << 64, 1, 0, b"")


# ------------------------------------------------------------ certificates
@pytest.fixture(scope="module")
def certified() -> tuple[ShardNet, CommitCertificate]:
    net = ShardNet((1, 2, 3, 4), quorum="byzantine")
    net.elect(1)
    for i in range(3):
        net.submit(1, txn(f"c{i}", TxnOp(f"a{i}", "put", value="x")))
        net.advance(0.2)
    announcement = net.replica(1)._announcement
    assert announcement is not None
    return net, announcement.certificate


def _check(net: ShardNet, cert: CommitCertificate, voters: frozenset[NodeId] = frozenset(map(NodeId, (1, 2, 3, 4)))) -> str | None:
    return verify_commit_certificate(cert, shard=1, voters=voters, quorum=3, verifier=net.verifier)


def test_a_leaders_certificate_verifies_and_proves_its_commit(certified: tuple[ShardNet, CommitCertificate]) -> None:
    net, cert = certified
    assert _check(net, cert) is None
    assert len(cert.acks) >= 3
    assert 0 < cert.committed_index(3) <= cert.index
    assert cert.digest == net.replica(2).raft.entry_at(cert.index).digest  # type: ignore[union-attr]


def test_a_certificate_fails_when_anything_is_wrong(certified: tuple[ShardNet, CommitCertificate]) -> None:
    net, cert = certified
    replace = msgspec.structs.replace
    member, acked, lock, signature = cert.acks[0]
    cases = {
        "too few": replace(cert, acks=cert.acks[:2]),
        "twice": replace(cert, acks=(cert.acks[0], *cert.acks[:2])),
        "bad signature": replace(cert, acks=((member, acked, lock, bytes(64)), *cert.acks[1:])),
        "lock above index": replace(cert, acks=((member, acked, acked + 1, signature), *cert.acks[1:])),
        "changed lock": replace(cert, acks=((member, acked, max(0, lock - 1) if lock else 1, signature), *cert.acks[1:])),
        "other digest": replace(cert, digest=hashlib.sha256(b"other").digest()),
        "other term": replace(cert, term=cert.term + 1),
        "short digest": replace(cert, digest=b"x"),
    }
    for name, bad in cases.items():
        assert _check(net, bad) is not None, name
    assert _check(net, cert, voters=frozenset(map(NodeId, (2, 3, 4, 5)))) is not None, "a non-voter counted"


# ------------------------------------------------------------ quorums
@pytest.mark.parametrize("n", range(1, 52))
def test_follower_majority_certificates_share_a_follower(n: int) -> None:
    """Majority mode: two commit certificates (leader + a majority of the
    others) always share a follower, which is honest in this mode."""
    q = FollowerMajorityQuorum().commit_quorum(n)
    assert q <= n
    if n > 1:
        assert 2 * (q - 1) > n - 1
    assert FollowerMajorityQuorum().election_quorum(n) == n // 2 + 1


@pytest.mark.parametrize("f", range(0, 17))
def test_byzantine_quorums_share_an_honest_member(f: int) -> None:
    n = 3 * f + 1
    q = ByzantineQuorum().commit_quorum(n)
    assert 2 * q - n >= f + 1


def test_config_is_validated_at_the_edge() -> None:
    with pytest.raises(ConfigError, match="quorum"):
        ShardConfig(quorum="most").validate()
    with pytest.raises(ConfigError, match="response_bound_s"):
        ShardConfig(response_bound_s=2.0, challenge_interval_s=1.0).validate()
    with pytest.raises(ConfigError, match="shard"):
        ShardConfig(shard=3, shards=2).validate()
