"""Simulated clients: the history format, closed and open loops, timeouts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from quorate.check import check_history
from quorate.errors import ConfigError
from quorate.runtime.sim import OpMix, SimConfig, run
from quorate.runtime.sim.protocols import ServiceCodec
from quorate.runtime.sim.workload import Operation
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
    result = run(_primary(faults="crash:0@0.2s", op_timeout_s=0.3))
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
