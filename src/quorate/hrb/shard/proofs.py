"""What a shard shows to prove something to others: commit certificates,
proofs of election, and the proof behind a shard's vote on a transaction
(``docs/hrb.md`` sections 2 and 4).

Theory of operation
-------------------
- **Commit certificate.** A leader of term T certifies index c once
  ``commit_quorum`` voters (itself included) acknowledged it. Each
  acknowledgement is the follower's signed ``ack`` statement (T, j, d(j),
  lock) for its match index j >= c (``quorate.hrb.shard.chain``); the
  certificate carries those signatures and the chain links from c + 1 to the
  largest j, so a verifier recomputes every d(j) from d(c) and checks each
  signature. A member that holds a valid certificate for c and the entry it
  names is *locked* on c (``quorate.hrb.shard.commit`` says why applying
  needs a quorum of locks, not only a certificate). The acknowledgements'
  locks are part of what they sign, so a certificate also proves how far a
  quorum is locked: its ``committed_index``.
- **Commit quorums.** ``"byzantine"``: 2f + 1 of n = 3f + 1 (Raft's
  ``ByzantineQuorum``); any two quorums share an honest member. ``"majority"``:
  the leader plus a majority of the *other* voters (``FollowerMajorityQuorum``):
  two such certificates share a follower, and followers are assumed honest
  in this mode, so even a Byzantine leader cannot certify two histories.
  Plain Raft majorities would not do: two majorities of seven may share only
  the leader.
- **The announcement.** The leader sends its certificate in a
  ``CommitAnnouncement`` it signs over the certificate's hash (the ``commit``
  statement), so a signed announcement whose certificate is forged proves
  by itself that its signer claimed a commit it could not support
  (``forged_commit`` evidence).
- **Forged is narrower than insufficient.** Whether a certificate is
  enough depends on the voters (who counts, how many make a quorum), and
  the voters change on append: a member that has not received the leader's
  latest configuration change, or a core that judges the evidence after
  later evictions, sees other voters than the leader did. An honest
  leader's certificate can then be insufficient for the verifier, so
  insufficiency only refuses the announcement
  (``verify_commit_certificate``). Forgery (``certificate_forgery``) is
  what no configuration excuses: a malformed certificate or link, a node
  listed twice, an acknowledgement outside its range, a signature of a
  voter that does not verify (an honest leader verified every
  acknowledgement against its own log before keeping it), or fewer than
  ``MIN_FORGERY_FREE_ACKS`` valid acknowledgements, fewer than the commit
  quorum of any shard with a member besides its leader.
- **Proof of election.** A granted vote is a signed ``vote`` statement for
  (term, candidate); a new leader sends ``election_quorum`` of them
  (``LeaderProof``) and a member follows a leader of a new term only with
  that proof. Without it, any member could claim a term with a heartbeat
  and take over the shard (plain Raft trusts every node; a watched Raft
  cannot). Two votes of one voter for one term and different candidates are
  themselves equivocation evidence.
- **Shard vote.** A shard's ``ShardVote`` on a prepared transaction is
  signed over ``shard_vote_bytes`` (shard, transaction, outcome, and the
  prepare entry's term, index and digest): by the leader (both modes) and,
  in byzantine mode, by ``bft_quorum(n)`` members each of whom applied that
  prepare entry and found that outcome. A Raft acknowledgement only says "my
  log matches through j"; the core must also know the *outcome* the entry
  produced, so members sign the outcome itself.

Every ``verify_*`` function returns why a proof fails, or ``None``, and
never raises on peer input.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection

import msgspec

from quorate.core.evidence import statement_bytes
from quorate.core.quorum import bft_quorum, majority
from quorate.core.signing import Verifier
from quorate.hrb import messages
from quorate.hrb.messages import ShardVote
from quorate.hrb.shard.chain import (
    DIGEST_BYTES,
    ChainLink,
    ack_payload,
    digests_after,
    statement_kind,
)
from quorate.ids import NodeId

__all__ = [
    "MIN_FORGERY_FREE_ACKS",
    "CommitCertificate",
    "FollowerMajorityQuorum",
    "ack_statement",
    "certificate_forgery",
    "certificate_hash",
    "commit_statement",
    "shard_vote_bytes",
    "verify_commit_certificate",
    "verify_leader_votes",
    "verify_shard_vote",
    "vote_statement",
]

_encode = msgspec.msgpack.Encoder().encode
MAX_CERTIFICATE_LINKS = 4096
"""Most links a certificate may carry (how far past c its acknowledgements reach)."""


class CommitCertificate(msgspec.Struct, array_like=True, frozen=True):
    """Index ``index`` with digest ``digest`` is certified in ``term``:
    ``acks`` are (member, acknowledged index, lock, signature) sorted by
    member, every acknowledged index >= ``index`` and every lock <= its
    index; ``links`` are the entries' links from ``index + 1`` to the
    largest acknowledged index."""

    term: int
    index: int
    digest: bytes
    acks: tuple[tuple[int, int, int, bytes], ...]
    links: tuple[ChainLink, ...] = ()

    def committed_index(self, quorum: int) -> int:
        """The highest index ``quorum`` of its acknowledgers are locked on
        (meaningful once the certificate verified)."""
        locks = sorted((lock for _, _, lock, _ in self.acks), reverse=True)
        return min(locks[quorum - 1], self.index) if 0 < quorum <= len(locks) else 0


def ack_statement(shard: int, term: int, index: int, digest: bytes, lock: int) -> bytes:
    return statement_bytes(statement_kind(shard, "ack"), index, term, ack_payload(digest, lock))


MIN_FORGERY_FREE_ACKS = 2
"""Valid acknowledgements below which a certificate is forged whatever the
voters: the commit quorum of two voters in either mode, and a leader that
announces to another member is one of at least two."""


def _certificate_check(
    cert: CommitCertificate, shard: int, voters: Collection[NodeId], verifier: Verifier
) -> tuple[str | None, int, int]:
    """(the defect no configuration excuses or ``None``, valid acknowledgements
    of ``voters``, valid acknowledgements of other nodes)."""
    if cert.term < 0 or cert.index < 1:
        return "certificate of a negative term or a non-positive index", 0, 0
    if len(cert.digest) != DIGEST_BYTES:
        return "certificate digest of the wrong size", 0, 0
    if len(cert.links) > MAX_CERTIFICATE_LINKS:
        return f"certificate carries more than {MAX_CERTIFICATE_LINKS} links", 0, 0
    try:
        digests = [cert.digest, *digests_after(cert.digest, cert.index, cert.links)]
    except ValueError as exc:
        return f"certificate link: {exc}", 0, 0
    top = cert.index + len(cert.links)
    seen: set[int] = set()
    good = others = 0
    for member, acked, lock, signature in cert.acks:
        if member in seen:
            return f"certificate lists node {member} twice", 0, 0
        seen.add(member)
        if not cert.index <= acked <= top:
            return f"node {member}'s acknowledgement of {acked} is outside {cert.index}..{top}", 0, 0
        if not 0 <= lock <= acked:
            return f"node {member}'s lock {lock} is outside 0..{acked}", 0, 0
        try:
            data = ack_statement(shard, cert.term, acked, digests[acked - cert.index], lock)
        except (OverflowError, struct.error):
            return f"node {member}'s lock does not fit 64 bits", 0, 0
        valid = verifier.verify(NodeId(member), data, signature)
        if NodeId(member) in voters:
            if not valid:
                return f"node {member}'s acknowledgement does not verify", 0, 0
            good += 1
        elif valid:
            others += 1  # a voter of the leader's configuration, not of this one's
    return None, good, others


def verify_commit_certificate(
    certificate: CommitCertificate,
    *,
    shard: int,
    voters: Collection[NodeId],
    quorum: int,
    verifier: Verifier,
) -> str | None:
    """Why ``certificate`` does not prove its commit in a shard of ``voters``
    whose commit quorum is ``quorum``, or ``None``."""
    defect, good, _ = _certificate_check(certificate, shard, voters, verifier)
    if defect is not None:
        return defect
    for member, _, _, _ in certificate.acks:
        if NodeId(member) not in voters:
            return f"certificate counts node {member}, which is not a voter"
    if good < quorum:
        return f"certificate has {good} acknowledgements, the commit quorum is {quorum}"
    return None


def certificate_forgery(
    certificate: CommitCertificate,
    *,
    shard: int,
    voters: Collection[NodeId],
    verifier: Verifier,
) -> str | None:
    """Why ``certificate`` is forged under every configuration of the shard
    (``voters``: the verifier's, whose acknowledgements must verify), or
    ``None`` if some configuration could make it valid (see the module
    docstring)."""
    defect, good, others = _certificate_check(certificate, shard, voters, verifier)
    if defect is not None:
        return defect
    if good + others < MIN_FORGERY_FREE_ACKS:
        return (
            f"certificate has {good + others} valid acknowledgements, "
            f"fewer than any commit quorum ({MIN_FORGERY_FREE_ACKS})"
        )
    return None


def certificate_hash(certificate: CommitCertificate) -> bytes:
    return hashlib.sha256(_encode(certificate)).digest()


def commit_statement(shard: int, certificate: CommitCertificate) -> bytes:
    """What a leader signs to announce ``certificate`` (see the module docstring)."""
    return statement_bytes(
        statement_kind(shard, "commit"), certificate.index, certificate.term, certificate_hash(certificate)
    )


class FollowerMajorityQuorum:
    """``quorum = "majority"``: commit with the leader and a majority of the
    other voters; elect with a majority (see the module docstring)."""

    __slots__ = ()

    def commit_quorum(self, voters: int) -> int:
        return min(voters, 1 + majority(voters - 1))

    def election_quorum(self, voters: int) -> int:
        return majority(voters)

    def __repr__(self) -> str:
        return "FollowerMajorityQuorum()"


# ---------------------------------------------------------------- elections
def vote_statement(shard: int, term: int, candidate: int) -> bytes:
    return statement_bytes(statement_kind(shard, "vote"), term, 0, _encode(candidate))


def verify_leader_votes(
    votes: tuple[tuple[int, bytes], ...],
    *,
    shard: int,
    term: int,
    leader: NodeId,
    voters: Collection[NodeId],
    quorum: int,
    verifier: Verifier,
) -> str | None:
    """Why ``votes`` (voter, signature) do not prove ``leader`` won ``term``."""
    seen: set[int] = set()
    data = vote_statement(shard, term, int(leader))
    for voter, signature in votes:
        if voter in seen:
            return f"proof lists node {voter} twice"
        seen.add(voter)
        if NodeId(voter) not in voters:
            return f"proof counts node {voter}, which is not a voter"
        if not verifier.verify(NodeId(voter), data, signature):
            return f"node {voter}'s vote does not verify"
    if len(seen) < quorum:
        return f"proof has {len(seen)} votes, the election quorum is {quorum}"
    return None


# ---------------------------------------------------------------- shard votes
def shard_vote_bytes(
    shard: int, txn_id: bytes, vote: bool, reason: str, term: int, index: int, digest: bytes
) -> bytes:
    """What the leader and, in byzantine mode, the members sign for a ShardVote:
    the tiers' contract, ``quorate.hrb.messages.shard_vote_bytes`` (what the
    core verifies), with this tier's argument order."""
    return messages.shard_vote_bytes(txn_id, shard, vote, reason, term, index, digest)


