"""The core state machine (docs/hrb.md sections 3 and 4): transactions and
their validation, shard votes and their proofs, the log clock and timeouts,
bad input refused with a reason and counted, and two-phase commit at the
core under any interleaving (hypothesis)."""

from __future__ import annotations

import msgspec
from hrb_state_kit import KEYRING, Kit, decided, refused, txn_id
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.hrb.core.commands import Tick, encode_command, tick_bytes
from quorate.hrb.core.config import CoreRules
from quorate.hrb.core.snapshot import decode_snapshot, encode_snapshot
from quorate.hrb.core.state import CoreState
from quorate.hrb.messages import (
    Transaction,
    TxnBegin,
    TxnDecision,
    TxnOp,
    TxnRequest,
    txn_request_bytes,
)
from quorate.hrb.txn import involved_shards
from quorate.ids import NodeId


def test_a_request_begins_a_transaction_in_the_shards_that_own_its_keys() -> None:
    kit = Kit()
    state = kit.state()
    keys = kit.keys(1, 1) + kit.keys(3, 2)
    txn = kit.txn("t", 1, keys)
    effects = state.apply(kit.request(txn))
    [begin] = decided(effects)
    assert begin.index == 1
    assert isinstance(begin.decision, TxnBegin)
    assert begin.decision.shards == (1, 3) == involved_shards(txn, 3)
    assert begin.shards == (1, 3)
    assert state.s.facts[kit.leader(1)].requests == 1


def test_votes_decide_once_commit_only_with_every_yes() -> None:
    kit = Kit()
    state = kit.state()
    txn = kit.txn("t", 1, kit.keys(1) + kit.keys(2))
    state.apply(kit.request(txn))
    assert decided(state.apply(kit.vote(txn.txn_id, 1, True))) == []
    [d] = decided(state.apply(kit.vote(txn.txn_id, 2, True)))
    assert d.decision == TxnDecision(txn.txn_id, True, "")
    assert d.shards == (1, 2)
    # late and duplicate votes change nothing and blame nobody
    [r] = refused(state.apply(kit.vote(txn.txn_id, 2, False)))
    assert r.reason == "transaction already decided"
    assert state.s.facts[kit.leader(2)].invalid == 0

    other = kit.txn("u", 2, kit.keys(2) + kit.keys(3))
    state.apply(kit.request(other))
    [d] = decided(state.apply(kit.vote(other.txn_id, 3, False)))
    assert d.decision.commit is False
    assert "shard 3 voted no: insufficient balance" in d.decision.reason
    assert d.shards == (2, 3)


def test_duplicate_and_conflicting_votes() -> None:
    kit = Kit()
    state = kit.state()
    txn = kit.txn("t", 1, kit.keys(1) + kit.keys(2))
    state.apply(kit.request(txn))
    state.apply(kit.vote(txn.txn_id, 1, True))
    [dup] = refused(state.apply(kit.vote(txn.txn_id, 1, True)))
    assert dup.reason == "duplicate vote"
    [conflict] = refused(state.apply(kit.vote(txn.txn_id, 1, False)))
    assert conflict.reason == "vote contradicts the shard's earlier vote"
    assert state.s.facts[kit.leader(1)].invalid == 1
    [uninvolved] = refused(state.apply(kit.vote(txn.txn_id, 3, True)))
    assert uninvolved.reason == "shard not involved in the transaction"
    [unknown] = refused(state.apply(kit.vote(txn_id("never"), 1, True)))
    assert unknown.reason == "unknown transaction"


def test_byzantine_mode_needs_two_f_plus_one_member_acks() -> None:
    kit = Kit(rules=CoreRules(core_size=4, shard_quorum="byzantine", epoch_length=10**9))
    state = kit.state()
    txn = kit.txn("t", 1, kit.keys(1) + kit.keys(2))
    state.apply(kit.request(txn))
    members = kit.shards[1]  # 4 members: f = 1, 3 acks needed
    [r] = refused(state.apply(kit.vote(txn.txn_id, 1, True, ackers=members[:2])))
    assert r.reason == "vote proof has 2 valid member acks, 3 needed"
    outsiders = kit.shards[3][:3]
    [r] = refused(state.apply(kit.vote(txn.txn_id, 1, True, ackers=outsiders)))
    assert r.reason == "vote proof has 0 valid member acks, 3 needed"
    assert decided(state.apply(kit.vote(txn.txn_id, 1, True, ackers=members[:3]))) == []
    assert all(state.s.facts[m].acks == 1 for m in members[:3])


