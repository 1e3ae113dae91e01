"""Bad input at a running node (issue 12's acceptance): forged or malformed
evidence, a removal proposal for an unknown node, a transaction naming a
nonexistent shard, an oversize transaction. Each is refused with a reason
and counted, and the node keeps serving: a valid transaction is applied
afterwards. ``test_hrb_core_state`` and ``test_hrb_eviction`` check the
same refusals in the core's state machine alone; here they arrive through
a shard member's ``propose``/``step`` and a core member's network input."""

from __future__ import annotations

import msgspec
from hrb_core_net import CoreNetwork
from tests.unit.hrb.shard_net import ShardNet, client_txn, two_shard_keys, txn

from quorate.core.evidence import Evidence, sign_statement
from quorate.core.protocol import Refused
from quorate.crypto.ed25519 import Ed25519Signer
from quorate.hrb.core.config import CoreRules
from quorate.hrb.messages import (
    CORE_GROUP_BASE,
    RemovalProposal,
    SignedMessageEvidence,
    Transaction,
    TxnOp,
    TxnRequest,
    removal_bytes,
    txn_request_bytes,
)
from quorate.hrb.shard.chain import statement_kind
from quorate.hrb.shard.messages import EvidenceNotice
from quorate.ids import NodeId

MAX_TXN_BYTES = 2048


def _three_shard_map(key: str) -> int:
    """Keys starting with ``z`` name shard 3, which a two-shard deployment lacks."""
    return 3 if key.startswith("z") else two_shard_keys(key)


def _applied_everywhere(net: ShardNet, t: Transaction) -> bool:
    return all(r.store.get(t.ops[0].key) == t.ops[0].value for r in net.honest())


# ------------------------------------------------------------ a shard member
def test_a_shard_member_refuses_bad_transactions_with_a_reason_counts_them_and_keeps_serving() -> None:
    net = ShardNet((1, 2, 3, 4), quorum="byzantine", key_shard=_three_shard_map, max_txn_bytes=MAX_TXN_BYTES)
    net.elect(1)
    cases = {
        "exceeds max_txn_bytes": client_txn(txn("big", TxnOp("a-big", "put", value="x" * MAX_TXN_BYTES))),
        "maps to no shard of 1..2": client_txn(txn("nowhere", TxnOp("a1", "put", value="1"), TxnOp("z1", "put", value="1"))),
        "home shard is 9": client_txn(txn("home9", TxnOp("a2", "put", value="1"), home=9)),
        "unknown action 'explode'": client_txn(txn("boom", TxnOp("a3", "explode"))),
        "not a shard transaction": b"\x93garbage",
    }
    for member in (1, 3):  # the leader and a follower (which would forward)
        replica = net.replica(member)
        before = replica.metrics.get("refused_proposals", 0)
        for reason, command in cases.items():
            outcome = net.propose(member, command)
            assert isinstance(outcome, Refused) and reason in outcome.reason, (member, reason, outcome)
        assert replica.metrics.get("refused_proposals", 0) - before == len(cases)
    net.deliver()
    assert not any(m for _, _, m in net.sent if type(m).__name__ == "ForwardedRequest")  # nothing bad was forwarded
    ok = txn("ok", TxnOp("a-ok", "put", value="fine"))
    net.submit(3, ok)
    net.advance(2.0)
    assert _applied_everywhere(net, ok)
    assert net.replica(1).is_leader


