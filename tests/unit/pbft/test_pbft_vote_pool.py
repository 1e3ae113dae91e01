"""PBFT's compact evidence pool (``quorate.pbft.vote_pool``) and the progress
mark that decides retransmission (TOCS 2002 §5.2)."""

from __future__ import annotations

import random

from pbft_testnet import KeyedSigner, KeyedVerifier

from quorate.core.evidence import EvidencePool, sign_statement
from quorate.ids import NodeId
from quorate.pbft import PbftConfig, PbftReplica, PrePrepare
from quorate.pbft.messages import (
    KIND_COMMIT,
    KIND_PRE_PREPARE,
    KIND_PREPARE,
    Commit,
    Prepare,
    batch_digest,
)
from quorate.pbft.vote_pool import VotePool

A = b"a" * 32
B = b"b" * 32


def _prepare(replica: int, digest: bytes, seq: int = 1, view: int = 0) -> Prepare:
    signature = sign_statement(KeyedSigner(NodeId(replica)), KIND_PREPARE, seq, view, digest).signature
    return Prepare(view, seq, digest, replica, signature)


def test_a_vote_pool_convicts_exactly_as_the_generic_pool_does() -> None:
    votes = [_prepare(2, A), _prepare(3, A), _prepare(2, A), _prepare(2, B), _prepare(2, A, view=1), _prepare(3, B)]
    compact, generic = VotePool(KeyedVerifier()), EvidencePool(KeyedVerifier())
    for vote in votes:
        assert compact.observe_vote(KIND_PREPARE, vote) == generic.observe(vote.statement())
    assert compact.detections == generic.detections
    assert [int(e.offender) for e in compact.detections] == [2, 3]
    assert compact.excluded == generic.excluded == {NodeId(2), NodeId(3)}
    # A convicted signer is not convicted again.
    assert compact.observe_vote(KIND_PREPARE, _prepare(2, b"c" * 32)) is None


def test_a_vote_conflicts_with_a_statement_seen_in_a_certificate_and_back() -> None:
    pool = VotePool(KeyedVerifier())
    pool.observe(_prepare(2, A).statement())  # inside a prepared certificate
    evidence = pool.observe_vote(KIND_PREPARE, _prepare(2, B))
    assert evidence is not None and evidence.first == _prepare(2, A).statement()
    assert evidence.second == _prepare(2, B).statement()
    pool = VotePool(KeyedVerifier())
    pool.observe_vote(KIND_PREPARE, _prepare(3, A))
    later = pool.observe(_prepare(3, B).statement())
    assert later is not None and later.first == _prepare(3, A).statement()


def test_a_vote_pool_keeps_the_vote_itself_and_forgets_below_the_checkpoint() -> None:
    pool = VotePool(KeyedVerifier())
    vote = _prepare(2, A, seq=1)
    pool.observe_vote(KIND_PREPARE, vote)
    signature = sign_statement(KeyedSigner(NodeId(2)), KIND_COMMIT, 5, 0, A).signature
    pool.observe_vote(KIND_COMMIT, Commit(0, 5, A, 2, signature))
    assert pool.statements() == 2
    assert any(v is vote for by_signer in pool._slots.values() for v in by_signer.values())
    pool.forget_below(2)
    assert pool.statements() == 1
    # Forgotten: the same signer may now be seen afresh there without evidence.
    assert pool.observe_vote(KIND_PREPARE, _prepare(2, B, seq=1)) is None


def _backup(retransmit_s: float = 0.25) -> PbftReplica:
    replicas = [NodeId(i) for i in range(4)]
    config = PbftConfig(batch_timeout_s=0.2, retransmit_interval_s=retransmit_s, slow_primary_factor=0)
    return PbftReplica(NodeId(1), replicas, config=config, signer=KeyedSigner(NodeId(1)),
                       verifier=KeyedVerifier(), rng=random.Random(1), now=0.0)


def _statuses(core: PbftReplica) -> int:
    return sum(type(m).__name__ == "Status" for _, m in core.ready().messages)


def test_a_backup_whose_next_batch_progresses_does_not_retransmit_but_a_stuck_one_does() -> None:
    # A 200 ms batch outlasts the 250 ms period once the pre-prepare's trip
    # is added: the batch's progress, not only its execution, counts.
    core = _backup()
    core.propose(b"cmd", 0.0)
    core.ready()
    batch = (b"cmd",)
    digest = batch_digest(0, batch)
    signature = sign_statement(KeyedSigner(NodeId(0)), KIND_PRE_PREPARE, 1, 0, digest).signature
    core.step(NodeId(0), PrePrepare(0, 1, 0, batch, signature), 0.2)
    core.ready()
    core.tick(0.25)
    assert _statuses(core) == 0
    # No prepare arrives: the next batch is stuck, so the replica says so again.
    core.tick(0.5)
    assert _statuses(core) == 3


def test_a_backup_with_nothing_from_the_primary_retransmits_after_one_period() -> None:
    core = _backup()
    core.propose(b"cmd", 0.0)
    core.ready()
    core.tick(0.25)
    assert _statuses(core) == 3


def test_after_the_first_period_only_execution_counts_as_progress() -> None:
    core = _backup()
    core.propose(b"cmd", 0.0)
    core.ready()
    core.tick(0.25)
    assert _statuses(core) == 3  # nothing from the primary in the first period
    batch = (b"cmd",)
    signature = sign_statement(KeyedSigner(NodeId(0)), KIND_PRE_PREPARE, 1, 0, batch_digest(0, batch)).signature
    core.step(NodeId(0), PrePrepare(0, 1, 0, batch, signature), 0.3)
    core.ready()
    core.tick(0.5)
    assert _statuses(core) == 3  # a pre-prepare alone no longer holds the re-send back
