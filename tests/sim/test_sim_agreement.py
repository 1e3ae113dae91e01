"""The agreement monitor (``runtime.sim.agreement``): the same command, result
and state at every index on every correct replica."""

from __future__ import annotations

import pytest

from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.errors import InvariantViolation
from quorate.ids import NodeId
from quorate.runtime.sim.agreement import DIGEST_EVERY, AgreementMonitor, state_digest
from quorate.state.kv import Command, Get, KVStore, Put, Result, encode_command


def entry(index: int, op: Put | Get) -> Entry:
    return Entry(term=1, index=index, kind=ENTRY_NORMAL, data=encode_command(Command(0, 0, op)))


def test_byzantine_replicas_are_not_checked_and_honest_conflicts_are() -> None:
    monitor = AgreementMonitor(frozenset({NodeId(3)}))
    kv = KVStore()
    a, b = entry(1, Put("k", "a")), entry(1, Put("k", "b"))
    monitor.record(NodeId(0), a, Result(ok=True), kv)
    monitor.record(NodeId(3), b, Result(ok=True), kv)  # Byzantine: may claim anything
    monitor.record(NodeId(1), a, Result(ok=True), kv)
    with pytest.raises(InvariantViolation, match="different commands at index 1"):
        monitor.record(NodeId(2), b, Result(ok=True), kv)


def test_the_same_command_with_another_result_is_a_divergence() -> None:
    monitor = AgreementMonitor()
    read = entry(5, Get("k"))
    monitor.record(NodeId(0), read, Result(ok=True, value="1430"), KVStore())
    with pytest.raises(InvariantViolation, match="different results"):
        monitor.record(NodeId(1), read, Result(ok=True, value=None), KVStore())


def test_a_divergent_state_is_caught_at_the_next_digest_even_if_nothing_reads_it() -> None:
    full, empty = KVStore(), KVStore()
    full.apply_command(Command(0, 0, Put("k", "v")))
    assert state_digest(full) != state_digest(empty)
    monitor = AgreementMonitor()
    write = entry(DIGEST_EVERY, Put("other", "x"))
    monitor.record(NodeId(0), write, Result(ok=True), full)
    with pytest.raises(InvariantViolation, match="different states"):
        monitor.record(NodeId(1), write, Result(ok=True), empty)


def test_the_digest_ignores_the_order_keys_were_written_in() -> None:
    one, two = KVStore(), KVStore()
    for key in ("a", "b", "c"):
        one.apply_command(Command(0, 0, Put(key, key.upper())))
    for key in ("c", "a", "b"):
        two.apply_command(Command(0, 0, Put(key, key.upper())))
    two.apply_command(Command(0, 0, Put("x", "1", namespace="ns")))
    one.apply_command(Command(0, 0, Put("x", "1", namespace="ns")))
    assert state_digest(one) == state_digest(two)