def test_forged_or_malformed_evidence_among_shard_members_is_refused_counted_and_convicts_nobody() -> None:
    net = ShardNet((1, 2, 3, 4), quorum="byzantine")
    net.elect(1)
    liar = net.members[3]
    forger = Ed25519Signer(liar, net.keys[liar].signing_key)
    kind = statement_kind(1, "append")
    # a statement the liar signed, presented as the leader's
    first = sign_statement(forger, kind, 1, 1, b"a")
    second = sign_statement(forger, kind, 1, 1, b"b")
    forged = Evidence(msgspec.structs.replace(first, signer=1), msgspec.structs.replace(second, signer=1))
    # two statements of the leader's for different slots prove nothing
    leader = Ed25519Signer(NodeId(1), net.keys[NodeId(1)].signing_key)
    other_slots = Evidence(sign_statement(leader, kind, 1, 1, b"a"), sign_statement(leader, kind, 1, 2, b"b"))
    garbage = SignedMessageEvidence("forged_commit", 1, 1, b"\x93not a message")
    stranger = SignedMessageEvidence("equivocation", 999, 1, b"")
    notices = [forged, other_slots, garbage, stranger]
    for evidence in notices:
        for member in (1, 2, 3):
            net.step(liar, member, EvidenceNotice(evidence))
    for member in (1, 2, 3):
        replica = net.replica(member)
        assert replica.metrics.get("false_accusations", 0) == len(notices)
        assert not replica.convicted
    refusals = net.rejections("evidence does not verify")
    assert len(refusals) == 3 * len(notices)
    ok = txn("still", TxnOp("a-still", "put", value="served"))
    net.submit(2, ok)
    net.advance(2.0)
    assert _applied_everywhere(net, ok)
    assert all(r.raft.leader_id == 1 for r in net.honest())


# ------------------------------------------------------------ a core member
def test_a_core_member_refuses_bad_requests_and_accusations_counts_them_and_keeps_deciding() -> None:
    rules = CoreRules(core_size=4, epoch_length=10**9, txn_timeout_s=2.0, tick_interval_s=0.1, max_txn_bytes=MAX_TXN_BYTES)
    net = CoreNetwork(12, seed=7, rules=rules)
    shard1 = net.shards[1]
    keys = net.keys_for(1, 1, "a") + net.keys_for(2, 1, "b")
    # a transaction naming a nonexistent shard (9 of 3), as its home and as its sender's shard
    nowhere = Transaction(net.transaction("nowhere", 1, keys).txn_id, 1, 99, 9, net.transaction("x", 1, keys).ops)
    net.to_core(shard1.leader, shard1.request(nowhere))
    signed = net.keyring.signer(NodeId(shard1.leader)).sign(txn_request_bytes(9, shard1.leader, shard1.term, nowhere))
    net.to_core(shard1.leader, TxnRequest(9, shard1.leader, shard1.term, nowhere, signed))
    big = net.transaction("big", 1, keys)
    big = Transaction(big.txn_id, 1, 98, 1, (TxnOp(keys[0], "put", "x" * MAX_TXN_BYTES), TxnOp(keys[1], "put", "y")))
    net.to_core(shard1.leader, shard1.request(big))
    # a signed removal proposal for a node that does not exist, and forged evidence
    accuser = shard1.members[1]
    forger = net.keyring.signer(NodeId(accuser))
    unknown = Evidence(sign_statement(forger, "shard.append", 5, 1, b"a"), sign_statement(forger, "shard.append", 5, 1, b"b"))
    unknown = Evidence(msgspec.structs.replace(unknown.first, signer=999), msgspec.structs.replace(unknown.second, signer=999))
    victim = shard1.members[2]
    fake = Evidence(
        msgspec.structs.replace(unknown.first, signer=victim), msgspec.structs.replace(unknown.second, signer=victim)
    )
    for evidence in (unknown, fake):
        net.to_core(accuser, RemovalProposal(accuser, evidence, forger.sign(removal_bytes(accuser, evidence))))
    net.run_for(2.0)
    core_rejections = [r.reason for _, group, r in net.rejections if group == CORE_GROUP_BASE]
    assert any("unknown shard 9" in reason for reason in core_rejections), core_rejections
    assert any("home shard 9 is not the requesting shard 1" in reason for reason in core_rejections)
    assert any("oversize transaction" in reason for reason in core_rejections), core_rejections
    for state in net.honest_states(0):
        # unverifiable accusations are ordered, refused there and counted against the accuser
        assert state.s.refusals.get("unknown node", 0) == 1
        assert state.s.refusals.get("equivocation evidence does not verify", 0) == 1
        assert state.s.facts[accuser].failed_accusations == 2
        assert victim not in state.evicted and 999 not in state.evicted
    # the core keeps deciding
    ok = net.transaction("ok", 1, keys)
    net.submit(ok)
    net.run_for(3.0)
    assert net.check_atomicity([ok]) == {ok.txn_id: True}
    net.check_agreement(0)
