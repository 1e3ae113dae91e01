"""Certified core decisions (docs/hrb.md section 3) with real threshold BLS:
partials go to one collector, t of them make a certificate anyone checks
with the epoch's group key; forged certificates, certificates of another
epoch, t − 1 partials and partials from non-members are refused; a silent
collector is replaced; a certificate for another decision than the one
applied is a fork and fails loudly."""

from __future__ import annotations

import pytest

pytest.importorskip("blspy")

from quorate.errors import InvariantViolation
from quorate.hrb.core.certify import Certifier, CoreKeyChain
from quorate.hrb.core.commands import DecisionPartial
from quorate.hrb.core.config import CoreConfig
from quorate.hrb.core.threshold_bls import BlsSuite
from quorate.hrb.messages import (
    CoreCertificate,
    EpochChange,
    Evict,
    TxnDecision,
    certificate_bytes,
    encode_decision,
)
from quorate.ids import NodeId

SUITE = BlsSuite()
MEMBERS = tuple(NodeId(m) for m in (2, 5, 7, 11))  # C = 4, f = 1, t = 3
CONFIG = CoreConfig(certificate_timeout_s=1.0, max_certificate_timeout_s=4.0)


def _core(epoch: int = 0, seed: bytes = b"epoch 0", excluded: frozenset[int] = frozenset()) -> tuple[dict[NodeId, Certifier], bytes]:
    commitments, shares = SUITE.deal(3, MEMBERS, seed)
    key = SUITE.epoch_key(3, len(MEMBERS), commitments)
    certifiers = {
        m: Certifier(m, epoch, MEMBERS, key, SUITE.partial_signer(key, *shares[m]), CONFIG, lambda: excluded)
        for m in MEMBERS
    }
    return certifiers, key.group_public_key


def _exchange(certifiers: dict[NodeId, Certifier], now: float, silent: set[NodeId] = frozenset()) -> list[CoreCertificate]:
    """Deliver every queued message (to silent members: dropped) until quiet."""
    made: list[CoreCertificate] = []
    while True:
        queued = []
        for node, certifier in certifiers.items():
            out = certifier.take()
            queued += [(node, to, m) for to, m in out.messages]
            made += [c for c, _ in out.certified]
        if not queued:
            return made
        for sender, to, message in queued:
            if to in silent or to not in certifiers:
                continue
            if isinstance(message, DecisionPartial):
                certifiers[to].on_partial(sender, message, now)
            else:
                certifiers[to].on_certificate(sender, message)


DECISION = encode_decision(TxnDecision(b"t" * 16, True, ""))


def test_partials_to_one_collector_make_a_certificate_anyone_checks() -> None:
    certifiers, group_key = _core()
    for certifier in certifiers.values():
        certifier.decided(1, DECISION, None, 0.0, replay=False)
    [certificate] = _exchange(certifiers, 0.0)
    assert certifiers[MEMBERS[0]].combined == 1  # the lowest id collects
    assert sum(c.partials_sent for c in certifiers.values()) == len(MEMBERS) - 1
    chain = CoreKeyChain(SUITE.verify_group, 0, group_key, MEMBERS)
    decision, reason = chain.check(certificate)
    assert reason == "" and decision == TxnDecision(b"t" * 16, True, "")
    assert all(c.certificate(1) == certificate for c in certifiers.values())
    assert all(c.wake_at() is None for c in certifiers.values())


