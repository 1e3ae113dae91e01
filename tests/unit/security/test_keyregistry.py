"""The key registry as a replicated state machine: rotation with a quorum of
approvals and an overlap, retirement, revocation at one index, admission with
no self-admission, and every bad input refused with a reason (never raised)."""

from __future__ import annotations

import hashlib

import pytest

from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.security.keyregistry import (
    KIND_SIGNING,
    KIND_TLS,
    AnnounceKey,
    Describe,
    KeyRegistry,
    RegistryPolicy,
    announce_bytes,
    encode_registry_command,
    make_admission_request,
    make_announcement,
    make_approval,
    make_retirement,
    make_revocation,
    public_key_of,
    subject_of,
)
from quorate.security.reputation import ReputationBook, ReputationPolicy


def seed(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def sign(seed: bytes, message: bytes) -> bytes:
    from nacl.signing import SigningKey

    return bytes(SigningKey(seed).sign(message).signature)


SEEDS = {NodeId(i): seed(f"n{i}") for i in (1, 2, 3, 4)}
GENESIS = {n: public_key_of(s) for n, s in SEEDS.items()}


class Replicas:
    """A few registries fed the same log, as the replicas of a group are."""

    def __init__(self, count: int = 3, policy: RegistryPolicy | None = None) -> None:
        self.all = [KeyRegistry(GENESIS, policy) for _ in range(count)]
        self.index = 0
        self.now_s = 1.0

    @property
    def one(self) -> KeyRegistry:
        return self.all[0]

    def apply(self, command: object, *, raw: bytes | None = None, advance_s: float = 0.0):  # type: ignore[no-untyped-def]
        self.index += 1
        self.now_s += advance_s
        data = raw if raw is not None else encode_registry_command(command)  # type: ignore[arg-type]
        results = [r.apply(self.index, self.now_s, data) for r in self.all]
        assert len({(x.ok, x.value, x.error) for x in results}) == 1, "replicas disagree"
        return results[0]

    def approve(self, subject: bytes, *approvers: int):  # type: ignore[no-untyped-def]
        result = None
        for a in approvers:
            result = self.apply(make_approval(self.one.cluster, a, subject, SEEDS[NodeId(a)]))
        return result


def rotate(replicas: Replicas, node: int, new: bytes, *, signer: bytes | None = None, serial: int | None = None) -> AnnounceKey:
    registry = replicas.one
    return make_announcement(
        registry.cluster,
        node,
        KIND_SIGNING,
        public_key_of(new),
        registry.next_serial(node) if serial is None else serial,
        signer if signer is not None else SEEDS[NodeId(node)],
        new,
    )


def test_a_rotation_takes_effect_at_the_approval_that_makes_the_quorum() -> None:
    replicas = Replicas()
    new = seed("n1-second")
    announcement = rotate(replicas, 1, new)
    assert replicas.apply(announcement).ok
    subject = subject_of(announcement)
    message = b"block 9"
    from nacl.signing import SigningKey

    signed_new = bytes(SigningKey(new).sign(message).signature)
    signed_old = bytes(SigningKey(SEEDS[NodeId(1)]).sign(message).signature)
    # Pending: only the old key speaks for n1.
    assert replicas.one.verify(1, message, signed_old)
    assert not replicas.one.verify(1, message, signed_new)
    # n = 4 members: 3 approvals. The node's own approval does not count.
    assert replicas.apply(make_approval(replicas.one.cluster, 1, subject, SEEDS[NodeId(1)])).error == "self-approval"
    assert replicas.approve(subject, 2, 3).value == "2/3"
    assert not replicas.one.verify(1, message, signed_new)
    assert replicas.approve(subject, 4).value == "decided"
    activated_at = replicas.index
    for registry in replicas.all:
        # The overlap: both verify, the new key first.
        assert registry.valid_keys(1) == (public_key_of(new), GENESIS[NodeId(1)])
        assert registry.verify(1, message, signed_new) and registry.verify(1, message, signed_old)
    events = replicas.one.take_events()
    assert [(e.what, e.index) for e in events if e.what == "activated"] == [("activated", activated_at)]
    # The new key retires the old one: from that index only the new key verifies.
    retire = make_retirement(replicas.one.cluster, 1, KIND_SIGNING, GENESIS[NodeId(1)], new)
    assert replicas.apply(retire).ok
    for registry in replicas.all:
        assert registry.verify(1, message, signed_new)
        assert not registry.verify(1, message, signed_old)


def test_the_overlap_ends_by_log_time_at_the_latest() -> None:
    replicas = Replicas(policy=RegistryPolicy(max_overlap_s=30.0))
    new = seed("n2-second")
    announcement = rotate(replicas, 2, new)
    replicas.apply(announcement)
    replicas.approve(subject_of(announcement), 1, 3, 4)
    assert len(replicas.one.valid_keys(2)) == 2
    replicas.apply(Describe(), advance_s=10.0)
    assert len(replicas.one.valid_keys(2)) == 2
    replicas.apply(Describe(), advance_s=25.0)
    assert replicas.one.valid_keys(2) == (public_key_of(new),)


def test_revocation_takes_effect_on_every_replica_at_one_index() -> None:
    replicas = Replicas()
    cluster = replicas.one.cluster
    assert replicas.apply(make_revocation(cluster, 4, 1, "key leaked", SEEDS[NodeId(1)])).value == "1/3"
    # The target's approval does not count; another proposer's revocation joins the same item.
    assert replicas.apply(make_revocation(cluster, 4, 2, "key leaked", SEEDS[NodeId(2)])).value == "2/3"
    assert replicas.one.revoked_at(4) is None
    assert replicas.apply(make_revocation(cluster, 4, 3, "agreed", SEEDS[NodeId(3)])).value == "decided"
    at = replicas.index
    assert {r.revoked_at(4) for r in replicas.all} == {at}
    assert replicas.one.members() == [1, 2, 3]
    assert replicas.one.valid_keys(4) == ()
    # The revoked node's commands are refused from here on, on every replica.
    late = rotate(replicas, 4, seed("n4-escape"))
    assert replicas.apply(late).error == "announcement by a revoked node"
    assert replicas.apply(make_revocation(cluster, 1, 4, "revenge", SEEDS[NodeId(4)])).error == "approver is revoked"
    # With 3 members left, 2 approvals make a quorum.
    assert replicas.one.quorum() == 2


def test_admission_needs_a_quorum_and_nobody_admits_itself() -> None:
    replicas = Replicas()
    newcomer = seed("n5")
    request = make_admission_request(replicas.one.cluster, 5, newcomer)
    assert replicas.apply(request).ok
    subject = subject_of(request)
    # n5 is no member: its approval of itself is refused.
    assert replicas.apply(make_approval(replicas.one.cluster, 5, subject, newcomer)).error == "approver is not a member"
    replicas.approve(subject, 1, 2)
    assert replicas.one.admitted_at(5) is None
    assert replicas.approve(subject, 3).value == "decided"
    assert replicas.one.admitted_at(5) == replicas.index
    assert 5 in replicas.one.members()
    # A newcomer's reputation starts low and grows with its age in the log.
    book = ReputationBook(replicas.one, ReputationPolicy(initial_score=0.1, maturity_entries=100))
    assert book.score(1, replicas.index) == 1.0
    assert book.score(5, replicas.index) == pytest.approx(0.1)
    assert book.score(5, replicas.index + 50) == pytest.approx(0.55)
    assert book.score(5, replicas.index + 500) == 1.0
    book.penalize(5)
    assert book.score(5, replicas.index + 500) == pytest.approx(0.5)
    assert book.score(9, replicas.index) == 0.0


def test_admissions_are_rate_limited_per_approver_and_pending_items_are_bounded() -> None:
    replicas = Replicas(policy=RegistryPolicy(admissions_per_approver=2, approver_window_s=60.0, max_pending=3))
    cluster = replicas.one.cluster
    subjects = []
    for node in (10, 11, 12):
        request = make_admission_request(cluster, node, seed(f"sybil-{node}"))
        assert replicas.apply(request).ok
        subjects.append(subject_of(request))
    assert replicas.apply(make_admission_request(cluster, 13, seed("sybil-13"))).error == "too many items waiting for approval"
    assert replicas.approve(subjects[0], 1).ok
    assert replicas.approve(subjects[1], 1).ok
    assert replicas.approve(subjects[2], 1).error == "approver exceeded its admission rate"
    # The window slides with log time.
    replicas.apply(Describe(), advance_s=61.0)
    assert replicas.approve(subjects[2], 1).ok
    assert replicas.one.refused["approver exceeded its admission rate"] == 1


def test_pending_items_lapse() -> None:
    replicas = Replicas(policy=RegistryPolicy(pending_ttl_s=5.0))
    request = make_admission_request(replicas.one.cluster, 7, seed("late"))
    replicas.apply(request)
    replicas.apply(Describe(), advance_s=6.0)
    assert replicas.approve(subject_of(request), 1).error == "approval of nothing pending"


BAD_INPUTS = {
    "malformed registry command": lambda r: (None, b"\xc1\x00garbage"),
    "announcement not signed by the node's current key": lambda r: (rotate(r, 1, seed("x"), signer=SEEDS[NodeId(2)]), None),
    "replayed announcement (serial already used)": lambda r: (rotate(r, 1, seed("x"), serial=0), None),
    "announcement serial skips ahead": lambda r: (rotate(r, 1, seed("x"), serial=5), None),
    "announced key is not 32 bytes": lambda r: (AnnounceKey(1, KIND_SIGNING, b"\x01" * 31, 1, b"", b""), None),
    "unknown key kind 'ssh'": lambda r: (AnnounceKey(1, "ssh", b"\x01" * 32, 1, b"", b""), None),
    "announcement for a node that is not a member": lambda r: (rotate(r, 9, seed("x"), signer=seed("n9")), None),
    "approval of nothing pending": lambda r: (make_approval(r.one.cluster, 2, b"\x00" * 32, SEEDS[NodeId(2)]), None),
    "a node may not propose its own revocation": lambda r: (make_revocation(r.one.cluster, 2, 2, "", SEEDS[NodeId(2)]), None),
    "approval not signed by the approver's current key": lambda r: (make_revocation(r.one.cluster, 2, 3, "", SEEDS[NodeId(1)]), None),
}


@pytest.mark.parametrize("reason", sorted(BAD_INPUTS))
def test_bad_input_is_refused_with_its_reason_and_counted(reason: str) -> None:
    replicas = Replicas()
    command, raw = BAD_INPUTS[reason](replicas)
    result = replicas.apply(command, raw=raw)
    assert (result.ok, result.error) == (False, reason)
    assert all(r.refused == {reason: 1} for r in replicas.all)


def test_a_forged_proof_of_the_new_key_is_refused() -> None:
    replicas = Replicas()
    registry = replicas.one
    new_key = public_key_of(seed("stolen"))
    genuine = rotate(replicas, 1, seed("stolen"))
    # Someone who knows only the public key cannot prove possession: a proof
    # made for another key, or truncated, or off the curve, is refused.
    other = rotate(replicas, 1, seed("mine"))
    for proof in (other.proof, genuine.proof[:40], b"\xff" * 64):
        # The old key is the node's own: only the proof is wrong.
        signature = sign(SEEDS[NodeId(1)], announce_bytes(registry.cluster, 1, KIND_SIGNING, new_key, 1, proof))
        result = replicas.apply(AnnounceKey(1, KIND_SIGNING, new_key, 1, proof, signature))
        assert not result.ok and result.error is not None and result.error.startswith("no proof of the new key")


def test_tls_pins_follow_rotation() -> None:
    replicas = Replicas()
    registry = replicas.one
    old_fp, new_fp = hashlib.sha256(b"old cert").digest(), hashlib.sha256(b"new cert").digest()
    assert registry.certificate_allowed(2, old_fp)  # genesis: any certificate of the CA
    announcement = make_announcement(registry.cluster, 2, KIND_TLS, new_fp, 1, SEEDS[NodeId(2)])
    replicas.apply(announcement)
    replicas.approve(subject_of(announcement), 1, 3, 4)
    assert registry.certificate_allowed(2, old_fp) and registry.certificate_allowed(2, new_fp)
    replicas.apply(make_retirement(registry.cluster, 2, KIND_TLS, b"", SEEDS[NodeId(2)]))
    assert registry.certificate_allowed(2, new_fp)
    assert not registry.certificate_allowed(2, old_fp)


def test_snapshots_restore_the_same_registry() -> None:
    replicas = Replicas(count=1)
    assert replicas.one.snapshot() is None  # nothing beyond the genesis: nothing to save
    announcement = rotate(replicas, 3, seed("n3-b"))
    replicas.apply(announcement)
    replicas.approve(subject_of(announcement), 1, 2)
    replicas.apply(make_admission_request(replicas.one.cluster, 6, seed("n6")))
    data = replicas.one.snapshot()
    assert data is not None
    copy = KeyRegistry(GENESIS)
    copy.restore(data)
    assert copy.describe() == replicas.one.describe()
    assert copy.valid_keys(3) == replicas.one.valid_keys(3)
    foreign = KeyRegistry({NodeId(1): public_key_of(seed("other cluster"))})
    with pytest.raises(ValueError, match="another cluster"):
        foreign.restore(data)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        KeyRegistry({})
    with pytest.raises(ConfigError):
        KeyRegistry({NodeId(1): b"short"})
    with pytest.raises(ConfigError):
        RegistryPolicy(max_pending=0).validate()
