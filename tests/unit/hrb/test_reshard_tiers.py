"""Splits, merges and agent moves through both tiers (``quorate.hrb.reshard``,
registered in ``CoreState``, applied by ``ShardStore`` with a
``ShardHandoff``): the core orders the change, the source freezes and waits
for its locks, f + 1 members report the state, the commit installs it at the
target; bad requests are refused, counted, and change nothing."""

from __future__ import annotations

from typing import Any

from tests.unit.hrb.hrb_state_kit import KEYRING, Kit, decided, refused, txn_id
from tests.unit.hrb.shard_net import StubCore

from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.hrb.core.commands import encode_command as encode_core
from quorate.hrb.core.snapshot import DynamicCoreSnapshot, decode_snapshot, encode_snapshot
from quorate.hrb.core.state import CoreState
from quorate.hrb.messages import (
    CoreCertificate,
    MappedTxnBegin,
    Transaction,
    TxnDecision,
    TxnOp,
)
from quorate.hrb.reshard import (
    HandoffReport,
    MergeShards,
    MoveAgents,
    ReshardAbort,
    ReshardBegin,
    ReshardCommit,
    ReshardRequest,
    ReshardState,
    ShardHandoff,
    ShardMap,
    SplitShard,
    agent_key,
    handoff_bytes,
    reshard_request_bytes,
)
from quorate.hrb.shard.binding import bls_group_check
from quorate.hrb.shard.state import (
    CertifiedDecision,
    EntryRules,
    IntraTxn,
    PrepareRecord,
    ShardStore,
    TxnOutcome,
    encode_command,
)
from quorate.ids import NodeId
from quorate.sharding import AgentMove, HashRing

X, Y = agent_key("x", "acct0"), agent_key("y", "acct0")


class Tiers:
    """A dynamic core state and one store per shard; decisions certified by a stub core."""

    def __init__(self) -> None:
        self.kit = Kit()  # 12 nodes, 3 shards of 4, core of 4
        self.map = ShardMap(0, HashRing.initial([1, 2], 8), (("x", 1), ("y", 2)))
        snapshot = self.kit.genesis.snapshot
        fields = {f: getattr(snapshot, f) for f in snapshot.__struct_fields__}
        dynamic = DynamicCoreSnapshot(**fields, reshard=ReshardState(self.map, 5))
        self.core = CoreState(decode_snapshot(encode_snapshot(dynamic)), verifier=KEYRING.verifier(NodeId(0)))
        self.stub = StubCore()
        self.stores = {k: self._store(k) for k in (1, 2, 3)}
        self.stores[1].data[X] = "10"
        self.stores[2].data[Y] = "10"
        self.certificates: list[tuple[tuple[int, ...], CoreCertificate]] = []

    def _store(self, shard: int) -> ShardStore:
        handoff = ShardHandoff(shard, self.map)
        rules = EntryRules(shard, 3, handoff, dynamic=True)
        return ShardStore(rules, bls_group_check, self.stub.genesis, handoff=handoff)

    def core_apply(self, command: bytes) -> list[Any]:
        effects = self.core.apply(command)
        for d in decided(effects):
            cert = CoreCertificate(self.stub.epoch, d.index, d.encoded, self.stub.sign(self.stub.epoch, d.index, d.encoded))
            self.certificates.append((d.shards, cert))
        return effects

    def deliver(self, shard: int, certificate: CoreCertificate) -> list[Any]:
        store = self.stores[shard]
        if store.knows_decision(certificate):
            return []
        return self.append(shard, encode_command(CertifiedDecision(certificate)))

    def deliver_all(self, shards: tuple[int, ...] = (1, 2, 3)) -> list[Any]:
        out = []
        for to, cert in self.certificates:
            for shard in to:
                if shard in shards:
                    out += self.deliver(shard, cert)
        return out

    def append(self, shard: int, data: bytes) -> list[Any]:
        store = self.stores[shard]
        return store.apply(Entry(1, store.applied_index + 1, ENTRY_NORMAL, data))

    def request(self, change: object, version: int, proposer: int | None = None) -> bytes:
        proposer = self.core.members[0] if proposer is None else proposer
        unsigned = ReshardRequest(proposer, version, change, b"")  # type: ignore[arg-type]
        signature = KEYRING.signer(NodeId(proposer)).sign(reshard_request_bytes(unsigned))
        return encode_core(ReshardRequest(proposer, version, change, signature))  # type: ignore[arg-type]

    def report(self, shard: int, member: int) -> bytes:
        (route, (seq, version, state)), = self.stores[shard].handoff.ready.items()
        unsigned = HandoffReport(seq, version, member, route[0], route[1], state, b"")
        return encode_core(
            HandoffReport(seq, version, member, route[0], route[1], state, KEYRING.signer(NodeId(member)).sign(handoff_bytes(unsigned)))
        )

    def hand_off(self, shard: int) -> list[Any]:
        effects = []
        for member in self.kit.shards[shard][:2]:  # f + 1 of four
            effects += self.core_apply(self.report(shard, member))
        return effects

    def transfer(self, tag: str, home: int, src: str, dst: str, amount: int) -> Transaction:
        ops = (TxnOp(src, "add", delta=-amount, minimum=0), TxnOp(dst, "add", delta=amount))
        return Transaction(txn_id(tag), 0, 0, home, ops)

    def total(self) -> int:
        seen: dict[str, str] = {}
        for shard, store in self.stores.items():
            for key, value in store.data.items():
                if store.handoff.map.owner(key) == shard:
                    assert key not in seen, f"{key} is held by two shards"
                    seen[key] = value
        return sum(int(v) for v in seen.values())


