"""Fault schedules: the SPEC grammar, scenario files, the chaos preset."""

from __future__ import annotations

import json
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.errors import ConfigError
from quorate.runtime.sim.engine import derive_rng
from quorate.runtime.sim.faults import (
    FaultAction,
    chaos,
    load_file,
    parse_item,
    parse_spec,
    validate,
)

GOOD = [
    ("crash:2@5s", FaultAction(5.0, "crash", node=2)),
    ("restart:2@9", FaultAction(9.0, "restart", node=2)),
    ("partition:0-1|2-4@12s", FaultAction(12.0, "partition", groups=((0, 1), (2, 3, 4)))),
    ("partition:0+3|1@1s", FaultAction(1.0, "partition", groups=((0, 3), (1,)))),
    ("cut:0>3@250ms", FaultAction(0.25, "cut", node=0, peer=3)),
    ("cut:1->2@1s", FaultAction(1.0, "cut", node=1, peer=2)),
    ("heal@20s", FaultAction(20.0, "heal")),
    ("slow:1:4@2s", FaultAction(2.0, "slow", node=1, value=4.0)),
    ("skew:3:0.25@2s", FaultAction(2.0, "skew", node=3, value=0.25)),
    ("skew:3:-0.1:1.01@2s", FaultAction(2.0, "skew", node=3, value=-0.1, rate=1.01)),
    ("loss:0.2@3s", FaultAction(3.0, "loss", value=0.2)),
    ("dup:0.05@3s", FaultAction(3.0, "dup", value=0.05)),
    ("restart-all@4s", FaultAction(4.0, "restart-all")),
    (" crash : 2 @ 5 s ", FaultAction(5.0, "crash", node=2)),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_good_items(text: str, expected: FaultAction) -> None:
    assert parse_item(text) == expected
    # describe() writes the same action back in SPEC syntax
    assert parse_item(expected.describe()) == expected


BAD = [
    ("crash:2", "ACTION@TIME"),
    ("crash:2@5s@6s", "ACTION@TIME"),
    ("crash:x@5s", "not a node id"),
    ("crash@5s", "takes 1 argument"),
    ("boom:1@5s", "unknown fault 'boom'"),
    ("crash:1@soon", "bad time"),
    ("crash:1@-1s", "finite number >= 0"),
    ("partition:0-1@1s", "at least two groups"),
    ("partition:0-1|1-2@1s", "two partition groups"),
    ("partition:3-1|4@1s", "empty node range"),
    ("cut:1@1s", "A>B"),
    ("loss:1.5@1s", "outside"),
    ("slow:1:0@1s", "factor"),
    ("skew:1:0.1:0@1s", "rate"),
    ("heal:3@1s", "takes 0 argument"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_items_name_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_spec(f"heal@1s,{text}")
    assert text.strip() in str(info.value) or text.replace(" ", "") in str(info.value)


def test_spec_is_sorted_by_time() -> None:
    actions = parse_spec("heal@20s,crash:2@5s,restart:2@9s")
    assert [a.kind for a in actions] == ["crash", "restart", "heal"]


def test_validate_checks_node_ids() -> None:
    # Replicas are 1..n, like the nodes n1..nN of a real cluster.
    validate(parse_spec("crash:5@1s,partition:1-2|3-5@2s,cut:1>5@3s"), nodes=5)
    with pytest.raises(ConfigError, match=r"node 6, but the cluster has nodes 1\.\.5"):
        validate(parse_spec("partition:1-2|3-6@2s"), nodes=5)
    with pytest.raises(ConfigError, match="node 0"):
        validate(parse_spec("crash:0@1s"), nodes=5)


def test_nodes_may_be_named_as_in_a_real_cluster() -> None:
    assert parse_spec("crash:n2@1s,partition:n1-n2|n3@2s") == parse_spec("crash:2@1s,partition:1-2|3@2s")


def test_scenario_files(tmp_path: pathlib.Path) -> None:
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps({"faults": ["crash:1@2s", "restart:1@3s"]}))
    as_toml = tmp_path / "s.toml"
    as_toml.write_text('faults = ["crash:1@2s", "restart:1@3s"]\n')
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(["restart:1@3s", "crash:1@2s"]))
    expected = [FaultAction(2.0, "crash", node=1), FaultAction(3.0, "restart", node=1)]
    assert load_file(str(as_json)) == load_file(str(as_toml)) == load_file(str(bare)) == expected
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid"):
        load_file(str(broken))
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(str(tmp_path / "missing.json"))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"faults": [1, 2]}))
    with pytest.raises(ConfigError, match="list of fault items"):
        load_file(str(wrong))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), nodes=st.integers(1, 9), heal=st.floats(1.0, 30.0))
def test_chaos_never_crashes_more_than_allowed_and_heals_everything(seed: int, nodes: int, heal: float) -> None:
    max_crashed = (nodes - 1) // 2
    actions = chaos(derive_rng(seed, "faults"), nodes=nodes, heal_at_s=heal, max_crashed=max_crashed)
    assert actions == sorted(actions, key=lambda a: a.at_s)
    validate(actions, nodes)
    down: set[int] = set()
    slow: set[int] = set()
    for a in actions:
        if a.kind == "crash":
            down.add(a.node)
        elif a.kind == "restart":
            down.discard(a.node)
        elif a.kind == "restart-all":
            down.clear()
        elif a.kind == "slow":
            (slow.add if a.value != 1.0 else slow.discard)(a.node)
        assert len(down) <= max_crashed
        assert a.at_s <= heal
    assert not down and not slow
    assert {a.kind for a in actions if a.at_s == heal} >= {"heal", "restart-all"}


def test_chaos_depends_on_the_seed() -> None:
    one = chaos(derive_rng(1, "faults"), nodes=5, heal_at_s=20.0, max_crashed=2)
    two = chaos(derive_rng(2, "faults"), nodes=5, heal_at_s=20.0, max_crashed=2)
    assert one == chaos(derive_rng(1, "faults"), nodes=5, heal_at_s=20.0, max_crashed=2)
    assert one != two
    assert len({a.kind for a in one}) >= 5  # a real mix of faults
