"""Casper FFG's slashing evidence in the replicated evidence record and the
audit trail (``quorate.casper.evidence``, ``quorate.security.evidence_log``).

- A double vote and a surround vote (§3's conditions I and II) put the
  validator on record once, as an ``evidence.slashing`` audit record naming
  the condition and both links.
- Votes that break no condition, and votes signed in the validator's name
  with another key, are refused with the reason; so is slashing evidence
  where the record knows only the core's kind of evidence.
- One registry decodes both kinds Casper produces (slashing and a
  proposer's two blocks), and the store writes the decision into the audit
  trail that ``quorate audit`` prints.
- A Casper validator's binding hands its proofs to the runtime (which
  proposes them to the log).
"""

from __future__ import annotations

import json
import random

import pytest
from tests.unit.security.ed25519_keys import Ed25519Signer, Registry

from quorate.casper.binding import BINDING
from quorate.casper.evidence import SLASHING
from quorate.casper.messages import BLOCK_KIND, Checkpoint, SlashingEvidence, Vote, vote_bytes
from quorate.core.binding import ClusterContext
from quorate.core.evidence import (
    EQUIVOCATION,
    EVIDENCE_REGISTRY,
    Evidence,
    EvidenceKind,
    EvidenceRegistry,
    sign_statement,
)
from quorate.crypto.keyring import Ed25519Keyring
from quorate.ids import NodeId
from quorate.security.evidence_log import (
    MACHINE_NAME,
    EvidenceMachine,
    decode_evidence,
    encode_evidence,
)
from quorate.state.agents.ops import AuditQuery
from quorate.state.kv import Command, Extension, KVStore, encode_command


def checkpoint(epoch: int, tag: int = 0) -> Checkpoint:
    return Checkpoint(epoch, bytes([epoch, tag]) * 16)


def vote(validator: int, source: int, target: int, tag: int = 0, signer: int | None = None) -> Vote:
    s, t = checkpoint(source), checkpoint(target, tag)
    key = Ed25519Signer(validator if signer is None else signer)
    return Vote(validator, s, t, key.sign(vote_bytes(s, t)))


def test_a_double_vote_and_a_surround_vote_put_the_validator_on_record_once() -> None:
    machine = EvidenceMachine(Registry(1, 2, 3, 4))
    double = SlashingEvidence(vote(3, 1, 2, tag=1), vote(3, 1, 2, tag=2))
    answer = machine.apply(10, 1.0, encode_evidence(double))
    assert answer.ok and answer.value == "n3"
    assert answer.audit == (("evidence.slashing", "n3", {"condition": "double_vote", "statement": "casper.vote", "links": [[1, 2], [1, 2]]}),)
    surround = SlashingEvidence(vote(2, 1, 5), vote(2, 2, 3))
    answer = machine.apply(11, 1.0, encode_evidence(surround))
    assert answer.ok
    assert answer.audit[0][2] == {"condition": "surround_vote", "statement": "casper.vote", "links": [[1, 5], [2, 3]]}
    again = machine.apply(12, 1.0, encode_evidence(SlashingEvidence(vote(3, 2, 4, tag=1), vote(3, 2, 4, tag=2))))
    assert not again.ok and "already on record" in (again.error or "")
    assert machine.offenders == {3: 10, 2: 11}


def test_innocent_forged_and_unknown_slashing_evidence_is_refused() -> None:
    machine = EvidenceMachine(Registry(1, 2, 3, 4))
    innocent = SlashingEvidence(vote(3, 1, 2), vote(3, 2, 3))  # consecutive links: no condition
    forged = SlashingEvidence(vote(3, 1, 2, tag=1, signer=2), vote(3, 1, 2, tag=2, signer=2))
    assert machine.apply(1, 0.0, encode_evidence(innocent)).error == "the votes break no slashing condition"
    assert machine.apply(2, 0.0, encode_evidence(forged)).error == "a statement's signature does not verify"
    core_only = EvidenceMachine(Registry(1, 2, 3, 4), EvidenceRegistry([EQUIVOCATION]))
    proof = SlashingEvidence(vote(3, 1, 2, tag=1), vote(3, 1, 2, tag=2))
    assert core_only.apply(3, 0.0, encode_evidence(proof)).error == "malformed evidence"
    assert machine.offenders == {} and core_only.offenders == {}


def test_one_registry_decodes_both_kinds_casper_produces() -> None:
    liar = Ed25519Signer(4)
    blocks = Evidence(sign_statement(liar, BLOCK_KIND, 9, 0, b"A" * 32), sign_statement(liar, BLOCK_KIND, 9, 0, b"B" * 32))
    slashing = SlashingEvidence(vote(4, 1, 2, tag=1), vote(4, 1, 2, tag=2))
    assert EVIDENCE_REGISTRY.kind_of(slashing) is SLASHING
    assert EVIDENCE_REGISTRY.kind_of(blocks) is EQUIVOCATION
    assert decode_evidence(encode_evidence(slashing)) == slashing
    assert decode_evidence(encode_evidence(blocks)) == blocks
    machine = EvidenceMachine(Registry(4))
    assert machine.apply(1, 0.0, encode_evidence(blocks)).audit[0][:2] == ("evidence.equivocation", "n4")


def test_a_registry_takes_each_kind_once_and_encodes_only_registered_kinds() -> None:
    registry = EvidenceRegistry([EQUIVOCATION])
    registry.register(EQUIVOCATION)  # again: nothing changes
    assert list(registry) == [EQUIVOCATION]
    rival = EvidenceKind(Evidence, "evidence.other", SLASHING.offender, SLASHING.problem, SLASHING.signatures, SLASHING.describe)
    with pytest.raises(ValueError):
        registry.register(rival)
    with pytest.raises(ValueError):
        registry.encode(SlashingEvidence(vote(1, 1, 2, tag=1), vote(1, 1, 2, tag=2)))


def test_the_store_writes_slashing_into_the_audit_trail() -> None:
    store = KVStore(machines={MACHINE_NAME: EvidenceMachine(Registry(1, 2, 3, 4))})
    op = Extension(MACHINE_NAME, encode_evidence(SlashingEvidence(vote(1, 1, 3, tag=1), vote(1, 1, 3, tag=2))))
    assert store.apply(1, encode_command(Command(0, 0, op, time_s=4.5))).ok
    records = json.loads(store.read(AuditQuery(kind="evidence.")).value or "{}")["records"]
    assert [(r["kind"], r["subject"], r["time_s"]) for r in records] == [("evidence.slashing", "n1", 4.5)]
    assert records[0]["detail"] == {"condition": "double_vote", "links": [[1, 3], [1, 3]], "statement": "casper.vote"}


def test_the_binding_hands_a_validators_proofs_to_the_runtime() -> None:
    members = tuple(NodeId(i) for i in range(1, 5))
    keyring = Ed25519Keyring(NodeId(1), members, key_seed="casper-evidence-test")
    liar = Ed25519Keyring(NodeId(3), members, key_seed="casper-evidence-test").signer(NodeId(3))
    core = BINDING.builder(BINDING.parse_config({}), ClusterContext(keyring))(NodeId(1), members, random.Random(1), 0.0, None)
    assert BINDING.evidence is not None and list(BINDING.evidence(core)) == []
    s, t1, t2 = checkpoint(1), checkpoint(2, 1), checkpoint(2, 2)
    proof = SlashingEvidence(Vote(3, s, t1, liar.sign(vote_bytes(s, t1))), Vote(3, s, t2, liar.sign(vote_bytes(s, t2))))
    core.step(NodeId(2), proof, 0.1)
    assert list(BINDING.evidence(core)) == [proof]
