"""Eviction with evidence (docs/hrb.md section 4): real evidence evicts,
forged or malformed evidence is refused and counted against its accuser, an
unsigned accusation blames nobody, a removal for an unknown node is refused,
signed-message evidence goes to the shard tier's checker, and evicting a
core member changes the epoch to a core without it."""

from __future__ import annotations

from hrb_core_net import CoreNetwork
from hrb_state_kit import KEYRING, Kit, decided, refused

from quorate.core.evidence import Evidence, sign_statement
from quorate.core.signing import Verifier
from quorate.hrb.core.commands import decode_command
from quorate.hrb.core.config import CoreRules
from quorate.hrb.core.evidence import evidence_digest
from quorate.hrb.core.state import CoreState
from quorate.hrb.messages import (
    CORE_GROUP_BASE,
    Evict,
    RemovalProposal,
    SignedMessageEvidence,
    removal_bytes,
)
from quorate.ids import NodeId


def test_real_equivocation_evidence_evicts() -> None:
    kit = Kit()
    state = kit.state()
    offender = kit.shards[2][0]
    accuser = kit.shards[2][1]
    evidence = kit.equivocation(offender)
    [d] = decided(state.apply(kit.removal(accuser, evidence)))
    assert d.decision == Evict(offender, evidence_digest(evidence))
    assert d.shards == (2,)
    assert offender not in state.shard_members(2)
    assert state.s.facts[offender].evicted
    assert offender in state.evicted
    # never heard again, and a second accusation is not a failure of its accuser
    [r] = refused(state.apply(kit.request(kit.txn("t", 2, kit.keys(2)), leader=offender)))
    assert r.reason == "sender is not a node of the deployment or is evicted"
    [r] = refused(state.apply(kit.removal(kit.shards[1][0], kit.equivocation(offender))))
    assert r.reason == "already evicted"
    assert state.s.facts.get(kit.shards[1][0]) is None or state.s.facts[kit.shards[1][0]].failed_accusations == 0


def test_forged_or_malformed_evidence_is_refused_and_counted_against_the_accuser() -> None:
    kit = Kit(rules=CoreRules(core_size=4, max_failed_accusations=3, epoch_length=10**9))
    state = kit.state()
    victim, accuser = kit.shards[1][0], kit.shards[3][0]
    honest = KEYRING.signer(NodeId(victim))
    forger = KEYRING.signer(NodeId(accuser))
    # the second statement is signed by the accuser, claiming to be the victim
    first = sign_statement(honest, "shard.append", 5, 1, b"a")
    fake = sign_statement(forger, "shard.append", 5, 1, b"b")
    forged = Evidence(first, type(fake)(victim, fake.kind, fake.height, fake.round, fake.payload, fake.signature))
    [r] = refused(state.apply(kit.removal(accuser, forged)))
    assert (r.reason, r.blamed) == ("equivocation evidence does not verify", accuser)
    # two statements for different slots are not evidence
    other_slot = Evidence(first, sign_statement(honest, "shard.append", 6, 1, b"b"))
    [r] = refused(state.apply(kit.removal(accuser, other_slot)))
    assert r.reason == "equivocation evidence does not verify"
    # an accusation of a node that does not exist
    [r] = refused(state.apply(kit.removal(accuser, kit.equivocation(999))))
    assert r.reason == "unknown node"
    assert state.s.facts[accuser].failed_accusations == 3
    assert victim not in state.evicted
    # exhausted: no longer heard, not counted further
    [r] = refused(state.apply(kit.removal(accuser, kit.equivocation(kit.shards[2][0]))))
    assert r.reason == "accuser exhausted its failed accusations"
    assert state.s.facts[accuser].failed_accusations == 3
    assert state.s.refusals["equivocation evidence does not verify"] == 2
    assert state.s.decisions == 0


def test_an_unsigned_accusation_blames_nobody() -> None:
    kit = Kit()
    state = kit.state()
    named = kit.shards[1][1]
    [r] = refused(state.apply(kit.removal(named, kit.equivocation(999), signed=False)))
    assert (r.reason, r.blamed) == ("removal proposal not signed by its accuser", None)
    assert named not in state.s.facts
    stranger = RemovalProposal(12345, kit.equivocation(kit.shards[1][0]), b"")
    assert stranger.accuser not in state.s.nodes
    precheck = state.precheck(stranger)
    assert precheck is not None and precheck.reason == "accuser is not a node of the deployment"


