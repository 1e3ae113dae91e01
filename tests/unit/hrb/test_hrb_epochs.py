"""Epochs (docs/hrb.md section 3): every ``epoch_length`` decisions the core
chooses the next members by reputation, runs their key generation through
its log, certifies the ``EpochChange`` with the old key and hands its final
state over; transactions in flight are carried over and decided exactly
once; next members joining over a lossy network fetch what they missed;
members restart from what they persisted; real BLS key generation yields a
key the shards verify the next epoch's certificates with."""

from __future__ import annotations

import pytest
from hrb_core_net import CoreNetwork

from quorate.hrb.core.config import CoreRules
from quorate.hrb.core.replica import ReplicaPhase
from quorate.hrb.core.snapshot import decode_snapshot
from quorate.hrb.messages import CORE_GROUP_BASE


def _rules(epoch_length: int = 3, txn_timeout_s: float = 10.0) -> CoreRules:
    return CoreRules(core_size=4, epoch_length=epoch_length, tick_interval_s=0.1, txn_timeout_s=txn_timeout_s)


def _cross(net: CoreNetwork, tag: str, home: int, other: int):  # type: ignore[no-untyped-def]
    keys = net.keys_for(home, 1, f"{tag}a") + net.keys_for(other, 1, f"{tag}b")
    txn = net.transaction(tag, home, keys)
    net.submit(txn)
    return txn


def test_an_epoch_change_carries_in_flight_transactions_over() -> None:
    net = CoreNetwork(12, seed=31, rules=_rules())
    # Shard 3 answers its transaction only after the epoch has changed.
    net.shards[3].default_policy = "late"
    net.shards[3].late_s = 4.0
    carried = _cross(net, "carried", 1, 3)
    net.run_for(0.5)
    quick = [_cross(net, f"q{i}", 1, 2) for i in range(2)]  # 1 + 4 decisions: past epoch_length
    net.run_for(3.0)
    assert 1 in net.members_of, "no epoch change"
    old = [r for r in net.replicas(0) if r.state is not None]
    assert all(r.phase is ReplicaPhase.CLOSED for r in old)
    handed = {r.state.snapshot_bytes() for r in old}  # type: ignore[union-attr]
    assert len(handed) == 1
    # The old core closed with the carried transaction open; the new one starts with it.
    new = [r for r in net.replicas(1) if r.state is not None]
    assert new and all(carried.txn_id in r.state.s.txns.open for r in new)  # type: ignore[union-attr]
    net.run_for(8.0)
    outcomes = net.check_atomicity([carried, *quick])
    assert outcomes == {t.txn_id: True for t in (carried, *quick)}
    # decided once, by epoch 1's core
    [(epoch, _)] = net.shards[3].decided_at[carried.txn_id]
    assert epoch == 1
    net.check_agreement(1)
    # every shard learned epoch 1's key from the certified epoch change
    assert all(shard.chain.group_key(1) is not None for shard in net.shards.values())
    assert all(shard.epochs == [1] for shard in net.shards.values())


def test_the_new_core_starts_from_the_old_cores_final_state() -> None:
    net = CoreNetwork(12, seed=32, rules=_rules(epoch_length=2))
    _cross(net, "a", 1, 2)
    net.run_for(4.0)
    [closed] = {r.state.digest() for r in net.replicas(0) if r.state is not None}  # type: ignore[union-attr]
    old = next(r for r in net.replicas(0) if r.state is not None)
    assert old.state is not None and old.state.s.transition is not None
    new = [r for r in net.replicas(1) if r.start is not None]
    assert len(new) == len(net.members_of[1])
    starts = {r.start.state for r in new}  # type: ignore[union-attr]
    assert len(starts) == 1
    snapshot = decode_snapshot(next(iter(starts)))
    assert snapshot.epoch == 1 and snapshot.members == net.members_of[1]
    assert snapshot.chain == old.state.s.chain and snapshot.decisions == 0
    assert closed != b""
    # served-epoch facts for the old core
    assert all(snapshot.facts[m].served == 1 for m in net.members_of[0])


