"""PBFT with MACs in the normal case (``authentication="macs"``): MAC'd
pre-prepares, prepares and commits, and the view change for MACs.

References are to Castro & Liskov, TOCS 2002 (§3.2: MAC authenticators; the
view change without certificates: P and Q claims, the decision procedure).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable

import msgspec
import pytest
from pbft_testnet import (
    KeyedSigner,
    KeyedVerifier,
    Net,
    SessionKeyAuthenticator,
    check_safety,
    step_junk,
)

from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.pbft import (
    BEHAVIOURS,
    Checkpoint,
    ClaimedBatch,
    Commit,
    CommittedBatch,
    NewView,
    PbftConfig,
    PbftHardState,
    PbftReplica,
    Prepare,
    PrePrepare,
    SlotClaim,
    Status,
    ViewChange,
)
from quorate.pbft.messages import DIGEST_BYTES

MACS = PbftConfig(batch_max=8, checkpoint_interval=4, batch_timeout_s=0.001, authentication="macs")
SIGNATURES = PbftConfig(batch_max=8, checkpoint_interval=4, batch_timeout_s=0.001)


def commands(count: int, tag: str = "c") -> list[bytes]:
    return [f"{tag}-{i}".encode() for i in range(count)]


def run_workload(config: PbftConfig, n: int = 4, count: int = 40) -> Net:
    net = Net(n, seed=31, config=config)
    for i, c in enumerate(commands(count)):
        net.propose(i % n, c)
    assert net.run_until_committed(count, timeout_s=5)
    check_safety(net.honest_logs())
    return net


def intercept(net: Net, keep: Callable[[NodeId, NodeId, object], bool]) -> list[tuple[NodeId, NodeId, object]]:
    """Route every message through ``keep`` (False: lost) and record what was sent."""
    sent: list[tuple[NodeId, NodeId, object]] = []
    original = net._send

    def send(src: NodeId, dst: NodeId, message: object) -> None:
        sent.append((src, dst, message))
        if keep(src, dst, message):
            original(src, dst, message)

    net._send = send  # type: ignore[method-assign]
    return sent


def reasons(net: Net, r: int) -> list[str]:
    return [x.reason for x in net.rejections[NodeId(r)]]


@pytest.mark.parametrize("n", [4, 7])
def test_the_normal_case_carries_authenticators_not_signatures(n: int) -> None:
    net = Net(n, seed=30, config=MACS)
    sent = intercept(net, lambda src, dst, m: True)
    for i, c in enumerate(commands(30)):
        net.propose(i % n, c)
    assert net.run_until_committed(30, timeout_s=5)
    check_safety(net.honest_logs())
    kinds = {type(m).__name__ for _, _, m in sent}
    assert {"PrePrepare", "Prepare", "Commit", "Checkpoint"} <= kinds
    for src, _, m in sent:
        if isinstance(m, PrePrepare | Prepare | Commit):
            assert m.signature == b"", m
            assert sorted(r for r, _ in m.macs) == [r for r in range(n) if r != src]
        if isinstance(m, Prepare):
            assert m.primary_signature == b""
        if isinstance(m, Checkpoint):
            assert m.signature  # checkpoints stay signed
    for r in net.replicas:
        assert not net.rejections[r], net.rejections[r][:3]
        assert net.authenticators[r].checked > 0
        # The only signatures are checkpoints'.
        own_checkpoints = {m.seq for _, _, m in sent if isinstance(m, Checkpoint) and m.replica == r}
        assert net.signers[r].signed == len(own_checkpoints) > 0
    # Reference: section 3.2 (authenticators), "MACs in the normal case"


def test_macs_replace_the_normal_case_signatures_one_for_one() -> None:
    # Same workload, same seed: every pre-prepare, prepare and commit
    # signature becomes one authenticator.
    with_macs = run_workload(MACS)
    signed = run_workload(SIGNATURES)
    for r in with_macs.replicas:
        made = with_macs.authenticators[r].made
        assert made > 0
        assert with_macs.signers[r].signed + made == signed.signers[r].signed


def test_a_commit_with_a_wrong_or_missing_mac_is_rejected() -> None:
    net = Net(4, seed=32, config=MACS)
    core = net.cores[NodeId(1)]
    forger = SessionKeyAuthenticator(NodeId(3), net.replicas)  # 3's keys, not 2's
    unsigned = Commit(0, 1, b"d" * 32, 2, b"")
    forged = forger.macs(unsigned.authenticated_bytes(), [NodeId(1)])
    core.step(NodeId(2), Commit(0, 1, b"d" * 32, 2, b"", tuple(forged.items())), 0.0)
    core.step(NodeId(2), unsigned, 0.0)
    signature_only = Commit(0, 1, b"d" * 32, 2, KeyedSigner(NodeId(2)).sign(unsigned.authenticated_bytes()))
    core.step(NodeId(2), signature_only, 0.0)
    assert [r.reason for r in core.ready().rejected] == ["bad authenticator"] * 3


def test_lagging_replicas_execute_what_f_plus_1_replicas_vouch_for() -> None:
    net = run_workload(dataclasses.replace(MACS, checkpoint_interval=32), count=10)
    assert net.core(1).executed_seq > net.core(1).stable_seq
    # A peer reports it executed nothing: the answers hold no commit
    # certificate (MAC'd commits convince nobody else) but each replica's
    # own authenticated word that it executed each batch.
    vouchers: dict[int, list[CommittedBatch]] = {}
    for r in (1, 3):
        net.cores[NodeId(r)].step(NodeId(2), Status(0, True, 0), net.now)
        vouchers[r] = [m for to, m in net.cores[NodeId(r)].ready().messages if isinstance(m, CommittedBatch)]
        assert vouchers[r] and all(to_check.commits == () for to_check in vouchers[r])
        assert all([x for x, _ in v.macs] == [2] and v.pre_prepare.signature == b"" for v in vouchers[r])
    first = vouchers[1][0]
    fresh = Net(4, seed=33, config=MACS)
    core = fresh.cores[NodeId(2)]
    # A certificate of signed commits is not what MAC mode accepts.
    core.step(NodeId(1), CommittedBatch(first.pre_prepare, ()), 0.0)
    core.step(NodeId(3), msgspec.structs.replace(first, macs=()), 0.0)  # 1's word, passed off by 3
    assert [r.reason for r in core.ready().rejected] == ["bad authenticator"] * 2
    # One replica's word is not enough (it may be the faulty one)...
    core.step(NodeId(1), first, 0.0)
    assert fresh.core(2).executed_seq == 0
    # ...nor is a second replica's word for another batch...
    forged_pp = msgspec.structs.replace(first.pre_prepare, batch=(b"x",))
    bare = CommittedBatch(forged_pp, ())
    keys_of_3 = SessionKeyAuthenticator(NodeId(3), fresh.replicas)
    macs = keys_of_3.macs(bare.vouched_bytes(forged_pp.digest()), [NodeId(2)])
    core.step(NodeId(3), msgspec.structs.replace(bare, macs=tuple(macs.items())), 0.0)
    assert not core.ready().rejected
    assert fresh.core(2).executed_seq == 0
    # ...f + 1 for the same batch are.
    core.step(NodeId(3), vouchers[3][0], 0.0)
    assert fresh.core(2).executed_seq == 1
    assert [e.data for e in core.ready().committed] == [
        e.data for e in net.committed[NodeId(1)][: len(first.pre_prepare.batch)]
    ]


def test_a_peer_repeating_itself_for_a_finished_slot_gets_our_word_too() -> None:
    # A peer that repeats its prepare for a slot we executed may hold another
    # batch there (an equivocating primary's): our MAC'd messages for the
    # slot cannot help it, our word that we executed the batch can.
    net = run_workload(dataclasses.replace(MACS, checkpoint_interval=32), count=10)
    repeat = net.core(2)._slots[1].my_prepare
    assert repeat is not None
    net.cores[NodeId(1)].step(NodeId(2), repeat, net.now)
    out = [m for to, m in net.cores[NodeId(1)].ready().messages if to == 2]
    assert [type(m).__name__ for m in out] == ["Prepare", "Commit", "CommittedBatch"]
    vouch = out[-1]
    assert isinstance(vouch, CommittedBatch) and vouch.pre_prepare.seq == 1 and not vouch.commits


def test_view_change_and_lagging_replica_catch_up_with_macs() -> None:
    net = Net(4, seed=34, config=MACS, loss=0.1)
    net.crash(0)  # the primary of view 0
    net.isolate(3)
    for i, c in enumerate(commands(24)):
        net.propose(1 + i % 2, c)
    net.run(0.5)
    net.heal()
    assert net.run_until_committed(24, timeout_s=15)
    check_safety(net.honest_logs())
    assert all(net.core(r).view >= 1 for r in (1, 2, 3))


def test_macs_need_an_authenticator() -> None:
    with pytest.raises(ConfigError, match="MacAuthenticator"):
        PbftReplica(
            NodeId(0),
            [NodeId(i) for i in range(4)],
            config=MACS,
            signer=KeyedSigner(NodeId(0)),
            verifier=KeyedVerifier(),
            rng=random.Random(0),
            now=0.0,
        )
    with pytest.raises(ConfigError, match="authentication must be one of"):
        PbftConfig(authentication="none").validate(4)


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_safety_and_progress_with_a_byzantine_replica_and_macs(behaviour: str) -> None:
    for byzantine in (0, 2):  # the first primary, and a backup
        net = Net(4, seed=35, config=MACS, byzantine={byzantine: behaviour}, loss=0.05)
        honest = [r for r in range(4) if r != byzantine]
        for i, c in enumerate(commands(12, behaviour)):
            net.propose(honest[i % 3], c)
        assert net.run_until_committed(12, timeout_s=30), (behaviour, byzantine)
        check_safety(net.honest_logs())
        for r in net.honest:
            assert not set(net.core(r).excluded) & set(net.honest)


# ------------------------------------------------------------ view change


def prepared_then_primary_crashes(prepared_at: tuple[int, ...], *, seed: int = 40) -> tuple[Net, list[bytes]]:
    """View 0: six commands get batches pre-prepared everywhere and prepared
    only at ``prepared_at`` (view-0 prepares reach nobody else, and no view-0
    commit reaches anyone, so nothing commits in view 0). Then the primary
    crashes: only a view change can order the batches."""
    net = Net(4, seed=seed, config=MACS)

    def keep(src: NodeId, dst: NodeId, m: object) -> bool:
        if isinstance(m, Commit) and m.view == 0:
            return False
        return not (isinstance(m, Prepare) and m.view == 0 and int(dst) not in prepared_at)

    net.sent = intercept(net, keep)  # type: ignore[attr-defined]
    cmds = commands(6, "vc")
    for i, c in enumerate(cmds):
        net.propose(1 + i % 3, c)
    net.run(0.2)
    assert not any(net.committed[r] for r in net.replicas)
    for r in (1, 2, 3):
        core = net.core(r)
        assert bool(core._p_claims) == (r in prepared_at), r
        assert core._q_claims  # every backup pre-prepared the batches
    net.crash(0)
    return net, cmds


@pytest.mark.parametrize("prepared_at", [(1, 2, 3), (1, 2), (1,)])
def test_prepared_batches_survive_a_view_change_with_macs(prepared_at: tuple[int, ...]) -> None:
    net, cmds = prepared_then_primary_crashes(prepared_at)
    assert net.run_until_committed(len(cmds), timeout_s=10)
    check_safety(net.honest_logs())
    logs = [net.committed[NodeId(r)] for r in (1, 2, 3)]
    assert all(log == logs[0] for log in logs)
    # Each command executed once, as ordered in view 0 (its origin view).
    assert sorted(e.data for e in logs[0]) == sorted(cmds)
    assert all(e.term == 0 for e in logs[0])
    new_views = [m for _, _, m in net.sent if isinstance(m, NewView)]  # type: ignore[attr-defined]
    assert new_views and new_views[0].view == 1
    o = new_views[0].pre_prepares
    assert o and all(pp.origin_view == 0 and pp.batch for pp in o)
    assert all(pp.signature == b"" and not pp.macs for pp in o)  # the new-view's signature covers O
    assert new_views[0].signature and all(vc.signature and vc.has_claims for vc in new_views[0].view_changes)
    # Reference: the view change for MACs (P and Q claims, rules A1-A3)


def captured_new_view() -> NewView:
    net, cmds = prepared_then_primary_crashes((1, 2, 3), seed=41)
    assert net.run_until_committed(len(cmds), timeout_s=10)
    new_view = next(m for _, _, m in net.sent if isinstance(m, NewView))  # type: ignore[attr-defined]
    assert new_view.pre_prepares
    return new_view


def test_a_backup_rejects_a_new_view_whose_o_differs_from_the_recomputed_one() -> None:
    nv = captured_new_view()
    signer = KeyedSigner(NodeId(1))  # the primary of view 1 re-signs what it tampered with
    first, rest = nv.pre_prepares[0], nv.pre_prepares[1:]
    swapped = msgspec.structs.replace(first, batch=(b"smuggled",))
    extra_null = PrePrepare(nv.view, nv.pre_prepares[-1].seq + 1, nv.view, (), b"")
    for o in ((swapped, *rest), rest, (*nv.pre_prepares, extra_null), ()):
        tampered = NewView(nv.view, nv.view_changes, tuple(o), 1).signed(signer)
        fresh = Net(4, seed=42, config=MACS)
        fresh.cores[NodeId(2)].step(NodeId(1), tampered, 0.0)
        assert [r.reason for r in fresh.cores[NodeId(2)].ready().rejected] == [
            "pre-prepares differ from the recomputed O"
        ]
        assert fresh.core(2).view == 0
    # The untampered one installs the view and its batches at a replica that missed it.
    fresh = Net(4, seed=42, config=MACS)
    fresh.cores[NodeId(3)].step(NodeId(1), nv, 0.0)
    core = fresh.core(3)
    assert core.view == nv.view and core.view_active
    assert [core._slots[pp.seq].pre_prepare for pp in nv.pre_prepares] == list(nv.pre_prepares)
    # Reference: backups re-run the decision procedure on the new-view's set


def signed_view_change(author: int, p: tuple[SlotClaim, ...], q: tuple[SlotClaim, ...],
                       batches: tuple[ClaimedBatch, ...], view: int = 1) -> ViewChange:
    return ViewChange(view, (), (), author, b"", p, q, batches).signed(KeyedSigner(NodeId(author)))


def test_a_new_view_leaving_a_sequence_number_undecided_is_rejected() -> None:
    batch = ClaimedBatch(0, (b"x",))
    claim = SlotClaim(1, batch.digest(), 0)
    # Replica 1 prepared the batch; 2 and 3 say they never saw it. Seq 1 can
    # be neither chosen (one pre-prepare, f + 1 needed) nor null (a P claim).
    vcs = (
        signed_view_change(1, (claim,), (claim,), (batch,)),
        signed_view_change(2, (), (), ()),
        signed_view_change(3, (), (), ()),
    )
    for o in ((), (PrePrepare(1, 1, 0, batch.batch, b""),)):
        nv = NewView(1, vcs, o, 1).signed(KeyedSigner(NodeId(1)))
        net = Net(4, seed=43, config=MACS)
        net.cores[NodeId(0)].step(NodeId(1), nv, 0.0)
        assert [r.reason for r in net.cores[NodeId(0)].ready().rejected] == [
            "the view changes leave sequence number 1 undecided"
        ]
    # With replica 0's view change (it pre-prepared the batch too) the same
    # claims decide it, and a new-view carrying it is accepted.
    vc0 = signed_view_change(0, (), (claim,), (batch,))
    nv = NewView(1, (*vcs, vc0), (PrePrepare(1, 1, 0, batch.batch, b""),), 1).signed(KeyedSigner(NodeId(1)))
    net = Net(4, seed=43, config=MACS)
    net.cores[NodeId(2)].step(NodeId(1), nv, 0.0)
    assert not net.cores[NodeId(2)].ready().rejected
    assert net.core(2).view == 1 and net.core(2).view_active


def test_the_new_primary_waits_for_view_changes_that_decide() -> None:
    # Replica 1, primary of view 1, gets view changes from 0 (it prepared a
    # batch at seq 1) and 2 (saw nothing): f + 1 pull it into view 1, and
    # with its own (nothing either) it holds a quorum. Seq 1 is undecided:
    # one pre-prepare is short of f + 1, and two messages without a P claim
    # are short of null. It must wait, not send a new-view.
    batch = ClaimedBatch(0, (b"x",))
    claim = SlotClaim(1, batch.digest(), 0)
    net = Net(4, seed=44, config=MACS)
    primary = net.cores[NodeId(1)]
    primary.step(NodeId(0), signed_view_change(0, (claim,), (claim,), (batch,)), 0.0)
    primary.step(NodeId(2), signed_view_change(2, (), (), ()), 0.0)
    out = primary.ready().messages
    core = net.core(1)
    assert core.view == 1 and not core.view_active
    assert len(core._vc_by_view[1]) == 3
    assert [type(m).__name__ for _, m in out] == ["ViewChange"] * 3
    # Replica 3 pre-prepared the batch too: A2 holds, the batch is chosen.
    primary.step(NodeId(3), signed_view_change(3, (), (claim,), (batch,)), 0.0)
    new_views = [m for _, m in primary.ready().messages if isinstance(m, NewView)]
    assert len(new_views) == 3 and core.view_active
    assert [(pp.seq, pp.origin_view, pp.batch) for pp in new_views[0].pre_prepares] == [(1, 0, batch.batch)]
    assert len(new_views[0].view_changes) == 4  # every view change it held


def test_view_changes_must_match_the_authentication_mode() -> None:
    batch = ClaimedBatch(0, (b"x",))
    claim = SlotClaim(1, batch.digest(), 0)
    with_claims = signed_view_change(2, (claim,), (claim,), (batch,))
    signatures = Net(4, seed=45, config=SIGNATURES)
    signatures.cores[NodeId(1)].step(NodeId(2), with_claims, 0.0)
    assert [r.reason for r in signatures.cores[NodeId(1)].ready().rejected] == ["invalid view change or proofs"]
    bad: list[ViewChange] = [
        # a claim in the view being asked for, or above the window
        signed_view_change(2, (SlotClaim(1, batch.digest(), 1),), (), (batch,)),
        signed_view_change(2, (SlotClaim(MACS.window + 1, batch.digest(), 0),), (), (batch,)),
        # two P claims for one seq; a batch no claim names; a malformed digest
        signed_view_change(2, (claim, SlotClaim(1, b"y" * DIGEST_BYTES, 0)), (claim,), (batch,)),
        signed_view_change(2, (claim,), (claim,), (batch, ClaimedBatch(0, (b"junk",)))),
        signed_view_change(2, (SlotClaim(1, b"short", 0),), (), ()),
        # a batch first ordered after the view its claim names
        signed_view_change(2, (SlotClaim(1, ClaimedBatch(1, (b"x",)).digest(), 0),), (), (ClaimedBatch(1, (b"x",)),)),
        # more Q claims for one seq than a replica keeps
        signed_view_change(2, (), tuple(SlotClaim(1, bytes([i]) * DIGEST_BYTES, 0) for i in range(5)), ()),
    ]
    for vc in bad:
        net = Net(4, seed=45, config=MACS)
        net.cores[NodeId(1)].step(NodeId(2), vc, 0.0)
        assert [r.reason for r in net.cores[NodeId(1)].ready().rejected] == ["invalid view change or proofs"], vc
    net = Net(4, seed=45, config=MACS)
    net.cores[NodeId(1)].step(NodeId(2), with_claims, 0.0)
    assert not net.cores[NodeId(1)].ready().rejected


def test_claims_survive_a_restart() -> None:
    net, cmds = prepared_then_primary_crashes((1, 2))
    before = net.core(1)._claims()
    assert before[0] and before[1] and before[2]
    net.crash(1)
    hard_state = net.storage[NodeId(1)].recover().hard_state
    # The claims go through the codec like any hard state.
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(hard_state), type=PbftHardState) == hard_state
    assert hard_state.prepared == ()  # no certificates with MACs
    net.restart(1)
    assert net.core(1)._claims() == before
    assert net.run_until_committed(len(cmds), timeout_s=10)
    check_safety(net.honest_logs())
    assert sorted(e.data for e in net.committed[NodeId(2)]) == sorted(cmds)


def test_signatures_mode_view_changes_are_signed_as_before() -> None:
    vc = ViewChange(3, (), (), 2)
    assert not vc.has_claims
    legacy = hashlib.blake2b(msgspec.msgpack.encode((3, (), (), 2)), digest_size=DIGEST_BYTES).digest()
    assert vc.content_digest() == legacy
    # A view change encoded without the claim fields decodes with them empty.
    old_wire = msgspec.msgpack.encode(["pbft.ViewChange", 3, [], [], 2, b"sig"])
    decoded = msgspec.msgpack.decode(old_wire, type=ViewChange)
    assert decoded == ViewChange(3, (), (), 2, b"sig")


# ---------------------------------------------------- authenticators, faults


def test_bad_or_missing_authenticators_are_rejected() -> None:
    net = Net(4, seed=46, config=MACS)
    core = net.cores[NodeId(1)]
    batch = (b"x",)
    pp = PrePrepare(0, 1, 0, batch, b"")
    digest = pp.digest()
    data = pp.authenticated_bytes(digest)
    forger = SessionKeyAuthenticator(NodeId(3), net.replicas)  # 3's keys, posing as 0
    primary = SessionKeyAuthenticator(NodeId(0), net.replicas)
    other_seq = PrePrepare(0, 2, 0, batch, b"")
    attempts: list[tuple[int, object]] = [
        (0, msgspec.structs.replace(pp, macs=tuple(forger.macs(data, [NodeId(1)]).items()))),
        (0, pp),  # no authenticator
        (0, msgspec.structs.replace(pp, signature=KeyedSigner(NodeId(0)).sign(data))),  # signed, not MAC'd
        (0, msgspec.structs.replace(pp, macs=tuple(primary.macs(data, [NodeId(2), NodeId(3)]).items()))),
        # the primary's MACs for seq 2 moved onto seq 1
        (0, msgspec.structs.replace(pp, macs=tuple(primary.macs(
            other_seq.authenticated_bytes(other_seq.digest()), [NodeId(1)]).items()))),
    ]
    prepare = Prepare(0, 1, digest, 2, b"")
    attempts += [
        (2, msgspec.structs.replace(prepare, macs=tuple(forger.macs(prepare.authenticated_bytes(), [NodeId(1)]).items()))),
        (2, prepare),
    ]
    for sender, m in attempts:
        core.step(NodeId(sender), m, 0.0)
    assert [r.reason for r in core.ready().rejected] == ["bad authenticator"] * len(attempts)
    assert not net.core(1)._slots.get(1) or net.core(1)._slots[1].pre_prepare is None
    # The genuine pre-prepare is accepted: replica 1 answers with its prepare.
    core.step(NodeId(0), msgspec.structs.replace(pp, macs=tuple(primary.macs(data, [NodeId(1)]).items())), 0.0)
    ready = core.ready()
    assert not ready.rejected
    assert [type(m).__name__ for _, m in ready.messages] == ["Prepare"] * 3


def test_a_replica_with_bad_macs_is_outvoted_and_counted() -> None:
    net = Net(4, seed=47, config=MACS, byzantine={2: "bad_signatures"})
    for i, c in enumerate(commands(12)):
        net.propose((0, 1, 3)[i % 3], c)
    assert net.run_until_committed(12, timeout_s=10)
    check_safety(net.honest_logs())
    for r in (0, 1, 3):
        assert reasons(net, r).count("bad authenticator") > 0


@pytest.mark.parametrize("n", [4, 7])
def test_conflicting_macd_pre_prepares_never_split_honest_replicas(n: int) -> None:
    for seed in range(6):
        net = Net(n, seed=50 + seed, config=MACS, byzantine={0: "equivocate"}, loss=0.05 * (seed % 2))
        honest = [r for r in range(n) if r != 0]
        for i, c in enumerate(commands(12, f"e{seed}")):
            net.propose(honest[i % len(honest)], c)
        assert net.run_until_committed(12, timeout_s=30), f"seed={50 + seed}"
        check_safety(net.honest_logs())
        for r in net.honest:
            # MAC'd pre-prepares are no evidence: nobody is convicted for them.
            assert not [d for d in net.core(r).detections if d[1] == "pbft.pre-prepare"]
            assert not set(net.core(r).excluded) & set(net.honest)


def test_f_plus_one_colluders_with_macs_break_safety_and_the_check_fires() -> None:
    from pbft_testnet import SafetyViolation

    net = Net(4, seed=17, config=MACS, byzantine={0: "equivocate", 1: "equivocate"}, coalition=True)
    net.cut |= {(2, 3), (3, 2)}
    net.propose(2, b"pay alice")
    net.run(0.5)
    with pytest.raises(SafetyViolation):
        check_safety(net.honest_logs())


def test_step_never_raises_on_junk_with_macs() -> None:
    net = Net(4, seed=48, config=MACS)
    rng = random.Random(48)
    junk: list[object] = [
        PrePrepare(0, 1, 0, (b"x",), b"", ((1, b"short"),)),
        PrePrepare(0, 1, 0, (b"x",), b"", "not macs"),  # type: ignore[arg-type]
        Prepare(0, 1, b"d" * 32, 2, b"", b"", ((1, None),)),  # type: ignore[arg-type]
        Commit(0, 1, b"d" * 32, 2, b"", ((99, b"m"),)),
        CommittedBatch(PrePrepare(0, 1, 0, (b"x",), b""), (), ((1, b"m"),)),
        CommittedBatch(PrePrepare(0, 10**9, 0, (), b""), (), ()),
        ViewChange(1, (), (), 2, b"", (SlotClaim(1, None, 0),), (), ()),  # type: ignore[arg-type]
        ViewChange(1, (), (), 2, b"", (), (), (ClaimedBatch(0, ("text",)),)),  # type: ignore[arg-type]
        NewView(1, (ViewChange(1, (), (), 2, b""),), (), 1, b""),
    ]
    step_junk(net, rng, junk)
    for i, c in enumerate(commands(4)):
        net.propose(i % 4, c)
    assert net.run_until_committed(4, timeout_s=5)


def test_an_authenticator_out_of_order_or_with_repeated_ids_is_judged_as_a_whole() -> None:
    # A replica finds its own MAC by bisection in a sorted authenticator; one
    # that is not sorted, or names it twice, is read as a mapping (the last
    # entry for an id counts), as before.
    net = Net(4, seed=47, config=MACS)
    core = net.cores[NodeId(1)]
    prepare = Prepare(0, 1, b"d" * 32, 2, b"")
    data = prepare.authenticated_bytes()
    genuine = dict(SessionKeyAuthenticator(NodeId(2), net.replicas).macs(data, [NodeId(0), NodeId(1), NodeId(3)]))
    good = genuine[1]
    bad = bytes(32)
    cases = [
        (((3, genuine[3]), (0, genuine[0]), (1, good)), True),  # unsorted, ours last
        (((1, bad), (1, good), (3, genuine[3])), True),  # repeated: the last one counts
        (((0, genuine[0]), (1, good), (1, bad)), False),
        (((0, genuine[0]), (1, bad), (3, genuine[3])), False),
        (((0, genuine[0]), (3, genuine[3])), False),  # none for us
    ]
    for macs, accepted in cases:
        assert core._authentic(NodeId(2), data, macs) is accepted, macs