def test_forged_and_misattributed_certificates_are_refused() -> None:
    certifiers, group_key = _core()
    for certifier in certifiers.values():
        certifier.decided(1, DECISION, None, 0.0, replay=False)
    [good] = _exchange(certifiers, 0.0)
    chain = CoreKeyChain(SUITE.verify_group, 0, group_key, MEMBERS)
    other = encode_decision(TxnDecision(b"t" * 16, False, "forged"))
    forged_decision = CoreCertificate(0, 1, other, good.signature)
    assert chain.check(forged_decision) == (None, "certificate does not verify with the epoch's group key")
    forged_index = CoreCertificate(0, 2, good.decision, good.signature)
    assert chain.check(forged_index)[0] is None
    garbage = CoreCertificate(0, 1, good.decision, b"\x01" * 96)
    assert chain.check(garbage)[0] is None
    unknown_epoch = CoreCertificate(1, 1, good.decision, good.signature)
    assert chain.check(unknown_epoch) == (None, "unknown epoch 1")
    # A member refuses them too.
    member = certifiers[MEMBERS[1]]
    member.on_certificate(MEMBERS[0], CoreCertificate(0, 2, other, good.signature))
    member.on_certificate(MEMBERS[0], unknown_epoch)
    reasons = [r.reason for r in member.take().rejected]
    assert reasons == ["certificate does not verify", "certificate of epoch 1, this is epoch 0"]


def test_a_certificate_of_another_epoch_does_not_verify_under_this_epochs_key() -> None:
    old, old_key = _core(0, b"epoch 0")
    new, new_key = _core(1, b"epoch 1")
    change = EpochChange(1, MEMBERS, 3, new_key)
    for certifier in old.values():
        certifier.decided(1, encode_decision(change), None, 0.0, replay=False)
    [change_certificate] = _exchange(old, 0.0)
    for certifier in new.values():
        certifier.decided(1, DECISION, None, 0.0, replay=False)
    [epoch1] = _exchange(new, 0.0)
    chain = CoreKeyChain(SUITE.verify_group, 0, old_key, MEMBERS)
    assert chain.check(epoch1) == (None, "unknown epoch 1")
    decision, _ = chain.accept(change_certificate)
    assert decision == change and chain.group_key(1) == new_key and chain.members(1) == MEMBERS
    assert chain.check(epoch1)[0] == TxnDecision(b"t" * 16, True, "")
    relabelled = CoreCertificate(0, epoch1.index, epoch1.decision, epoch1.signature)
    assert chain.check(relabelled)[0] is None
    # An epoch change that skips epochs is refused even if signed.
    skip = encode_decision(EpochChange(3, MEMBERS, 3, new_key))
    for certifier in old.values():
        certifier.decided(2, skip, None, 0.0, replay=False)
    [skipping] = _exchange(old, 0.0)
    assert chain.check(skipping) == (None, "epoch change to 3 certified by epoch 0")


def test_t_minus_one_partials_make_no_certificate() -> None:
    certifiers, _ = _core()
    members = list(certifiers)
    for certifier in certifiers.values():
        certifier.decided(1, DECISION, None, 0.0, replay=False)
    # Only the collector and one other member's partial arrive: 2 = t - 1.
    silent_partials = set(members[2:])
    for node in silent_partials:
        certifiers[node].take()
    assert _exchange(certifiers, 0.0) == []
    assert certifiers[members[0]].certificate(1) is None
    # Combining t - 1 partials by hand does not give the group signature either.
    commitments, shares = SUITE.deal(3, MEMBERS, b"epoch 0")
    key = SUITE.epoch_key(3, 4, commitments)
    message = certificate_bytes(0, 1, DECISION)
    partials = {i: SUITE.partial_signer(key, i, secret).sign(message) for i, secret in (shares[m] for m in MEMBERS[:2])}
    assert key.combine(message, partials) == (None, [])