def _votes(tiers: Tiers, effects: list[Any], shard: int) -> None:
    for e in effects:
        if isinstance(e, PrepareRecord):
            tiers.core_apply(tiers.kit.vote(e.txn_id, shard, e.vote, reason=e.reason or None))


def test_an_agent_moves_while_a_transaction_holds_its_key_and_nothing_is_lost() -> None:
    t = Tiers()
    txn = t.transfer("t1", 1, X, Y, 3)
    [begin] = decided(t.core_apply(t.kit.request(txn)))
    assert isinstance(begin.decision, MappedTxnBegin) and begin.decision.map_version == 0
    _votes(t, t.deliver(1, t.certificates[0][1]), 1)
    _votes(t, t.deliver(2, t.certificates[0][1]), 2)
    assert isinstance(t.certificates[-1][1], CoreCertificate)
    commit_txn = t.certificates[-1]
    t.deliver(2, commit_txn[1])  # shard 1 has not heard of the commit yet: it still holds the lock
    effects = t.core_apply(t.request(MoveAgents((AgentMove("x", 1, 3),)), 0))
    [d] = decided(effects)
    assert isinstance(d.decision, ReshardBegin) and d.shards == (1, 2, 3)
    begin_cert = t.certificates[-1][1]
    for shard in (1, 2, 3):
        t.deliver(shard, begin_cert)
    store = t.stores[1]
    assert not store.handoff.ready, "the source hands off only once no lock holds a moving key"
    # Writes to the moving key are refused at the source, and the target does not own it yet.
    [out] = t.append(1, encode_command(IntraTxn(Transaction(txn_id("w"), 5, 1, 1, (TxnOp(X, "put", "99"),)))))
    assert isinstance(out, TxnOutcome) and not out.committed and out.reason.startswith("moving")
    [out] = t.append(3, encode_command(IntraTxn(Transaction(txn_id("w3"), 6, 1, 3, (TxnOp(X, "put", "99"),)))))
    assert not out.committed and out.reason.startswith("wrong shard")
    # A transaction on the moving key is not begun by the core meanwhile.
    [r] = refused(t.core_apply(t.kit.request(t.transfer("t2", 2, Y, X, 1))))
    assert r.reason.startswith("busy: key")
    t.deliver(1, commit_txn[1])  # the decision releases the lock: the state is taken after its write
    assert store.data[X] == "7" and store.handoff.ready
    effects = t.hand_off(1)
    [c] = decided(effects)
    assert isinstance(c.decision, ReshardCommit) and c.decision.version == 1
    t.deliver_all()
    assert X not in t.stores[1].data and t.stores[3].data[X] == "7"
    assert all(s.handoff.map.version == 1 for s in t.stores.values())
    assert t.total() == 20
    # The key is served by its new shard from now on.
    [out] = t.append(3, encode_command(IntraTxn(Transaction(txn_id("w4"), 6, 2, 3, (TxnOp(X, "add", delta=1),)))))
    assert out.committed and t.stores[3].data[X] == "8"
    assert not t.core.reshard.pending and t.core.reshard.current.home("x") == 3  # type: ignore[union-attr]
    t.core.check()