def test_bad_input_is_refused_with_a_reason_and_counted() -> None:
    kit = Kit(rules=CoreRules(core_size=4, max_txn_bytes=512, max_txn_ops=4, epoch_length=10**9))
    state = kit.state()
    leader = kit.leader(1)
    cases = {
        "unknown shard 9": kit.request(kit.txn("a", 9, kit.keys(1)), shard=9, leader=leader),
        "home shard 2 is not the requesting shard 1": kit.request(kit.txn("b", 2, kit.keys(1)), shard=1, leader=leader),
        "oversize transaction": kit.request(kit.txn("c", 1, kit.keys(1), value="x" * 600)),
        "too many operations: 5 > 4": kit.request(kit.txn("d", 1, kit.keys(1, 5))),
        f"node {kit.leader(2)} is not a member of shard 1": kit.request(kit.txn("e", 1, kit.keys(1)), leader=kit.leader(2)),
        "a transaction has no operation": kit.request(kit.txn("f", 1, [])),
    }
    for reason, command in cases.items():
        [r] = refused(state.apply(command))
        assert r.reason.startswith(reason), (reason, r.reason)
        assert r.blamed is not None
    bad_action = Transaction(txn_id("g"), 1, 1, 1, (TxnOp(kit.keys(1)[0], "explode"),))
    [r] = refused(state.apply(kit.request(bad_action)))
    assert r.reason == "unknown action 'explode'"
    # an unsigned (forged) request cannot be pinned on anyone
    txn = kit.txn("h", 1, kit.keys(1))
    forged = TxnRequest(1, leader, 1, txn, b"\0" * 64)
    [r] = refused(state.apply(encode_command(forged)))
    assert (r.reason, r.blamed) == ("bad signature", None)
    [r] = refused(state.apply(b"\x93not a command"))
    assert r.reason == "malformed command"
    assert sum(state.s.refusals.values()) == len(cases) + 3
    assert state.s.facts[leader].invalid == 6  # the signed, invalid requests of shard 1's leader
    assert state.s.facts[kit.leader(2)].invalid == 1
    assert state.s.decisions == 0
    # the core keeps serving
    assert decided(state.apply(kit.request(kit.txn("ok", 1, kit.keys(1) + kit.keys(2)))))


def test_majority_mode_knows_the_leader_by_its_term() -> None:
    kit = Kit()
    state = kit.state()
    a, b = kit.shards[1][0], kit.shards[1][1]
    assert decided(state.apply(kit.request(kit.txn("1", 1, kit.keys(1)), leader=a, term=3)))
    [r] = refused(state.apply(kit.request(kit.txn("2", 1, kit.keys(1)), leader=b, term=3)))
    assert r.reason == f"node {a} leads term 3"
    [r] = refused(state.apply(kit.request(kit.txn("3", 1, kit.keys(1)), leader=a, term=2)))
    assert r.reason == "stale leader: term 2 < 3"
    assert decided(state.apply(kit.request(kit.txn("4", 1, kit.keys(1)), leader=b, term=4)))
    [r] = refused(state.apply(kit.request(kit.txn("5", 1, kit.keys(1)), leader=a, term=3)))
    assert r.reason == "stale leader: term 3 < 4"
    assert (state.s.shards[1].term, state.s.shards[1].leader) == (4, b)


def test_byzantine_mode_does_not_let_an_unproven_claim_lock_the_leader_out() -> None:
    kit = Kit(rules=CoreRules(core_size=4, shard_quorum="byzantine", epoch_length=10**9))
    state = kit.state()
    liar, leader = kit.shards[1][1], kit.shards[1][0]
    assert decided(state.apply(kit.request(kit.txn("1", 1, kit.keys(1)), leader=liar, term=10**6)))
    assert decided(state.apply(kit.request(kit.txn("2", 1, kit.keys(1)), leader=leader, term=2)))


def test_the_log_clock_needs_f_plus_one_members_and_times_transactions_out() -> None:
    kit = Kit()  # tick 1 s, timeout 3 s = 3 ticks; core of 4: f = 1
    state = kit.state()
    members = state.members
    txn = kit.txn("t", 1, kit.keys(1) + kit.keys(2))
    state.apply(kit.request(txn))
    state.apply(kit.vote(txn.txn_id, 1, True))
    # one (possibly Byzantine) member racing ahead does not move the clock
    assert decided(state.apply(kit.tick(members[0], 100))) == []
    assert state.s.clock == 0
    # a forged tick is refused
    signature = KEYRING.signer(NodeId(members[1])).sign(tick_bytes(0, members[1], 4))
    [r] = refused(state.apply(encode_command(Tick(0, members[1], 5, signature))))
    assert r.reason == "bad signature"
    [r] = refused(state.apply(kit.tick(kit.shards[1][0] if kit.shards[1][0] not in members else 99, 5)))
    assert r.reason == "tick from outside this epoch's core"
    state.apply(kit.tick(members[1], 2))
    assert state.s.clock == 2
    [d] = decided(state.apply(kit.tick(members[2], 3)))
    assert state.s.clock == 3
    assert d.decision == TxnDecision(txn.txn_id, False, "timeout: no vote from shard(s) [2]")
    assert not state.needs_clock()


