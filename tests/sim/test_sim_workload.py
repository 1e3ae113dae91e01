"""Simulated clients: the history format, closed and open loops, timeouts."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from quorate.check import check_history
from quorate.errors import ConfigError
from quorate.runtime.sim import OpMix, SimConfig, run
from quorate.runtime.sim.protocols import BftServiceCodec, ServiceCodec
from quorate.runtime.sim.workload import Operation, Workload
from quorate.state.kv import Cas, Get, Put, Result, decode_op, encode_result
from quorate.state.service import ClientReply

FIELDS = {"process", "type", "f", "key", "value", "time"}


def _primary(**kw: Any) -> SimConfig:
    base: dict[str, Any] = {"protocol": "primary", "nodes": 3, "clients": 6, "duration_s": 1.0, "seed": 4}
    base.update(kw)
    return SimConfig(**base)


def _check_shape(history: list[dict[str, Any]]) -> None:
    outstanding: dict[int, dict[str, Any]] = {}
    last_time = 0.0
    for event in history:
        assert set(event) == FIELDS
        assert event["type"] in ("invoke", "ok", "fail", "info")
        assert event["f"] in ("read", "write", "cas")
        assert event["time"] >= last_time  # recorded in time order
        last_time = event["time"]
        p = event["process"]
        if event["type"] == "invoke":
            assert p not in outstanding  # one operation at a time per process
            outstanding[p] = event
            if event["f"] == "cas":
                assert isinstance(event["value"], list) and len(event["value"]) == 2
            if event["f"] == "read":
                assert event["value"] is None
        else:
            invoke = outstanding.pop(p)
            assert (invoke["f"], invoke["key"]) == (event["f"], event["key"])
            if event["f"] != "read":
                assert event["value"] == invoke["value"]
    assert not outstanding  # every invoke completed (ok/fail/info)


def test_history_format_and_linearizable() -> None:
    result = run(_primary())
    history = result.history
    _check_shape(history)
    kinds = Counter((e["type"], e["f"]) for e in history)
    assert kinds[("ok", "write")] > 10 and kinds[("ok", "read")] > 10 and kinds[("invoke", "cas")] > 0
    written = [e["value"] for e in history if e["type"] == "invoke" and e["f"] == "write"]
    written += [e["value"][1] for e in history if e["type"] == "invoke" and e["f"] == "cas"]
    assert len(written) == len(set(written))  # every written value is unique
    reads = [e["value"] for e in history if e["type"] == "ok" and e["f"] == "read"]
    assert any(v is not None for v in reads)
    assert result.committed_ops == sum(1 for e in history if e["type"] == "ok")
    assert check_history(history).verdict == "linearizable"


def test_timeouts_are_info_and_start_a_new_process() -> None:
    # the primary is down from 0.2 s on: everything after times out
    result = run(_primary(faults="crash:1@0.2s", op_timeout_s=0.3))
    history = result.history
    _check_shape(history)
    infos = [e for e in history if e["type"] == "info"]
    assert infos and result.unknown_ops == len(infos)
    retired: set[int] = set()
    invokes_after_first_info = 0
    for e in history:
        if e["type"] == "info":
            retired.add(e["process"])
        elif e["type"] == "invoke" and retired:
            assert e["process"] not in retired  # a process never continues after info
            invokes_after_first_info += 1
    assert invokes_after_first_info > 0
    assert check_history(history).verdict == "linearizable"


def test_open_loop_rate() -> None:
    rate = 400.0
    result = run(_primary(rate_ops=rate, clients=20, duration_s=2.0))
    invokes = [e for e in result.history if e["type"] == "invoke"]
    assert 0.8 * rate * 2.0 < len(invokes) < 1.2 * rate * 2.0
    _check_shape(result.history)


def test_mix_only_reads() -> None:
    result = run(_primary(mix=OpMix(write=0.0, read=1.0, cas=0.0)))
    assert {e["f"] for e in result.history} == {"read"}
    assert all(e["value"] is None for e in result.history)


def test_bad_mix_is_rejected() -> None:
    with pytest.raises(ConfigError, match="mix"):
        _primary(mix=OpMix(write=0.0, read=0.0, cas=0.0)).validate()


def test_service_codec_round_trip() -> None:
    codec = ServiceCodec()
    put = codec.request(3, 7, Operation("write", "k1", 42))
    assert (put.client, put.seq) == (4, 7)  # sessions start at 1: 0 means none
    assert decode_op(put.op) == Put("k1", "42")
    assert decode_op(codec.request(0, 1, Operation("read", "k1", None)).op) == Get("k1")
    assert decode_op(codec.request(0, 1, Operation("cas", "k1", (None, 5))).op) == Cas("k1", None, "5")
    ok_read = ClientReply(4, 7, "ok", encode_result(Result(ok=True, value="42")))
    view = codec.reply(ok_read)
    assert view is not None and (view.client, view.status, view.value) == (3, "ok", 42)
    cas_miss = codec.reply(ClientReply(4, 7, "ok", encode_result(Result(ok=False, value="1"))))
    assert cas_miss is not None and cas_miss.status == "fail"
    redirect = codec.reply(ClientReply(4, 7, "redirect", leader=2))
    assert redirect is not None and (redirect.status, redirect.leader) == ("redirect", 2)
    assert codec.reply(object()) is None


class _RecordingLoop:
    """Sends and timers of a ``Workload`` driven by hand."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, Any]] = []
        self.timers: list[tuple[float, int, int, int, Any, int]] = []

    def send(self, src: int, dst: int, message: Any, now: float) -> None:
        self.sent.append((src, dst, message))

    def schedule(self, at: float, kind: int, dst: int, src: int, payload: Any, size: int) -> None:
        self.timers.append((at, kind, dst, src, payload, size))


