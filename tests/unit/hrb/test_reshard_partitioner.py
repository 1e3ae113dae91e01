"""The background partitioner (``quorate.hrb.reshard_driver``): a split of a
hot shard into an empty one, a merge of an idle shard, hysteresis (a map is
judged only after it settled; a change must lower the load spread), and the
resending of a request the core never answered."""

from __future__ import annotations

from quorate.crypto.keyring import CostModelKeyring
from quorate.hrb.reshard import MergeShards, MoveAgents, ShardMap, SplitShard, reshard_request_bytes
from quorate.hrb.reshard_driver import MAX_RESENDS, Repartitioner, RepartitionerSettings
from quorate.ids import NodeId
from quorate.sharding import AgentMove, HashRing

KEYS = CostModelKeyring(3)


def _partitioner(state: dict[str, object], scripted: list[tuple[float, object]] | None = None) -> Repartitioner:
    return Repartitioner(
        (1, 2, 3, 4),
        1,
        KEYS.signer(NodeId(1)),
        lambda: (state["map"], state["busy"]),  # type: ignore[return-value]
        RepartitionerSettings(round_s=1.0, settle_rounds=1),
        list(scripted or []),  # type: ignore[arg-type]
    )


def _map(homes: dict[str, int], shards: tuple[int, ...] = (1, 2, 3), version: int = 0) -> ShardMap:
    return ShardMap(version, HashRing.initial(shards, 8), tuple(sorted(homes.items())))


def _run(p: Repartitioner, rounds: int, start: float = 1.0) -> list[object]:
    changes = []
    for i in range(rounds):
        changes += [r.change for r in p.tick(start + i)]
    return changes


def test_a_hot_shard_splits_into_the_empty_one_and_requests_are_signed() -> None:
    homes = {f"a{i}": 1 for i in range(6)} | {"b": 2, "c": 3}
    state: dict[str, object] = {"map": _map(homes), "busy": False}
    p = _partitioner(state)
    p.tick(1.0)  # the first round starts watching the map in force
    for _ in range(10):
        for agent in homes:
            p.observe((agent,))
    out = p.tick(2.0)
    assert [r.change for r in out] == [SplitShard(1, 4)]
    request = out[0]
    assert KEYS.verifier(NodeId(0)).verify(NodeId(1), reshard_request_bytes(request), request.signature)
    assert request.based_on_version == 0


def test_an_idle_shard_merges_and_balanced_shards_stay() -> None:
    homes = {"a": 1, "b": 1, "c": 2, "d": 2}
    state: dict[str, object] = {"map": _map(homes), "busy": False}  # shard 3: ring only, no agent
    p = _partitioner(state)
    p.tick(1.0)  # the first round starts watching the map in force
    for _ in range(5):
        for agent in homes:
            p.observe((agent,))
    [change] = [r.change for r in p.tick(2.0)]
    assert isinstance(change, MergeShards) and change.absorbed == 3
    state["map"] = _map(homes, (1, 2), version=1)
    p.refused()  # settle the request (the core committed it: the map moved on)
    for _ in range(5):
        for agent in homes:
            p.observe((agent,))
    assert _run(p, 4, 3.0) == []


def test_a_lost_request_is_sent_again_until_the_map_moves_or_the_core_refuses() -> None:
    change = MoveAgents((AgentMove("a", 0, 2),))
    state: dict[str, object] = {"map": _map({"a": 1, "b": 2}), "busy": False}
    p = _partitioner(state, [(1.0, change)])
    [first] = p.tick(1.0)
    assert first.change == MoveAgents((AgentMove("a", 1, 2),))  # the source filled in from the map
    assert p.wake_at() == 2.0
    assert p.tick(2.0) == [first]
    state["busy"] = True  # in flight: wait, and never ask to be woken in the past
    assert p.tick(3.0) == []
    wake = p.wake_at()
    assert wake is not None and wake > 3.0
    assert p.tick(3.5) == [] and (p.wake_at() or 0) > 3.5
    state["busy"] = False  # aborted: try again, at most MAX_RESENDS times in all
    resent = sum(len(p.tick(t)) for t in (4.0, 5.0, 6.0, 7.0))
    assert resent == MAX_RESENDS - 1 and p.outstanding is None
    p2 = _partitioner(state, [(1.0, change)])
    p2.tick(1.0)
    state["map"] = _map({"a": 2, "b": 2}, version=1)
    assert p2.tick(2.0) == [] and p2.outstanding is None
    p3 = _partitioner({"map": _map({"a": 1, "b": 2}), "busy": False}, [(1.0, change)])
    p3.tick(1.0)
    p3.refused()
    assert p3.tick(2.0) == [] and p3.wake_at() is None
