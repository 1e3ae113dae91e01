"""Atomicity of cross-shard transactions under any delivery order and any
crash point (``docs/hrb.md`` section 4), checked with hypothesis.

The real state machines of both tiers: a ``CoreState`` (the core's log, as
every core member applies it) and one ``ShardStore`` per shard (the shard's
log, as every member applies it). Between them, a bag of messages that the
schedule delivers in any order, duplicates and loses:

- a shard's ``ShardVote`` (from its prepare record) to the core;
- the core's certified decisions (``TxnBegin``, ``TxnDecision``) to the
  shards, which order each in their log (a ``CertifiedDecision`` entry) and
  apply it: prepare (lock, evaluate, vote), then apply or drop and release.

Crash points: a shard crashes with its unsent votes lost and restarts by
replaying its log into a fresh store (its next leader then re-sends the
votes of every prepared-undecided transaction, as a new shard leader does);
the core crashes with its unsent certificates lost and restarts from its
snapshot. Recovery goes through what the protocol has: shards re-send votes,
and a shard fetches the certificates of decisions it was due
(``CertificateRequest``). The core's log clock (``Tick``) may time a
transaction out and abort it while its votes are still in flight.

After any schedule and a healing phase: every transaction was decided once,
every involved shard applied that one decision (never applied in one shard
and aborted in another), no lock or prepare record is left, no store saw a
``Violation``, and the bank's total is conserved. During the run, no two
shards ever disagree on a transaction they both decided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.hrb.hrb_state_kit import KEYRING, Kit, decided, txn_id
from tests.unit.hrb.shard_net import StubCore, _dealing

from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.crypto.threshold import ThresholdSigner
from quorate.hrb.core.snapshot import decode_snapshot, encode_snapshot
from quorate.hrb.core.state import CoreState
from quorate.hrb.messages import (
    CoreCertificate,
    Transaction,
    TxnBegin,
    TxnDecision,
    TxnOp,
    certificate_bytes,
    decode_decision,
    encode_decision,
)
from quorate.hrb.shard.binding import bls_group_check
from quorate.hrb.shard.state import (
    CertifiedDecision,
    EntryRules,
    PrepareRecord,
    ShardStore,
    Violation,
    encode_command,
)
from quorate.hrb.txn import shard_of_key
from quorate.ids import NodeId

SHARDS = 3
KEYS_PER_SHARD = 2
INITIAL_BALANCE = 10
TXNS = 5
HEALING_ROUNDS = 12
TICK_PERIODS_TO_TIME_OUT = 1000

_STUB = StubCore()
"""Certifies the core's decisions with a real threshold key (the shards check it)."""


@dataclass
class Message:
    to_core: bytes | None = None
    """An encoded core command (a shard's vote)."""
    shard: int = 0
    """For a certificate: the shard it goes to; for a vote: the shard that sent it."""
    certificate: CoreCertificate | None = None


@dataclass
class World:
    kit: Kit
    core: CoreState
    stores: dict[int, ShardStore]
    logs: dict[int, list[Entry]] = field(default_factory=dict)
    bag: list[Message] = field(default_factory=list)
    issued: dict[int, list[CoreCertificate]] = field(default_factory=dict)
    """Every certificate the core issued, by the shard it is for (what a fetch returns)."""
    decisions: dict[bytes, list[bool]] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    new_store: Callable[[int], ShardStore] | None = None


def _keys(kit: Kit) -> dict[int, list[str]]:
    return {s: kit.keys(s, KEYS_PER_SHARD, prefix="acct") for s in range(1, SHARDS + 1)}


def _world(kit: Kit) -> World:
    keys = _keys(kit)

    def new_store(shard: int) -> ShardStore:
        rules = EntryRules(shard, SHARDS, lambda key: shard_of_key(key, SHARDS))
        return ShardStore(
            rules, bls_group_check, _STUB.genesis, data={k: str(INITIAL_BALANCE) for k in keys[shard]}
        )

    stores = {s: new_store(s) for s in range(1, SHARDS + 1)}
    return World(kit, kit.state(), stores, {s: [] for s in stores}, new_store=new_store)


def _transfer(kit: Kit, i: int, src: str, dst: str, amount: int) -> Transaction:
    ops = (TxnOp(src, "add", delta=-amount, minimum=0), TxnOp(dst, "add", delta=amount))
    return Transaction(txn_id(f"x{i}"), 0, 0, shard_of_key(src, SHARDS), ops)


# ---------------------------------------------------------------- the two tiers
def _core_apply(world: World, command: bytes) -> None:
    for d in decided(world.core.apply(command)):
        if isinstance(d.decision, TxnDecision):
            world.decisions.setdefault(d.decision.txn_id, []).append(d.decision.commit)
        certificate = CoreCertificate(_STUB.epoch, d.index, d.encoded, _STUB.sign(_STUB.epoch, d.index, d.encoded))
        for shard in d.shards:
            world.issued.setdefault(shard, []).append(certificate)
            world.bag.append(Message(shard=shard, certificate=certificate))