def test_the_begin_aborts_open_transactions_on_moving_keys() -> None:
    t = Tiers()
    txn = t.transfer("t1", 1, X, Y, 3)
    t.core_apply(t.kit.request(txn))
    effects = t.core_apply(t.request(MoveAgents((AgentMove("x", 1, 3),)), 0))
    abort, begin = (d.decision for d in decided(effects))
    assert isinstance(abort, TxnDecision) and not abort.commit and "moves between shards" in abort.reason
    assert isinstance(begin, ReshardBegin)
    # The late begin of the aborted transaction prepares nothing anywhere.
    t.deliver_all()
    assert not t.stores[1].locks and not t.stores[2].locks
    assert t.stores[1].handoff.ready


def test_a_shard_on_another_map_votes_no() -> None:
    t = Tiers()
    txn = t.transfer("t1", 1, X, Y, 3)
    t.core_apply(t.kit.request(txn))
    begin_cert = t.certificates[0][1]
    t.stores[2].handoff.map = ShardMap(7, t.map.ring, t.map.homes)
    [record] = [e for e in t.deliver(2, begin_cert) if isinstance(e, PrepareRecord)]
    assert not record.vote and record.reason.startswith("map version")


def test_certificates_out_of_order_a_commit_before_its_begin_and_a_begin_held_for_its_map() -> None:
    t = Tiers()
    t.core_apply(t.request(SplitShard(1, 3), 0))
    begin1 = t.certificates[-1][1]
    t.deliver(1, begin1)
    t.hand_off(1)
    commit1 = t.certificates[-1][1]
    t.core_apply(t.request(MergeShards(3, 2), 1))
    begin2 = t.certificates[-1][1]
    store3 = t.stores[3]
    t.deliver(3, begin2)  # map 2's begin before map 1's commit: held
    assert store3.handoff.map.version == 0 and store3.handoff.held
    t.deliver(3, commit1)  # the commit alone moves shard 3 to map 1, then the held begin applies
    assert store3.handoff.map.version == 1 and store3.handoff.begin is not None
    assert store3.handoff.ready  # shard 3 is the source of the merge: nothing locked, state taken
    t.deliver(3, begin1)  # a begin of a settled change changes nothing
    assert store3.handoff.map.version == 1
    t.hand_off(3)
    t.deliver_all()
    assert {s.handoff.map.version for s in t.stores.values()} == {2}
    assert t.total() == 20
    assert t.core.reshard.current.shards() == (1, 2)  # type: ignore[union-attr]


def test_a_missing_hand_off_aborts_on_the_log_clock_and_the_source_thaws() -> None:
    t = Tiers()
    t.core_apply(t.request(MoveAgents((AgentMove("x", 1, 3),)), 0))
    t.deliver_all()
    assert t.stores[1].handoff.leaving(X) == 3
    aborted = []
    for count in range(1, 8):
        for member in t.core.members[:3]:
            aborted += [d.decision for d in decided(t.core_apply(t.kit.tick(member, count)))]
    assert [type(a) for a in aborted] == [ReshardAbort]
    t.deliver_all()
    store = t.stores[1]
    assert store.handoff.map.version == 0 and store.handoff.leaving(X) is None and not store.handoff.ready
    [out] = t.append(1, encode_command(IntraTxn(Transaction(txn_id("w"), 5, 1, 1, (TxnOp(X, "put", "11"),)))))
    assert out.committed