def test_a_partial_from_a_non_member_or_an_evicted_member_or_a_bad_one_is_refused() -> None:
    certifiers, _ = _core(excluded=frozenset({MEMBERS[3]}))
    collector = certifiers[MEMBERS[0]]
    collector.decided(1, DECISION, None, 0.0, replay=False)
    collector.on_partial(NodeId(99), DecisionPartial(0, 1, b"\x02" * 96), 0.0)
    collector.on_partial(MEMBERS[3], DecisionPartial(0, 1, b"\x02" * 96), 0.0)
    collector.on_partial(MEMBERS[1], DecisionPartial(1, 1, b"\x02" * 96), 0.0)
    collector.on_partial(MEMBERS[1], DecisionPartial(0, 10**9, b"\x02" * 96), 0.0)
    reasons = [r.reason for r in collector.take().rejected]
    assert reasons == [
        "partial from a node outside this epoch's core",
        "partial from an evicted member",
        "partial for epoch 1, this is epoch 0",
        "partial outside the window of decisions",
    ]
    # A member's bad partial is found, dropped, reported; good ones certify.
    collector.on_partial(MEMBERS[1], DecisionPartial(0, 1, b"\x03" * 96), 0.0)
    for member in MEMBERS[2:3]:
        certifiers[member].decided(1, DECISION, None, 0.0, replay=False)
    _exchange({MEMBERS[0]: collector, MEMBERS[2]: certifiers[MEMBERS[2]]}, 0.0)
    assert collector.certificate(1) is None
    assert collector.bad_partials == 1
    # The bad partial was dropped, so MEMBERS[1]'s own good one counts when it comes.
    certifiers[MEMBERS[1]].decided(1, DECISION, None, 0.0, replay=False)
    made = _exchange({m: certifiers[m] for m in MEMBERS[:3]}, 0.0)
    assert [c.index for c in made] == [1]


def test_a_silent_collector_is_replaced_after_the_timeout() -> None:
    certifiers, _ = _core()
    silent = {MEMBERS[0]}
    for node in MEMBERS[1:]:
        certifiers[node].decided(1, DECISION, None, 0.0, replay=False)
    assert _exchange({m: certifiers[m] for m in MEMBERS[1:]}, 0.0, silent) == []
    assert certifiers[MEMBERS[1]].wake_at() == CONFIG.certificate_timeout_s
    for node in MEMBERS[1:]:
        certifiers[node].tick(CONFIG.certificate_timeout_s)
    made = _exchange({m: certifiers[m] for m in MEMBERS[1:]}, 1.0, silent)
    assert [c.index for c in made] == [1]
    assert certifiers[MEMBERS[1]].combined == 1  # the next in line collected


def test_members_that_replayed_a_decision_sign_it_once_its_partials_reach_them() -> None:
    """Two members crashed in turn: 2 and 5 replayed decision 1 from disk
    (a replay signs nothing), 7 and 11 signed it, and t = 3. Every collector
    in line used to hold two partials forever; a member that collects for a
    decision it replayed unsigned adds its own share."""
    certifiers, _ = _core()
    replayed, signed = MEMBERS[:2], MEMBERS[2:]
    for node in replayed:
        certifiers[node].decided(1, DECISION, None, 0.0, replay=True)
    for node in signed:
        certifiers[node].decided(1, DECISION, None, 0.0, replay=False)
    made = _exchange(certifiers, 0.0)
    assert [c.index for c in made] == [1]
    assert certifiers[MEMBERS[0]].combined == 1 and certifiers[MEMBERS[0]].late_partials == 1
    assert certifiers[MEMBERS[1]].late_partials == 0  # not asked: it was not in line
    assert all(c.certificate(1) is not None for c in certifiers.values())
    # Without the surviving signers' partials nobody signs a replayed decision.
    quiet, _ = _core()
    for certifier in quiet.values():
        certifier.decided(1, DECISION, None, 0.0, replay=True)
    assert _exchange(quiet, 0.0) == [] and all(c.wake_at() is None for c in quiet.values())


def test_a_certificate_for_another_decision_than_the_one_applied_is_a_fork() -> None:
    certifiers, _ = _core()
    for certifier in list(certifiers.values())[:3]:
        certifier.decided(1, encode_decision(Evict(9, b"d" * 32)), None, 0.0, replay=False)
    [certificate] = _exchange(dict(list(certifiers.items())[:3]), 0.0)
    lagging = certifiers[MEMBERS[3]]
    lagging.on_certificate(MEMBERS[0], certificate)  # verifies: kept until the decision is applied
    with pytest.raises(InvariantViolation, match="core log fork"):
        lagging.decided(1, DECISION, None, 0.0, replay=False)
