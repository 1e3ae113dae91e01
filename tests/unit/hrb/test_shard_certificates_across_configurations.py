"""An honest leader's commit certificate is never ``forged_commit`` evidence,
whatever configuration the verifier holds (``docs/hrb.md`` sections 2 and 4;
``quorate.hrb.shard.proofs``, "Forged is narrower than insufficient").

Voters change on append, so the leader that certifies and the member (or
core) that verifies may count different voters: a member that has not
received the removal of an evicted node yet needs the old, larger quorum;
one that already holds the removal does not take the evicted node's
acknowledgement, which the leader counted a moment earlier, for a voter's.
Either certificate is insufficient for that verifier, and must be refused,
not reported: in the 200-node simulator run (``--seed 3``) honest leaders
were convicted and evicted that way. A certificate forged under every
configuration still is evidence.
"""

from __future__ import annotations

import msgspec
import pytest
from tests.unit.hrb.shard_net import ShardNet, txn

from quorate.crypto.ed25519 import Ed25519Signer
from quorate.hrb.messages import Evict, SignedMessageEvidence, TxnOp
from quorate.hrb.shard.evidence import forged_commit_evidence, verify_shard_evidence
from quorate.hrb.shard.messages import CommitAnnouncement
from quorate.hrb.shard.proofs import (
    CommitCertificate,
    ack_statement,
    certificate_forgery,
    commit_statement,
    verify_commit_certificate,
)
from quorate.hrb.system import ShardEvidenceChecker, shard_commit_quorum
from quorate.ids import NodeId
from quorate.raft.messages import SignedAppendEntries

LEADER = 1
LAGGING = 3


@pytest.mark.parametrize(("quorum", "size"), [("byzantine", 4), ("majority", 5)])
def test_a_member_without_the_removal_refuses_the_new_quorums_certificate_and_convicts_nobody(
    quorum: str, size: int
) -> None:
    net = ShardNet(range(1, size + 1), quorum=quorum)
    leader = net.elect(LEADER)
    net.advance(0.5)
    evicted = size
    before = leader.raft.commit_quorum
    net.deliver_certificate(net.core.certify(Evict(evicted, b"d" * 32)))
    # The lagging member misses the leader's appends (the removal among
    # them) but receives its commit announcements.
    send = net._send

    def lossy(src: NodeId, dst: NodeId, message: object) -> None:
        if not (dst == LAGGING and type(message) is SignedAppendEntries):
            send(src, dst, message)

    net._send = lossy  # type: ignore[method-assign]
    net.advance(0.5)
    assert NodeId(evicted) not in leader.raft.voters
    assert leader.raft.commit_quorum < before, "the removal must shrink the commit quorum"
    lagging = net.replica(LAGGING)
    assert NodeId(evicted) in lagging.raft.voters
    net._send = send  # type: ignore[method-assign]
    net.advance(1.5)
    for r in net.honest():
        if r.id == evicted:
            continue
        assert r.detections == [], (r.id, r.detections)
        assert not r.convicted
    assert not net.rejections("forged commit")
    refused = net.rejections("insufficient certificate")
    assert any(node == LAGGING for node, _ in refused), "the lagging member must have seen a certificate"
    assert lagging.raft.voters == leader.raft.voters
    # The shard goes on committing with the lagging member.
    net.submit(LEADER, txn("after", TxnOp("k", "put", value="v")))
    net.advance(1.0)
    assert lagging.lock_index == leader.lock_index > 0


@pytest.fixture(scope="module")
def announced() -> tuple[ShardNet, CommitAnnouncement]:
    net = ShardNet((1, 2, 3, 4), quorum="byzantine")
    net.elect(LEADER)
    for i in range(3):
        net.submit(LEADER, txn(f"c{i}", TxnOp(f"a{i}", "put", value="x")))
        net.advance(0.2)
    announcement = net.replica(LEADER)._announcement
    assert announcement is not None
    return net, announcement


def _judged(net: ShardNet, evidence: SignedMessageEvidence, members: tuple[int, ...]) -> tuple[str | None, bool | None]:
    """The shard members' and the core's verdicts with voters ``members``."""
    shard_reason = verify_shard_evidence(
        evidence,
        shard=1,
        voters=frozenset(map(NodeId, members)),
        commit_quorum=shard_commit_quorum(len(members), "byzantine"),
        verifier=net.verifier,
        entry_refusal=net.replica(LEADER).entry_refusal_with_certificates,
    )
    return shard_reason, ShardEvidenceChecker(2)(evidence, members, "byzantine", net.verifier)


def test_a_certificate_counting_a_since_removed_voter_is_insufficient_but_no_evidence(
    announced: tuple[ShardNet, CommitAnnouncement],
) -> None:
    net, announcement = announced
    cert = announcement.certificate
    removed = next(member for member, _, _, _ in cert.acks if member != LEADER)
    members = tuple(m for m in (1, 2, 3, 4) if m != removed)
    voters = frozenset(map(NodeId, members))
    assert verify_commit_certificate(cert, shard=1, voters=frozenset(map(NodeId, (1, 2, 3, 4))), quorum=3, verifier=net.verifier) is None
    reason = verify_commit_certificate(cert, shard=1, voters=voters, quorum=2, verifier=net.verifier)
    assert reason is not None and "not a voter" in reason
    assert certificate_forgery(cert, shard=1, voters=voters, verifier=net.verifier) is None
    evidence = forged_commit_evidence(announcement, NodeId(LEADER), 1)
    for view in (members, (1, 2, 3, 4)):
        shard_reason, core_verdict = _judged(net, evidence, view)
        assert shard_reason is not None
        assert core_verdict is False


def _reannounce(cert: CommitCertificate, net: ShardNet) -> SignedMessageEvidence:
    signer = Ed25519Signer(NodeId(LEADER), net.keys[NodeId(LEADER)].signing_key)
    announcement = CommitAnnouncement(cert.term, LEADER, cert, signer.sign(commit_statement(1, cert)))
    return forged_commit_evidence(announcement, NodeId(LEADER), 1)


def test_a_certificate_forged_under_every_configuration_still_convicts(
    announced: tuple[ShardNet, CommitAnnouncement],
) -> None:
    net, announcement = announced
    cert = announcement.certificate
    signer = Ed25519Signer(NodeId(LEADER), net.keys[NodeId(LEADER)].signing_key)
    own = signer.sign(ack_statement(1, cert.term, cert.index, cert.digest, cert.index))
    alone = msgspec.structs.replace(cert, acks=((LEADER, cert.index, cert.index, own),), links=())
    other = next(i for i, (member, _, _, _) in enumerate(cert.acks) if member != LEADER)
    member, acked, lock, _ = cert.acks[other]
    bad_signature = msgspec.structs.replace(
        cert, acks=(*cert.acks[:other], (member, acked, lock, bytes(64)), *cert.acks[other + 1 :])
    )
    for forged in (alone, bad_signature):
        evidence = _reannounce(forged, net)
        for view in ((1, 2, 3, 4), (1, 2, 3, 4, 5)):
            shard_reason, core_verdict = _judged(net, evidence, view)
            assert shard_reason is None, shard_reason
            assert core_verdict is True
    # The honest announcement itself is not evidence under any of these views.
    honest = forged_commit_evidence(announcement, NodeId(LEADER), 1)
    for view in ((1, 2, 3, 4), (1, 2, 3, 4, 5), (1, 2, 3)):
        shard_reason, core_verdict = _judged(net, honest, view)
        assert shard_reason is not None
        assert core_verdict is False