def test_a_restored_snapshot_continues_exactly() -> None:
    kit = Kit()
    first = kit.state()
    txn = kit.txn("t", 1, kit.keys(1) + kit.keys(2))
    commands = [kit.request(txn), kit.vote(txn.txn_id, 1, True), kit.vote(txn.txn_id, 2, True)]
    first.apply(commands[0])
    restored = CoreState(decode_snapshot(encode_snapshot(first.s)), verifier=KEYRING.verifier(NodeId(0)))
    assert restored.digest() == first.digest()
    for command in commands[1:]:
        assert first.apply(command) == restored.apply(command)
    assert restored.digest() == first.digest()


# -- two-phase commit at the core, any interleaving ------------------------------------------

TXNS = 4


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[str, int, int, bool]]:
    """Operations: ("vote", txn, shard, yes), ("tick", member, count, _),
    ("restart", ...): in any order, with duplicates and contradictions."""
    ops: list[tuple[str, int, int, bool]] = []
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(("vote", "vote", "vote", "tick", "restart")))
        if kind == "vote":
            ops.append(("vote", draw(st.integers(0, TXNS - 1)), draw(st.integers(1, 3)), draw(st.booleans())))
        elif kind == "tick":
            ops.append(("tick", draw(st.integers(0, 3)), draw(st.integers(1, 12)), False))
        else:
            ops.append(("restart", 0, 0, False))
    return ops


@given(schedules(), st.lists(st.sampled_from(((1, 2), (1, 3), (2, 3), (1, 2, 3))), min_size=TXNS, max_size=TXNS))
@settings(max_examples=300, deadline=None)
def test_two_phase_commit_at_the_core_under_any_interleaving(
    schedule: list[tuple[str, int, int, bool]], shard_sets: list[tuple[int, ...]]
) -> None:
    kit = Kit()
    state = kit.state()
    txns = []
    for i, shards in enumerate(shard_sets):
        keys = [k for s in shards for k in kit.keys(s, 1, prefix=f"t{i}-")]
        txns.append(kit.txn(f"t{i}", shards[0], keys))
        state.apply(kit.request(txns[-1]))
    first_vote: dict[tuple[int, int], bool] = {}
    decisions: dict[bytes, list[TxnDecision]] = {}

    indexes = [d for d in range(1, len(txns) + 1)]

    def note(effects: list[object]) -> None:
        for d in decided(effects):
            assert isinstance(d.decision, TxnDecision)
            decisions.setdefault(d.decision.txn_id, []).append(d.decision)
            indexes.append(d.index)

    for kind, a, b, yes in schedule:
        if kind == "vote":
            txn = txns[a]
            if b in involved_shards(txn, 3) and txn.txn_id not in decisions:
                first_vote.setdefault((a, b), yes)
            note(state.apply(kit.vote(txn.txn_id, b, yes)))
        elif kind == "tick":
            note(state.apply(kit.tick(state.members[a], b)))
        else:
            state = CoreState(decode_snapshot(encode_snapshot(state.s)), verifier=KEYRING.verifier(NodeId(0)))
        state.check()
    # liveness: enough log time decides everything that is left
    for member in state.members:
        note(state.apply(kit.tick(member, 1000)))
    assert indexes == list(range(1, len(indexes) + 1)), "decision indexes are not contiguous"
    for i, txn in enumerate(txns):
        outcome = decisions.get(txn.txn_id, [])
        assert len(outcome) == 1, f"transaction {i} decided {len(outcome)} times"
        involved = involved_shards(txn, 3)
        if outcome[0].commit:
            assert all(first_vote.get((i, s)) is True for s in involved), "commit without every yes"
        else:
            said_no = any(first_vote.get((i, s)) is False for s in involved)
            missing = any((i, s) not in first_vote for s in involved)
            assert said_no or missing, "abort although every shard voted yes in time"


def test_commands_decode_strictly() -> None:
    kit = Kit()
    txn = kit.txn("t", 1, kit.keys(1))
    data = txn_request_bytes(1, 1, 1, txn)
    assert isinstance(data, bytes)
    raw = msgspec.msgpack.encode(["hrb.TxnRequest", 1, 1, 1, "not a transaction", b""])
    [r] = refused(kit.state().apply(raw))
    assert r.reason == "malformed command"
