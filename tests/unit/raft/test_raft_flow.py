"""Replication flow control and read batching: how much the leader sends.

These pin the efficiency properties of ``raft.progress`` (after etcd's tracker):
a follower in REPLICATE receives each entry once, a rejection caused by
reordering is repaired by one probe, a lost batch is found by heartbeat rounds,
and ReadIndex keeps at most one confirmation round in flight (thesis §6.4;
etcd's read-only queue).
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from tests.unit.raft.network import Network

from quorate.core.ready import ReadState
from quorate.ids import NodeId
from quorate.raft import AppendEntries, Heartbeat, HeartbeatResponse, RaftConfig
from quorate.raft.progress import ProgressState

N = NodeId
MAX_COPIES_PER_ENTRY = 1.5
"""Bound on entries sent per committed entry per follower without faults."""
STEADY = RaftConfig(pre_vote=True, check_quorum=True, max_batch_entries=8, max_inflight=16)


def _run_steady_load(
    net: Network, rng: random.Random, rounds: int, reorder_window: int, read_every: int = 0
) -> None:
    """Proposals arrive while earlier batches are in flight; messages are
    delivered a few at a time, each picked among the first ``reorder_window``
    queued (1 = FIFO), the leader's heartbeat fires now and then, and every
    ``read_every`` steps a ReadIndex read asks for a confirmation round."""
    leader = net.node(1)
    for step in range(rounds):
        for _ in range(rng.randint(1, 3)):
            net.propose(1, b"cmd-%d" % step)
        if read_every and step % read_every == 0:
            leader.read_index(b"read-%d" % step, net.now)
            net.collect(N(1))
        for _ in range(rng.randint(1, 8)):
            if not net.queue:
                break
            src, dst, message = net.queue.pop(rng.randrange(min(reorder_window, len(net.queue))))
            net.step(src, dst, message)
        if step % 10 == 0:
            net.now += leader.config.heartbeat_interval_s
            net.tick(1)
    net.deliver()


def _entries_sent_per_follower(net: Network, followers: list[int]) -> Counter[int]:
    sent: Counter[int] = Counter()
    for src, dst, message in net.sent:
        if src == 1 and isinstance(message, AppendEntries):
            sent[int(dst)] += len(message.entries)
    return Counter({f: sent[f] for f in followers})


@pytest.mark.parametrize("reorder_window", [1])
@pytest.mark.parametrize("seed", range(4))
def test_each_entry_is_sent_about_once_per_follower(seed: int, reorder_window: int) -> None:
    net = Network([1, 2, 3, 4, 5], config=STEADY, seed=seed)
    net.elect(1)
    net.sent.clear()
    first = net.node(1).last_index + 1
    _run_steady_load(net, random.Random(seed), rounds=300, reorder_window=reorder_window, read_every=3)
    leader = net.node(1)
    committed = leader.commit_index - first + 1
    assert committed > 300
    for follower, count in _entries_sent_per_follower(net, [2, 3, 4, 5]).items():
        assert net.node(follower).commit_index == leader.commit_index
        assert count / committed <= MAX_COPIES_PER_ENTRY, (follower, count, committed)


def test_heartbeat_responses_do_not_resend_entries_in_flight() -> None:
    net = Network([1, 2, 3], config=STEADY)
    net.elect(1)
    for i in range(5):
        net.propose(1, b"c%d" % i)
    in_flight = [m for m in net.take(src=1) if isinstance(m[2], AppendEntries)]
    assert in_flight
    net.sent.clear()
    net.advance(STEADY.heartbeat_interval_s, deliver=False)
    net.tick(1)
    # The followers answer the heartbeat before the batches arrive.
    for src, dst, message in net.take(src=1):
        assert not (isinstance(message, AppendEntries) and message.entries)
        net.step(src, dst, message)
    for src, dst, message in net.take(dst=1):
        net.step(src, dst, message)
    resent = [m for s, _, m in net.sent if s == 1 and isinstance(m, AppendEntries) and m.entries]
    assert resent == []
    for src, dst, message in in_flight:
        net.step(src, dst, message)
    net.deliver()
    assert net.node(2).last_index == net.node(1).last_index


def test_a_lost_last_batch_is_found_by_heartbeat_rounds() -> None:
    net = Network([1, 2, 3], config=STEADY)
    net.elect(1)
    net.propose(1, b"lost")
    net.take(src=1, dst=2)  # the only batch for 2 is lost; nothing follows it
    net.deliver()
    leader = net.node(1)
    pr = leader.progress(N(2))
    assert pr is not None and pr.state is ProgressState.REPLICATE and pr.inflight
    net.advance(3 * STEADY.heartbeat_interval_s)
    assert net.node(2).last_index == leader.last_index
    assert net.node(2).commit_index == leader.commit_index


def test_one_probe_repairs_a_reordered_pipeline() -> None:
    net = Network([1, 2], config=STEADY)
    net.elect(1)
    for i in range(4):
        net.propose(1, b"c%d" % i)  # four batches to 2, one entry each
    batches = net.take(src=1, dst=2)
    assert len(batches) == 4
    net.sent.clear()
    # The last three overtake the first: each is rejected (a gap at 2).
    for src, dst, message in [*batches[1:], batches[0]]:
        net.step(src, dst, message)
    net.deliver()
    assert net.node(2).last_index == net.node(1).last_index
    probes = [m for s, _, m in net.sent if s == 1 and isinstance(m, AppendEntries) and m.entries]
    assert len(probes) == 1  # three rejections, one repair


def test_read_index_keeps_one_confirmation_round_in_flight() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.deliver()
    leader = net.node(1)
    for i in range(10):
        leader.read_index(b"r%d" % i, net.now)
        net.collect(N(1))  # one input each: without batching, ten rounds
    rounds = {m.round for _, _, m in net.queue if isinstance(m, Heartbeat)}
    assert len(rounds) == 1
    first_round = rounds.pop()
    # Reads arriving while that round is in flight wait for the next one.
    for i in range(10, 20):
        leader.read_index(b"r%d" % i, net.now)
        net.collect(N(1))
    assert {m.round for _, _, m in net.queue if isinstance(m, Heartbeat)} == {first_round}
    net.deliver()
    heartbeat_rounds = {m.round for _, _, m in net.sent if isinstance(m, Heartbeat)}
    assert heartbeat_rounds == {first_round, first_round + 1}
    assert sorted(r.context for r in net.reads[N(1)]) == sorted(b"r%d" % i for i in range(20))
    assert all(isinstance(r, ReadState) for r in net.reads[N(1)])


def test_read_round_lost_is_replaced_by_the_next_heartbeat() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.deliver()
    leader = net.node(1)
    leader.read_index(b"r", net.now)
    net.collect(N(1))
    net.take(src=1)  # the confirmation round is lost
    net.drop_types(HeartbeatResponse)
    net.deliver()
    assert net.reads[N(1)] == []
    net.heal()
    net.advance(2 * leader.config.heartbeat_interval_s)
    assert [r.context for r in net.reads[N(1)]] == [b"r"]