def _vote(world: World, shard: int, record: PrepareRecord) -> None:
    vote = world.kit.vote(record.txn_id, shard, record.vote, reason=record.reason if not record.vote else None)
    world.bag.append(Message(to_core=vote, shard=shard))


def _shard_order(world: World, shard: int, certificate: CoreCertificate) -> None:
    """The shard's leader orders the certificate; every member applies it."""
    store = world.stores[shard]
    if store.knows_decision(certificate):
        return  # a leader does not order a decision its store already holds
    log = world.logs[shard]
    entry = Entry(1, len(log) + 1, ENTRY_NORMAL, encode_command(CertifiedDecision(certificate)))
    log.append(entry)
    for effect in store.apply(entry):
        if isinstance(effect, PrepareRecord) and store.prepared.get(effect.txn_id) is effect:
            _vote(world, shard, effect)
        elif isinstance(effect, Violation):
            world.violations.append(effect)
    _check_agreement(world)


def _check_agreement(world: World) -> None:
    seen: dict[bytes, bool] = {}
    for store in world.stores.values():
        for tid, commit in store.decided.items():
            assert seen.setdefault(tid, commit) == commit, "a transaction committed in one shard and aborted in another"


def _deliver(world: World, message: Message) -> None:
    if message.to_core is not None:
        _core_apply(world, message.to_core)
    else:
        assert message.certificate is not None
        _shard_order(world, message.shard, message.certificate)


def _crash_shard(world: World, shard: int) -> None:
    """Unsent votes are lost; the store is rebuilt from the log; the next
    leader re-sends the votes of what is prepared and undecided."""
    world.bag = [m for m in world.bag if not (m.to_core is not None and m.shard == shard)]
    assert world.new_store is not None
    store = world.new_store(shard)
    for entry in world.logs[shard]:
        store.apply(entry)
    world.stores[shard] = store
    _resend_votes(world, shard)


def _crash_core(world: World) -> None:
    """Unsent certificates are lost; the ordered state survives (it is replicated)."""
    world.bag = [m for m in world.bag if m.to_core is not None]
    world.core = CoreState(decode_snapshot(encode_snapshot(world.core.s)), verifier=KEYRING.verifier(NodeId(0)))


def _resend_votes(world: World, shard: int) -> None:
    for record in list(world.stores[shard].prepared.values()):
        _vote(world, shard, record)


def _fetch(world: World, shard: int) -> None:
    """``CertificateRequest``: the certificates of every decision for this shard."""
    for certificate in world.issued.get(shard, []):
        world.bag.append(Message(shard=shard, certificate=certificate))


def _tick(world: World, member_index: int, periods: int) -> None:
    member = world.core.members[member_index % len(world.core.members)]
    _core_apply(world, world.kit.tick(member, periods))


# ---------------------------------------------------------------- the property
ACTIONS = ("deliver", "deliver", "deliver", "deliver", "duplicate", "lose", "crash_shard", "crash_core", "resend", "fetch", "tick")


@st.composite
def transfers(draw: st.DrawFn) -> list[tuple[int, int, int, int, int]]:
    """(source shard, source key, destination shard, destination key, amount)."""
    out = []
    for _ in range(TXNS):
        src = draw(st.integers(1, SHARDS))
        dst = draw(st.integers(1, SHARDS).filter(lambda s, src=src: s != src))  # type: ignore[misc]
        out.append((src, draw(st.integers(0, KEYS_PER_SHARD - 1)), dst, draw(st.integers(0, KEYS_PER_SHARD - 1)),
                    draw(st.integers(1, 2 * INITIAL_BALANCE))))
    return out


schedules = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.integers(0, 10**6), st.integers(1, 8)), min_size=0, max_size=60
)


def _run(plan: list[tuple[int, int, int, int, int]], schedule: list[tuple[str, int, int]]) -> World:
    kit = Kit(nodes=12, shard_size=4)
    assert len(kit.shards) == SHARDS
    world = _world(kit)
    keys = _keys(kit)
    txns = [_transfer(kit, i, keys[a][ka], keys[b][kb], amount) for i, (a, ka, b, kb, amount) in enumerate(plan)]
    for txn in txns:
        _core_apply(world, kit.request(txn))
    for kind, pick, count in schedule:
        shard = 1 + pick % SHARDS
        if kind in ("deliver", "duplicate", "lose") and world.bag:
            index = pick % len(world.bag)
            message = world.bag[index] if kind == "duplicate" else world.bag.pop(index)
            if kind != "lose":
                _deliver(world, message)
        elif kind == "crash_shard":
            _crash_shard(world, shard)
        elif kind == "crash_core":
            _crash_core(world)
        elif kind == "resend":
            _resend_votes(world, shard)
        elif kind == "fetch":
            _fetch(world, shard)
        elif kind == "tick":
            _tick(world, pick, count)
        world.core.check()
    # Healing: no more loss; shards re-send and fetch, the log clock runs on.
    for _ in range(HEALING_ROUNDS):
        for shard in world.stores:
            _resend_votes(world, shard)
            _fetch(world, shard)
        while world.bag:
            _deliver(world, world.bag.pop(0))
        if all(txn.txn_id in world.decisions for txn in txns):
            continue
        for member_index in range(len(world.core.members)):
            _tick(world, member_index, TICK_PERIODS_TO_TIME_OUT)
    _check_outcomes(world, txns)
    return world