def test_next_members_join_over_a_lossy_network() -> None:
    net = CoreNetwork(12, seed=33, rules=_rules(epoch_length=2), drop_rate=0.2)
    txns = [_cross(net, f"l{i}", 1 + i % 3, 1 + (i + 1) % 3) for i in range(2)]
    net.run_for(15.0)
    net.drop_rate = 0.0
    net.run_for(10.0)
    assert 1 in net.members_of
    assert all(r.phase is ReplicaPhase.ACTIVE for r in net.replicas(1))
    assert net.sent.get("JoinRequest", 0) + net.outbound_sent.get("JoinRequest", 0) > 0
    assert all(o is not None for o in net.check_atomicity(txns).values())


def test_a_member_of_a_later_epoch_restarts_from_what_it_persisted() -> None:
    # It crashed before it took part, so its ordering core restarts with no
    # hard state while the core idles: its start-up sync is what catches it up.
    net = CoreNetwork(12, seed=34, rules=_rules(epoch_length=2))
    _cross(net, "a", 1, 2)
    net.run_for(4.0)
    # A member that is not also a stub shard's leader (that shard would need a new leader).
    member = next(m for m in net.members_of[1] if all(s.leader != m for s in net.shards.values()))
    net.crash(member)
    after = [_cross(net, f"b{i}", 2, 3) for i in range(1)]
    net.run_for(3.0)
    net.restart(member)
    net.run_for(3.0)
    replica = net.replica(member, 1)
    # (its two decisions may have started the next epoch change: closed is fine too)
    assert replica.phase in (ReplicaPhase.ACTIVE, ReplicaPhase.CLOSED) and replica.state is not None
    assert replica.state.s.decisions == max(r.state.s.decisions for r in net.replicas(1) if r.state is not None)
    assert net.disk[(member, CORE_GROUP_BASE + 1)].snapshot is not None
    net.check_agreement(1)
    assert all(net.check_atomicity(after).values())


def test_a_silent_next_member_does_not_stop_the_epoch_change() -> None:
    net = CoreNetwork(16, seed=35, rules=_rules(epoch_length=2))
    # Find who the next core will be by running until the change starts, then silence one newcomer.
    _cross(net, "a", 1, 2)
    net.run_until(net.now + 10.0, until=lambda: any(
        r.state is not None and r.state.s.transition is not None for r in net.replicas(0)
    ))
    transition = next(r.state.s.transition for r in net.replicas(0) if r.state is not None and r.state.s.transition)  # type: ignore[union-attr]
    newcomer = next(m for m in transition.members if m not in net.genesis.members)
    net.crash(newcomer)
    net.run_for(10.0)
    assert 1 in net.members_of
    change = next(r.state for r in net.replicas(0) if r.state is not None)
    assert change.closed
    joined = [r for r in net.replicas(1) if r.phase is ReplicaPhase.ACTIVE]
    assert len(joined) >= len(net.members_of[1]) - 1


def test_real_key_generation_gives_the_shards_a_key_for_the_next_epoch() -> None:
    pytest.importorskip("blspy")
    from quorate.hrb.core.threshold_bls import BlsSuite

    net = CoreNetwork(12, seed=36, rules=_rules(epoch_length=2), suite=BlsSuite())
    _cross(net, "a", 1, 2)
    net.run_for(6.0)
    assert 1 in net.members_of
    new = [r for r in net.replicas(1) if r.phase is ReplicaPhase.ACTIVE]
    assert {r.start.share_index for r in new} == set(range(1, len(net.members_of[1]) + 1))  # type: ignore[union-attr]
    key = {r.key.group_public_key for r in new}  # type: ignore[union-attr]
    assert len(key) == 1 and next(iter(key)) != net.genesis.group_public_key
    txn = _cross(net, "b", 2, 3)
    net.run_for(3.0)
    assert net.check_atomicity([txn]) == {txn.txn_id: True}
    assert all(shard.chain.group_key(1) == next(iter(key)) for shard in net.shards.values())
    [(epoch, _)] = net.shards[2].decided_at[txn.txn_id]
    assert epoch == 1
    # epoch 1 made two decisions too: every shard is told of epoch 2, in order
    assert all(shard.epochs[:1] == [1] for shard in net.shards.values())