def test_bad_reshard_requests_are_refused_counted_and_change_nothing() -> None:
    t = Tiers()
    before = t.core.digest()
    [r] = refused(t.core_apply(t.request(SplitShard(1, 9), 0)))
    assert r.reason == "reshard refused: unknown shard: 9 is not a shard of the deployment"
    assert t.core.s.refusals[r.reason] == 1 and t.core.reshard.refused == {"unknown shard": 1}  # type: ignore[union-attr]
    assert t.core.reshard.current == t.map and t.core.reshard.pending is None  # type: ignore[union-attr]
    assert not decided(t.core.apply(t.request(SplitShard(1, 9), 0)))
    # Only a current core member may propose, with its own signature.
    outsider = next(n for n in t.kit.shards[3] if n not in t.core.members)
    [r] = refused(t.core_apply(t.request(SplitShard(1, 3), 0, proposer=outsider)))
    assert "not a member of this epoch's core" in r.reason
    forged = ReshardRequest(t.core.members[0], 0, SplitShard(1, 3), b"\x00" * 64)
    [r] = refused(t.core_apply(encode_core(forged)))
    assert r.reason == "bad signature"
    assert t.core.precheck(forged) is not None
    assert before != t.core.digest()  # refusals are counted ...
    assert t.core.reshard.state.seq == 0  # type: ignore[union-attr]  # ... and nothing else changed


def test_without_dynamic_sharding_the_core_refuses_reshard_commands() -> None:
    kit = Kit()
    state = kit.state()
    proposer = state.members[0]
    unsigned = ReshardRequest(proposer, 0, SplitShard(1, 3), b"")
    request = ReshardRequest(proposer, 0, SplitShard(1, 3), KEYRING.signer(NodeId(proposer)).sign(reshard_request_bytes(unsigned)))
    [r] = refused(state.apply(encode_core(request)))
    assert r.reason == "dynamic sharding is off in this deployment"
    assert state.reshard is None


def test_the_map_survives_an_epoch_change_snapshot() -> None:
    t = Tiers()
    t.core_apply(t.request(MoveAgents((AgentMove("x", 1, 3),)), 0))
    data = encode_snapshot(t.core.s)
    again = decode_snapshot(data)
    assert isinstance(again, DynamicCoreSnapshot) and again.reshard is not None
    assert again.reshard.pending is not None and encode_snapshot(again) == data
    # A snapshot without dynamic sharding encodes as before.
    plain = Kit().genesis.snapshot
    assert type(decode_snapshot(encode_snapshot(plain))) is type(plain)


def test_a_read_of_a_key_the_home_shard_no_longer_owns_goes_back_to_the_client() -> None:
    # The home shard answers a transaction with its own reads, so it cannot forward one
    # that reads another shard's key (a client on an older map): it is refused, not lost.
    from quorate.hrb.shard.state import TxnRequested

    t = Tiers()
    read = Transaction(txn_id("r"), 5, 1, 1, (TxnOp(Y, "get"),))
    [out] = t.append(1, encode_command(TxnRequested(read)))
    assert isinstance(out, TxnOutcome) and not out.committed and out.reason.startswith("wrong shard: key '@y/acct0'")
    assert read.txn_id not in t.stores[1].requested
    write = Transaction(txn_id("w"), 5, 2, 1, (TxnOp(X, "add", delta=1), TxnOp(Y, "add", delta=1)))
    assert [type(e).__name__ for e in t.append(1, encode_command(TxnRequested(write)))] == ["CrossShardRequest"]


def test_a_begin_that_replaces_an_abandoned_one_takes_its_own_state() -> None:
    # The core aborted change 1 and began change 2 on the same route; shard 1 sees
    # change 2's begin before change 1's abort.
    t = Tiers()
    t.core_apply(t.request(MoveAgents((AgentMove("x", 1, 3),)), 0))
    t.deliver(1, t.certificates[-1][1])
    assert [v[0] for v in t.stores[1].handoff.ready.values()] == [1]
    for count in range(1, 8):
        for member in t.core.members[:3]:
            t.core_apply(t.kit.tick(member, count))
    abort = t.certificates[-1][1]
    t.core_apply(t.request(MoveAgents((AgentMove("x", 1, 3),)), 0))
    t.deliver(1, t.certificates[-1][1])
    assert [v[0] for v in t.stores[1].handoff.ready.values()] == [2]
    t.deliver(1, abort)  # the late abort of change 1 changes nothing
    assert t.stores[1].handoff.begin is not None and t.stores[1].handoff.begin.seq == 2
    t.hand_off(1)
    t.deliver_all()
    assert t.stores[3].data[X] == "10" and X not in t.stores[1].data and t.total() == 20
