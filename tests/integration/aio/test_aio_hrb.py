"""HRB on real asyncio nodes (``AioNode`` with ``protocol = "hrb"``, in one
process on loopback): the node hosts its shard group and, on core members,
the core group, built by the ``hrb`` binding's hosting role; what a group
queues for another group (a shard leader's request and votes to the core,
the core's certificates to shards) travels as cross-group output over the
real transport, or is stepped locally when it is for the node itself.

Two shards of four and a core of four (two members of each shard) (``docs/hrb.md`` section 8, as
``tests/sim/test_sim_hrb.py`` runs it in the simulator):

- an intra-shard write, a cross-shard transfer (committed in both shards)
  and an overdraft (aborted in both) — balances conserved on every member;
- a transaction the shard's validation refuses is answered at once;
- a shard leader turned equivocating by the fault-injection request (a core
  member when one leads) is convicted by its followers, and the core's
  certified eviction removes it from the shard's Raft configuration while
  cross-shard transfers still commit; when it was a core member, the core
  changes epoch without it: the next members join the new core group at run
  time (a key generation among them, then the handover), and the shards
  route to it;
- a node without ``fault_injection`` refuses to turn Byzantine;
- (slow) a member of the core's next epoch, restarted from its disk after
  the epoch change, resumes the new core group it had joined, and
  cross-shard transfers still commit.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.integration.aio.aio_harness import FAST_BACKOFF, LOOPBACK, free_ports

from quorate.client.contact import ClientError
from quorate.client.hrb import AsyncHrbClient
from quorate.hrb.messages import CORE_GROUP_BASE, TxnOp
from quorate.hrb.node import honest_replica
from quorate.hrb.system import ShardMember
from quorate.ids import NodeId
from quorate.runtime.aio import AioNode

pytestmark = pytest.mark.timeout(120)

SHARDS = 2
SHARD_SIZE = 4
OPTIONS = {"shard_size": SHARD_SIZE, "core_size": 4, "quorum": "byzantine", "fault_injection": True}
READY_LIMIT_S = 40.0
EVICTION_LIMIT_S = 40.0


def _nodes(tmp_path: Path, options: dict[str, object]) -> list[AioNode]:
    count = SHARDS * SHARD_SIZE
    ports = free_ports(count)
    addresses = {NodeId(i + 1): (LOOPBACK, ports[i]) for i in range(count)}
    return [
        AioNode(
            NodeId(i + 1),
            addresses,
            tmp_path / f"n{i + 1}",
            listen=addresses[NodeId(i + 1)],
            protocol="hrb",
            protocol_options=options,
            insecure=True,
            transport_config=FAST_BACKOFF,
        )
        for i in range(count)
    ]


def _key_in(shard: int, prefix: str) -> str:
    from quorate.hrb.txn import shard_of_key

    i = 0
    while shard_of_key(f"{prefix}{i}", SHARDS) != shard:
        i += 1
    return f"{prefix}{i}"


def _member(node: AioNode, shard: int) -> ShardMember:
    group = node.host_or_raise().get(shard)
    assert group is not None and isinstance(group.core, ShardMember)
    return group.core


async def _run(tmp_path: Path) -> None:
    nodes = _nodes(tmp_path, OPTIONS)
    for node in nodes:
        await node.start()
    client = AsyncHrbClient([f"{LOOPBACK}:{nodes[0].transport_or_raise().listen_address[1]}"], insecure=True)
    try:
        await client.wait_ready(READY_LIMIT_S)
        layout = await client.discover()
        assert sorted(layout.shards) == [1, 2] and len(layout.core) == 4
        # Every node hosts its shard; exactly the core members host the core group.
        for node in nodes:
            assert (CORE_GROUP_BASE in node.host_or_raise()) == (int(node.id) in layout.core)
        a, b = _key_in(1, "acct"), _key_in(2, "acct")
        opened = await client.put({a: "100"})
        assert opened.committed
        assert (await client.put({b: "5"})).committed
        paid = await client.transfer(a, b, 30)
        assert paid.committed, paid.reason
        overdraft = await client.transfer(a, b, 500)
        assert not overdraft.committed and "below 0" in overdraft.reason
        assert await client.read([a, b]) == {a: "70", b: "35"}
        # Every member of each shard holds the same balance: conserved.
        for node in nodes:
            shard = next(k for k, ms in layout.shards.items() if int(node.id) in ms)
            key = a if shard == 1 else b
            want = "70" if shard == 1 else "35"
            await _wait(lambda node=node, shard=shard, key=key, want=want: _value(node, shard, key) == want)
        crossed = sum(node.counters["cross_group_messages"] for node in nodes)
        assert crossed > 0
        # Refused by validation (too many operations): answered, not ignored.
        refused = await client.transact([TxnOp(f"k{i}", "put", "x") for i in range(65)], home_shard=1)
        assert not refused.committed and refused.reason.startswith("refused:")

        # A shard leader turns equivocating (a core member when one leads).
        leaders = sorted((k, v) for k, v in (await client.leaders()).items() if v is not None)
        shard, offender = next(((k, v) for k, v in leaders if v in layout.core), leaders[0])
        in_core = offender in layout.core
        await client.turn_byzantine(offender, "equivocating-leader")
        with pytest.raises(ClientError, match="already"):
            await client.turn_byzantine(offender, "equivocating-leader")
        others = [n for n in nodes if int(n.id) in layout.shards[shard] and int(n.id) != offender]
        # Load on the shard so the liar sends entries (its lies travel in them).
        source, target_key = _key_in(shard, "pay"), _key_in(3 - shard, "pay")
        await client.put({source: "1000"})
        deadline = asyncio.get_running_loop().time() + EVICTION_LIMIT_S
        while asyncio.get_running_loop().time() < deadline:
            await client.transfer(source, target_key, 1)
            if all(NodeId(offender) not in honest_replica(_member(n, shard).member).raft.voters for n in others):
                break
        for n in others:
            replica = honest_replica(_member(n, shard).member)
            assert NodeId(offender) in replica.convicted
            assert NodeId(offender) not in replica.raft.voters
            assert offender in replica.store.evicted
        assert (await client.transfer(source, target_key, 1)).committed
        witness = int(others[0].id)
        seen = await client.layout_of(witness)
        if in_core:
            # The core moved to epoch 1 without the offender; its members host the new group.
            assert seen.epoch == 1 and offender not in seen.epoch_members and len(seen.epoch_members) == 4
            for node in nodes:
                assert (CORE_GROUP_BASE + 1 in node.host_or_raise()) == (int(node.id) in seen.epoch_members)
            assert sum(node.counters["groups.joined"] for node in nodes) >= 1
        else:
            assert seen.epoch == 0
    finally:
        await client.close()
        for node in nodes:
            await node.close()


def _value(node: AioNode, shard: int, key: str) -> str | None:
    return honest_replica(_member(node, shard).member).store.get(key)


async def _wait(condition: object) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_LIMIT_S
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("gave up waiting")
        await asyncio.sleep(0.05)


def test_hrb_on_real_nodes_commits_across_shards_and_evicts_an_equivocating_leader(tmp_path: Path) -> None:
    asyncio.run(_run(tmp_path))


async def _refusing(tmp_path: Path) -> None:
    nodes = _nodes(tmp_path, {**OPTIONS, "fault_injection": False})
    for node in nodes:
        await node.start()
    client = AsyncHrbClient([f"{LOOPBACK}:{nodes[0].transport_or_raise().listen_address[1]}"], insecure=True)
    try:
        await client.discover()
        with pytest.raises(ClientError, match="fault injection is off"):
            await client.turn_byzantine(1, "equivocating-leader")
    finally:
        await client.close()
        for node in nodes:
            await node.close()


def test_a_node_without_fault_injection_refuses_to_turn_byzantine(tmp_path: Path) -> None:
    asyncio.run(_refusing(tmp_path))


async def _restart_after_epoch_change(tmp_path: Path) -> None:
    import random as random_module

    nodes = _nodes(tmp_path, OPTIONS)
    for node in nodes:
        await node.start()
    ports = [node.transport_or_raise().listen_address[1] for node in nodes]
    client = AsyncHrbClient([f"{LOOPBACK}:{p}" for p in ports[:2]], insecure=True)
    try:
        await client.wait_ready(READY_LIMIT_S)
        layout = await client.discover()
        leaders = sorted((k, v) for k, v in (await client.leaders()).items() if v is not None)
        in_core = [(k, v) for k, v in leaders if v in layout.core]
        if not in_core:
            pytest.skip("no shard leader is a core member in this run: no epoch change to restart after")
        shard, offender = in_core[0]
        keys = [_key_in(1, "r"), _key_in(2, "r")]
        await client.put({keys[0]: "1000"})
        await client.turn_byzantine(offender, "equivocating-leader")
        witness = next(m for m in layout.shards[shard] if m != offender)
        rng = random_module.Random(7)
        deadline = asyncio.get_running_loop().time() + EVICTION_LIMIT_S
        seen = await client.layout_of(witness)
        while seen.epoch == 0 and asyncio.get_running_loop().time() < deadline:
            await client.transfer(*rng.sample(keys, 2), 1)
            seen = await client.layout_of(witness)
        assert seen.epoch == 1
        victim = next(m for m in seen.epoch_members if m > 2)  # not one of the client's endpoints
        index = victim - 1
        await nodes[index].close()
        nodes[index] = _restarted(nodes[index])
        await nodes[index].start()
        assert CORE_GROUP_BASE + 1 in nodes[index].host_or_raise()
        for _ in range(4):
            outcome = await client.transfer(*rng.sample(keys, 2), 1)
            assert outcome.committed or "below 0" in outcome.reason
        values = await client.read(keys)
        assert sum(int(v or 0) for v in values.values()) == 1000
        view = await client.status(victim, CORE_GROUP_BASE + 1)
        assert view.role.startswith("active")
    finally:
        await client.close()
        for node in nodes:
            await node.close()


def _restarted(node: AioNode) -> AioNode:
    return AioNode(
        node.id,
        {**node.peers, node.id: node.listen},
        node.data_dir,
        listen=node.listen,
        protocol="hrb",
        protocol_options=node.protocol_options,
        insecure=True,
        transport_config=FAST_BACKOFF,
    )


@pytest.mark.slow
def test_a_next_epoch_core_member_restarts_into_the_core_it_joined(tmp_path: Path) -> None:
    asyncio.run(_restart_after_epoch_change(tmp_path))