TIMER, RETRY, ARRIVAL = 1, 2, 3


def _bft_workload(loop: _RecordingLoop) -> Workload:
    return Workload(
        random.Random(1),
        first_client_id=4,
        clients=1,
        replicas=4,
        codec=BftServiceCodec(),
        send=loop.send,
        schedule=loop.schedule,
        timer_kind=TIMER,
        retry_kind=RETRY,
        arrival_kind=ARRIVAL,
        stop_at_s=10.0,
        op_timeout_s=2.0,
        reply_quorum=2,
    )


def _answer(workload: Workload, loop: _RecordingLoop, now: float, leaders: dict[int, int | None]) -> None:
    """Replicas in ``leaders`` answer the last request ok, each naming its primary."""
    request = loop.sent[-1][2]
    loop.sent.clear()
    for replica, leader in leaders.items():
        reply = ClientReply(request.client, request.seq, "ok", encode_result(Result(ok=True)), leader=leader)
        workload.on_reply((now, 0, 0, 4, replica, reply, 0))


def _destinations(loop: _RecordingLoop) -> list[int]:
    return sorted(dst for _, dst, _ in loop.sent)


def test_bft_client_follows_only_a_primary_f_plus_one_replies_name() -> None:
    loop = _RecordingLoop()
    workload = _bft_workload(loop)
    workload.start(0.0)
    assert _destinations(loop) == [0, 1, 2, 3]  # no primary known: every replica
    _answer(workload, loop, 0.01, {1: 3, 2: 3})  # f + 1 = 2 name replica 3
    assert _destinations(loop) == [3]
    # Each replica's latest word counts, from earlier operations too:
    # replicas 0 and 2 name replica 3.
    _answer(workload, loop, 0.02, {0: 3, 1: 1})
    assert _destinations(loop) == [3]
    _answer(workload, loop, 0.025, {0: 0, 2: 2})  # now 0, 1 and 2 name three replicas
    assert _destinations(loop) == [0, 1, 2, 3]
    _answer(workload, loop, 0.03, {0: 2, 3: 2, 1: 1})
    assert _destinations(loop) == [2]
    assert workload.resends == 0 and workload.ok == 4

    # No result within the resend timeout (half the operation timeout): the
    # same request goes to every replica (again after each further timeout
    # that ends before the operation's deadline).
    request = loop.sent[-1][2]
    loop.sent.clear()
    resends = [t for t in loop.timers if t[1] == RETRY and t[3] == 0 and t[5] == request.seq]
    assert [t[0] for t in resends] == [pytest.approx(0.03 + 1.0)]
    at, kind, dst, src, payload, size = resends[0]
    workload.on_retry((at, 0, kind, dst, src, payload, size))
    assert _destinations(loop) == [0, 1, 2, 3]
    assert {(m.client, m.seq) for _, _, m in loop.sent} == {(request.client, request.seq)}
    assert workload.resends == 1
    # A second resend would fall on the operation deadline (0.03 + 2.0): none.
    assert not [t for t in loop.timers if t[1] == RETRY and t[0] > at]
    _answer(workload, loop, at + 0.01, {0: 1, 1: 1})  # the view changed: follow replica 1
    assert _destinations(loop) == [1]
    # A late reply to a decided operation changes nothing.
    reply = ClientReply(request.client, request.seq, "ok", encode_result(Result(ok=True)), leader=0)
    workload.on_reply((at + 0.02, 0, 0, 4, 2, reply, 0))
    assert workload.ok == 5 and workload._primary == [1]
