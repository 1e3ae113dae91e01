"""Proofs of misbehaviour recorded in the log (``quorate.security.evidence_log``):
a valid equivocation proof puts its offender on record and into the
replicated audit trail, once; forged, non-conflicting, malformed or oversize
"proofs" are refused with the reason, the same on every replica; the record
survives a snapshot."""

from __future__ import annotations

import json

from tests.unit.security.ed25519_keys import Ed25519Signer, Registry

from quorate.core.evidence import Evidence, sign_statement
from quorate.security.evidence_log import MACHINE_NAME, EvidenceMachine, encode_evidence
from quorate.state.agents.ops import AuditQuery
from quorate.state.kv import Command, Extension, KVStore, encode_command


def equivocation(node: int, height: int = 7) -> Evidence:
    liar = Ed25519Signer(node)
    return Evidence(sign_statement(liar, "prepare", height, 0, b"A"), sign_statement(liar, "prepare", height, 0, b"B"))


def test_a_valid_proof_puts_the_offender_on_record_once() -> None:
    machine = EvidenceMachine(Registry(1, 2, 3, 4))
    first = machine.apply(10, 5.0, encode_evidence(equivocation(3)))
    assert first.ok and first.value == "n3"
    assert first.audit == (("evidence.equivocation", "n3", {"statement": "prepare", "height": 7, "round": 0}),)
    again = machine.apply(11, 5.0, encode_evidence(equivocation(3, height=8)))
    assert not again.ok and "already on record" in (again.error or "") and again.audit == ()
    assert machine.offenders == {3: 10}


def test_forged_conflicting_free_malformed_and_oversize_proofs_are_refused() -> None:
    machine = EvidenceMachine(Registry(1, 2, 3, 4))
    real = equivocation(3)
    forger = Ed25519Signer(2)  # signs in n3's name with its own key
    own = Evidence(sign_statement(forger, "prepare", 7, 0, b"A"), sign_statement(forger, "prepare", 7, 0, b"B"))
    forged = Evidence(
        type(real.first)(3, "prepare", 7, 0, b"A", own.first.signature),
        type(real.second)(3, "prepare", 7, 0, b"B", own.second.signature),
    )
    same = Evidence(real.first, real.first)
    other_slot = Evidence(real.first, sign_statement(Ed25519Signer(3), "prepare", 8, 0, b"B"))
    unknown = equivocation(9)
    cases = {
        "a statement's signature does not verify": [forged, unknown],
        "the statements do not conflict": [same],
        "the statements are not for one signer and slot": [other_slot],
    }
    for reason, proofs in cases.items():
        for proof in proofs:
            answer = machine.apply(1, 0.0, encode_evidence(proof))
            assert not answer.ok and answer.error == reason
    assert machine.apply(1, 0.0, b"\x93junk").error == "malformed evidence"
    assert machine.apply(1, 0.0, b"x" * 70_000).error == "evidence too large"
    assert machine.offenders == {}
    assert sum(machine.refused.values()) == 6


def test_the_record_travels_in_snapshots() -> None:
    machine = EvidenceMachine(Registry(1, 2, 3, 4))
    assert machine.snapshot() is None  # nothing held: the store's snapshot stays as it was
    machine.apply(4, 0.0, encode_evidence(equivocation(2)))
    machine.apply(5, 0.0, b"junk")
    copy = EvidenceMachine(Registry(1, 2, 3, 4))
    copy.restore(machine.snapshot())
    assert copy.offenders == {2: 4} and copy.refused == machine.refused
    copy.restore(None)
    assert copy.offenders == {}


def test_the_store_writes_the_decision_into_the_audit_trail() -> None:
    store = KVStore(machines={MACHINE_NAME: EvidenceMachine(Registry(1, 2, 3, 4))})
    op = Extension(MACHINE_NAME, encode_evidence(equivocation(4)))
    assert store.apply(1, encode_command(Command(0, 0, op, time_s=12.5))).ok
    assert not store.apply(2, encode_command(Command(0, 0, op, time_s=13.0))).ok
    answer = store.read(AuditQuery(kind="evidence."))
    records = json.loads(answer.value or "{}")["records"]
    assert [(r["kind"], r["subject"], r["time_s"]) for r in records] == [("evidence.equivocation", "n4", 12.5)]
    assert records[0]["detail"] == {"height": 7, "round": 0, "statement": "prepare"}
