"""The replicated key-value state machine: operations, namespaces, TTL from
log time, exactly-once sessions, snapshots."""

from __future__ import annotations

import pytest

from quorate.state.kv import (
    Cas,
    Command,
    Delete,
    Get,
    KVStore,
    List,
    Put,
    Result,
    decode_command,
    decode_op,
    decode_result,
    encode_command,
    encode_op,
    encode_result,
)


def run(kv: KVStore, *commands: Command) -> list[Result]:
    return [kv.apply(i + 1, encode_command(c)) for i, c in enumerate(commands)]


def test_put_get_delete_cas_list() -> None:
    kv = KVStore()
    results = run(
        kv,
        Command(1, 1, Put("a/1", "x")),
        Command(1, 2, Put("a/2", "y")),
        Command(1, 3, Put("b/1", "z")),
        Command(1, 4, Get("a/1")),
        Command(1, 5, Cas("a/1", "wrong", "new")),
        Command(1, 6, Cas("a/1", "x", "new")),
        Command(1, 7, Cas("absent", None, "created")),
        Command(1, 8, List("a/")),
        Command(1, 9, Delete("a/2")),
        Command(1, 10, Delete("a/2")),
    )
    assert results[3] == Result(ok=True, value="x")
    assert results[4] == Result(ok=False, value="x")  # a failed cas reports the current value
    assert results[5].ok and results[6].ok
    assert results[7].items == [("a/1", "new"), ("a/2", "y")]
    assert results[8].ok and not results[9].ok
    assert kv.get("absent") == "created"
    assert kv.list_prefix("") == [("a/1", "new"), ("absent", "created"), ("b/1", "z")]


def test_namespaces_are_separate_key_spaces() -> None:
    kv = KVStore()
    run(kv, Command(1, 1, Put("k", "1", namespace="alpha")), Command(1, 2, Put("k", "2", namespace="beta")))
    assert kv.get("k", "alpha") == "1" and kv.get("k", "beta") == "2" and kv.get("k") is None
    assert kv.namespaces() == ["alpha", "beta"]


def test_ttl_expires_by_log_time_not_by_replica_clock() -> None:
    commands = [
        Command(1, 1, Put("lease", "holder", ttl_s=10.0), time_s=100.0),
        Command(1, 2, Get("lease"), time_s=109.9),
        Command(1, 3, Get("lease"), time_s=110.0),
    ]
    a, b = KVStore(), KVStore()
    ra, rb = run(a, *commands), run(b, *commands)
    assert ra == rb
    assert ra[1].value == "holder" and ra[2].value is None


def test_overwrite_cancels_an_earlier_ttl() -> None:
    kv = KVStore()
    run(
        kv,
        Command(1, 1, Put("k", "short", ttl_s=1.0), time_s=0.0),
        Command(1, 2, Put("k", "forever"), time_s=0.5),
        Command(1, 3, Get("k"), time_s=5.0),
    )
    assert kv.get("k") == "forever"


def test_log_time_never_goes_backwards() -> None:
    kv = KVStore()
    run(kv, Command(1, 1, Put("k", "v", ttl_s=5), time_s=10.0), Command(1, 2, Get("k"), time_s=3.0))
    assert kv.now_s == 10.0 and kv.get("k") == "v"


def test_sessions_make_retries_exactly_once() -> None:
    kv = KVStore()
    first = run(kv, Command(7, 1, Cas("c", None, "1")))[0]
    # The same command retried (e.g. after a leader change) returns the saved result.
    again = kv.apply(2, encode_command(Command(7, 1, Cas("c", None, "1"))))
    assert first.ok and again == first
    assert kv.apply(3, encode_command(Command(7, 2, Cas("c", "1", "2")))).ok
    stale = kv.apply(4, encode_command(Command(7, 1, Put("c", "old"))))
    assert not stale.ok and kv.get("c") == "2"


def test_idle_sessions_expire_deterministically() -> None:
    kv = KVStore(session_ttl_s=60.0)
    run(kv, Command(5, 1, Put("a", "1"), time_s=1.0), Command(6, 1, Put("b", "1"), time_s=100.0))
    assert 5 not in kv._sessions and 6 in kv._sessions


def test_malformed_command_gives_the_same_error_everywhere() -> None:
    kv = KVStore()
    assert kv.apply(1, b"\xc1garbage") == Result(ok=False, error="malformed command")
    assert kv.applied_index == 1


def test_snapshot_restores_data_ttls_and_sessions() -> None:
    kv = KVStore()
    run(
        kv,
        Command(1, 1, Put("k", "v", ttl_s=5.0), time_s=1.0),
        Command(2, 1, Put("n", "m", namespace="ns"), time_s=2.0),
    )
    copy = KVStore()
    copy.restore(kv.snapshot())
    assert copy.get("k") == "v" and copy.get("n", "ns") == "m"
    # The TTL and the session survived the snapshot.
    copy.apply(3, encode_command(Command(2, 1, Put("n", "again", namespace="ns"), time_s=7.0)))
    assert copy.get("k") is None and copy.get("n", "ns") == "m"


def test_read_refuses_writes() -> None:
    kv = KVStore()
    assert not kv.read(Put("k", "v")).ok
    assert kv.read(Get("k")) == Result(ok=True, value=None)


@pytest.mark.parametrize("op", [Put("k", "v", "ns", 3.0), Get("k"), Delete("k"), Cas("k", None, "v"), List("p")])
def test_encodings_round_trip(op: object) -> None:
    assert decode_op(encode_op(op)) == op  # type: ignore[arg-type]
    command = Command(1, 2, op, 3.5)  # type: ignore[arg-type]
    assert decode_command(encode_command(command)) == command
    assert decode_result(encode_result(Result(ok=True, items=[("a", "b")]))).items == [("a", "b")]


def test_session_expiry_keeps_recently_used_sessions_in_any_order() -> None:
    kv = KVStore(session_ttl_s=10.0)
    run(
        kv,
        Command(1, 1, Put("a", "1"), time_s=1.0),
        Command(2, 1, Put("b", "1"), time_s=2.0),
        Command(1, 2, Put("a", "2"), time_s=8.0),  # client 1 used again: now the newest
        Command(3, 1, Put("c", "1"), time_s=12.5),  # cutoff 2.5: only client 2 is stale
    )
    assert sorted(kv._sessions) == [1, 3]
    copy = KVStore(session_ttl_s=10.0)
    copy.restore(kv.snapshot())
    copy.apply(9, encode_command(Command(4, 1, Put("d", "1"), time_s=18.5)))  # cutoff 8.5
    assert sorted(copy._sessions) == [3, 4]