def verify_shard_vote(
    vote: ShardVote,
    *,
    members: Collection[NodeId],
    quorum_mode: str,
    verifier: Verifier,
) -> str | None:
    """Why the core must not count ``vote`` from a shard of ``members`` in
    ``quorum_mode`` (``"majority"``: the leader's signature; ``"byzantine"``:
    also ``bft_quorum(len(members))`` members' signatures), or ``None``."""
    proof = vote.proof
    if NodeId(proof.leader) not in members:
        return f"the vote's leader {proof.leader} is not a member of shard {vote.shard}"
    data = shard_vote_bytes(vote.shard, vote.txn_id, vote.vote, vote.reason, proof.term, proof.index, proof.digest)
    if not verifier.verify(NodeId(proof.leader), data, proof.leader_signature):
        return "the leader's signature over the vote does not verify"
    if quorum_mode == "majority":
        return None
    if quorum_mode != "byzantine":
        return f"unknown quorum mode {quorum_mode!r}"
    good = 0
    for member, signature in proof.acks.items():
        if NodeId(member) not in members:
            return f"the vote counts node {member}, which is not a member"
        if not verifier.verify(NodeId(member), data, signature):
            return f"node {member}'s signature over the vote does not verify"
        good += 1
    need = bft_quorum(len(members))
    if good < need:
        return f"the vote carries {good} members' signatures, {need} are needed"
    return None