def _check_outcomes(world: World, txns: list[Transaction]) -> None:
    assert not world.violations, world.violations
    total = 0
    for shard, store in world.stores.items():
        assert not store.locks, f"shard {shard} still holds locks {store.locks}"
        assert not store.prepared, f"shard {shard} still has undecided prepares"
        total += sum(int(v) for v in store.data.values())
    assert total == SHARDS * KEYS_PER_SHARD * INITIAL_BALANCE, "money was created or destroyed"
    for txn in txns:
        outcome = world.decisions.get(txn.txn_id)
        assert outcome is not None and len(outcome) == 1, f"decided {outcome}"
        involved = {shard_of_key(op.key, SHARDS) for op in txn.ops}
        for shard in involved:
            assert world.stores[shard].decided.get(txn.txn_id) == outcome[0], (
                f"shard {shard} applied {world.stores[shard].decided.get(txn.txn_id)} "
                f"but the core decided {outcome[0]}"
            )


@given(transfers(), schedules)
@settings(max_examples=25, deadline=None)
def test_cross_shard_transactions_stay_atomic_under_any_delivery_order_and_crash_point(
    plan: list[tuple[int, int, int, int, int]], schedule: list[tuple[str, int, int]]
) -> None:
    _run(plan, schedule)


@pytest.mark.slow
@given(transfers(), schedules)
@settings(max_examples=400, deadline=None)
def test_cross_shard_atomicity_many_schedules(
    plan: list[tuple[int, int, int, int, int]], schedule: list[tuple[str, int, int]]
) -> None:
    _run(plan, schedule)


def _certify_by(members: tuple[int, ...], index: int, decision: TxnDecision) -> CoreCertificate:
    """A certificate from the partial signatures of ``members`` alone (share
    indexes of the stub core's threshold key)."""
    dealing = _dealing(_STUB.threshold, _STUB.n, _STUB.epoch)
    data = encode_decision(decision)
    message = certificate_bytes(_STUB.epoch, index, data)
    partials = {
        share.index: ThresholdSigner(NodeId(share.index), share).sign(message)
        for share in dealing.shares
        if share.index in members
    }
    return CoreCertificate(_STUB.epoch, index, data, dealing.public_key().combine(partials))


def test_more_than_f_byzantine_core_members_break_atomicity_and_the_checks_report_it() -> None:
    """The checks can fail. A core of C = 4 tolerates f = 1; with two
    Byzantine members, each fork of a split core holds a threshold (t = 3) of
    partial signatures: members 1 and 2 sign both the commit that member 3's
    log ordered and an abort (a timeout) that member 4's log ordered at the
    same index. Both certificates verify under the group key; shard 1
    applies the commit, shard 2 the abort, and the checks say so."""
    kit = Kit(nodes=12, shard_size=4)
    world = _world(kit)
    keys = _keys(kit)
    txn = _transfer(kit, 0, keys[1][0], keys[2][0], 3)
    _core_apply(world, kit.request(txn))
    while world.bag:  # begins to both shards, their yes votes to the core: it commits
        message = world.bag.pop(0)
        if message.certificate is None or isinstance(decode_decision(message.certificate.decision), TxnBegin):
            _deliver(world, message)
    assert world.decisions[txn.txn_id] == [True]
    [commit] = [c for c in world.issued[1] if isinstance(decode_decision(c.decision), TxnDecision)]
    byzantine = (1, 2)
    committed = _certify_by((*byzantine, 3), commit.index, TxnDecision(txn.txn_id, True, ""))
    aborted = _certify_by((*byzantine, 4), commit.index, TxnDecision(txn.txn_id, False, "timed out"))
    assert world.stores[2].certificate_refusal(aborted) is None  # a valid certificate: the key cannot tell
    _shard_order(world, 1, committed)
    with pytest.raises(AssertionError, match="committed in one shard and aborted in another"):
        _shard_order(world, 2, aborted)
    with pytest.raises(AssertionError, match="money was created or destroyed"):  # 3 debited, never credited
        _check_outcomes(world, [txn])
    # One Byzantine member is not enough: two thresholds of 3 among 4 share
    # two members, so one honest member would have to sign both decisions.
    assert len(set((*byzantine, 3)) & set((*byzantine, 4))) == 2 and _STUB.threshold == 3 and _STUB.n == 4


def test_a_begin_reaches_every_involved_shard_only_through_the_core() -> None:
    """Sanity of the model: a shard that gets no ``TxnBegin`` prepares nothing."""
    kit = Kit(nodes=12, shard_size=4)
    world = _world(kit)
    keys = _keys(kit)
    txn = _transfer(kit, 0, keys[1][0], keys[3][1], 1)
    _core_apply(world, kit.request(txn))
    begins = [m for m in world.bag if m.certificate is not None]
    assert {m.shard for m in begins} == {1, 3}
    assert all(m.certificate is not None and isinstance(decode_decision(m.certificate.decision), TxnBegin) for m in begins)