def test_an_unverifiable_accusation_is_ordered_so_that_it_is_counted() -> None:
    kit = Kit()
    state = kit.state()
    accuser = kit.shards[3][0]
    forged = decode_command(kit.removal(accuser, kit.equivocation(999)))
    assert state.precheck(forged) is None  # ordered: its refusal counts against the accuser
    unsigned = decode_command(kit.removal(accuser, kit.equivocation(999), signed=False))
    assert state.precheck(unsigned) is not None  # dropped before ordering: nobody to blame


class ForgedCommitChecker:
    """A stand-in for the shard tier's checker: a message b"forged:<signer>"
    signed by the signer proves a forged commit."""

    def __call__(
        self, evidence: SignedMessageEvidence, members: tuple[int, ...], shard_quorum: str, verifier: Verifier
    ) -> bool | None:
        if evidence.kind != "forged_commit":
            return None
        body, _, signature = evidence.message.partition(b"|")
        return body == b"forged:%d" % evidence.signer and verifier.verify(NodeId(evidence.signer), body, bytes.fromhex(signature.decode()))


def test_signed_message_evidence_goes_to_the_shard_tiers_checker() -> None:
    kit = Kit()
    offender, accuser = kit.shards[2][0], kit.shards[2][1]
    body = b"forged:%d" % offender
    message = body + b"|" + KEYRING.signer(NodeId(offender)).sign(body).hex().encode()
    evidence = SignedMessageEvidence("forged_commit", offender, 2, message)
    without = kit.state()
    [r] = refused(without.apply(kit.removal(accuser, evidence)))
    assert (r.reason, without.s.facts.get(accuser)) == ("no checker for forged_commit evidence", None)
    state = CoreState(kit.state().s, verifier=KEYRING.verifier(NodeId(0)), checker=ForgedCommitChecker())
    wrong_shard = SignedMessageEvidence("forged_commit", offender, 1, message)
    [r] = refused(state.apply(kit.removal(accuser, wrong_shard)))
    assert r.reason == f"node {offender} is not a member of shard 1"
    bad = SignedMessageEvidence("forged_commit", offender, 2, body + b"|00")
    [r] = refused(state.apply(kit.removal(accuser, bad)))
    assert r.reason == "forged_commit evidence does not verify"
    unknown_kind = SignedMessageEvidence("rude_words", offender, 2, message)
    [r] = refused(state.apply(kit.removal(accuser, unknown_kind)))
    assert r.reason == "unknown evidence kind 'rude_words'"
    assert state.s.facts[accuser].failed_accusations == 3
    [d] = decided(state.apply(kit.removal(accuser, evidence)))
    assert d.decision == Evict(offender, evidence_digest(evidence))


def test_evicting_a_core_member_changes_the_epoch_to_a_core_without_it() -> None:
    rules = CoreRules(core_size=4, epoch_length=10**9, tick_interval_s=0.1, txn_timeout_s=2.0)
    net = CoreNetwork(12, seed=21, rules=rules)
    offender = net.genesis.members[1]
    home = next(k for k, m in net.genesis.shards.items() if offender in m)
    accuser = next(m for m in net.genesis.shards[home] if m != offender)
    signer = net.keyring.signer(NodeId(offender))
    evidence = Evidence(sign_statement(signer, "shard.append", 3, 1, b"x"), sign_statement(signer, "shard.append", 3, 1, b"y"))
    signature = net.keyring.signer(NodeId(accuser)).sign(removal_bytes(accuser, evidence))
    net.to_core(accuser, RemovalProposal(accuser, evidence, signature))
    net.run_for(8.0)
    assert offender in net.shards[home].evicted  # the certified eviction reached the shard
    assert offender not in net.shards[home].members
    assert 1 in net.members_of and offender not in net.members_of[1]
    new_core = [r for r in net.replicas(1) if r.state is not None]
    assert len(new_core) == len(net.members_of[1])
    assert all(offender in r.state.evicted for r in new_core)  # type: ignore[union-attr]
    assert all(r.state.s.facts[offender].evicted for r in new_core)  # type: ignore[union-attr]
    # the new core orders transactions
    keys = net.keys_for(1, 1, "after") + net.keys_for(2, 1, "after")
    txn = net.transaction("after", 1, keys)
    net.submit(txn)
    net.run_for(3.0)
    assert net.check_atomicity([txn]) == {txn.txn_id: True}
    assert any(at[0] == 1 for at in net.shards[1].decided_at[txn.txn_id])
    assert all(g == CORE_GROUP_BASE + 1 for (_, g), r in net.hosted.items() if r.state is not None and not r.state.closed)
