"""``quorate.hrb.node``: what one node of a real HRB deployment hosts.

- every node derives the same deployment from the cluster's node ids and
  options (the shard deal, epoch 0's core and its key), and a different
  genesis seed deals differently;
- bad options are refused with a ``ConfigError`` naming them;
- an agent needs one answer from a ``majority`` shard, f + 1 from a
  ``byzantine`` one, and the answers must agree;
- ``quorate kv txn run``'s operation syntax.
"""

from __future__ import annotations

import pytest

from quorate.cli.kv_txn import parse_op
from quorate.client.hrb import _agreed, transfer_ops
from quorate.core.binding import HostingContext
from quorate.crypto.keyring import Ed25519Keyring
from quorate.errors import ConfigError
from quorate.hrb.core.threshold import CostModelSuite
from quorate.hrb.messages import CORE_GROUP_BASE, TxnOp
from quorate.hrb.node import (
    BINDING,
    AgentOutcome,
    HrbSettings,
    deployment,
    hosted_groups,
    reply_quorum,
)
from quorate.ids import NodeId
from quorate.protocols import binding

NODES = tuple(NodeId(n) for n in range(1, 13))


def test_the_hrb_binding_is_registered_with_a_hosting_role() -> None:
    found = binding("hrb")
    assert found is BINDING and found.hosting is not None and found.fault_model == "byzantine"


def test_every_node_derives_the_same_deployment() -> None:
    settings = HrbSettings(shard_size=4, core_size=4)
    suite = CostModelSuite(b"test")
    first = deployment(settings, NODES, suite)
    again = deployment(settings, tuple(reversed(NODES)), CostModelSuite(b"test"))
    assert first.shards == again.shards and first.core_members == again.core_members
    assert sorted(first.shards) == [1, 2, 3]
    assert sorted(n for members in first.shards.values() for n in members) == list(range(1, 13))
    # At most ceil(core / shards) core members per shard.
    assert len(first.core_members) == 4
    assert all(sum(1 for m in first.core_members if m in ms) <= 2 for ms in first.shards.values())
    other = deployment(HrbSettings(shard_size=4, core_size=4, genesis_seed="another"), NODES, suite)
    assert other.shards != first.shards or other.core_members != first.core_members


def test_a_node_hosts_its_shard_and_the_core_only_when_it_is_a_core_member() -> None:
    import random

    settings = HrbSettings(shard_size=4, core_size=4)
    d = deployment(settings, NODES)
    hosted: dict[int, list[int]] = {}
    recovered: list[tuple[int, str]] = []
    for node in NODES:
        keyring = Ed25519Keyring(node, NODES, key_seed="unit")

        def recover(group: int, b: object) -> None:
            recovered.append((group, b.name))  # type: ignore[attr-defined]

        context = HostingContext(node, NODES, keyring, random.Random(int(node)), 0.0, recover)
        groups = hosted_groups(settings, context)
        hosted[int(node)] = [g.id for g in groups]
        assert groups[0].id == d.shard_of(node) and groups[0].state is not None
    for node, groups in hosted.items():
        assert (CORE_GROUP_BASE in groups) == (node in d.core_members)
    assert {name for _, name in recovered} == {"hrb-shard", "hrb-core"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shard_size": 0}, "shard_size must be a positive integer"),
        ({"quorum": "most"}, "quorum must be one of"),
        ({"bft": "paxos"}, "bft must be one of"),
        ({"election_timeout_s": 0.1, "heartbeat_interval_s": 0.2}, "heartbeat_interval_s must be below"),
        ({"fault_injection": "yes"}, "fault_injection must be true or false"),
        ({"colour": "blue"}, "unknown HRB option(s) colour"),
        ({"response_bound_s": 2.0}, "response_bound_s"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BINDING.parse_config(options)


def test_a_shard_count_that_the_nodes_do_not_make_is_refused() -> None:
    with pytest.raises(ConfigError, match="make 3 shards, not 2"):
        deployment(HrbSettings(shard_size=4, shards=2), NODES, CostModelSuite(b"x"))


def test_reply_quorum_by_mode() -> None:
    assert reply_quorum(4, "majority") == 1
    assert reply_quorum(4, "byzantine") == 2
    assert reply_quorum(7, "byzantine") == 3


def _outcome(node: int, committed: bool = True, reads: tuple[tuple[str, str | None], ...] = ()) -> AgentOutcome:
    return AgentOutcome(b"t" * 16, 1, 1, committed, node, "", reads)


def test_an_agent_accepts_only_matching_answers_from_enough_members() -> None:
    assert _agreed({1: _outcome(1)}, 2) is None
    # One lying member (another read) cannot make up the quorum alone.
    lying = {1: _outcome(1, reads=(("a", "1"),)), 2: _outcome(2, reads=(("a", "9"),))}
    assert _agreed(lying, 2) is None
    honest = {**lying, 3: _outcome(3, reads=(("a", "1"),))}
    agreed = _agreed(honest, 2)
    assert agreed is not None and agreed.reads == (("a", "1"),)


@pytest.mark.parametrize(
    ("text", "op"),
    [
        ("a=100", TxnOp("a", "put", "100")),
        ("a?", TxnOp("a", "get")),
        ("a+=5", TxnOp("a", "add", delta=5)),
        ("a-=30,min=0", TxnOp("a", "add", delta=-30, minimum=0)),
        ("a-=3,min=-10", TxnOp("a", "add", delta=-3, minimum=-10)),
        ("a==old->new", TxnOp("a", "cas", "new", expected="old")),
        ("url=http://x?y=1", TxnOp("url", "put", "http://x?y=1")),
    ],
)
def test_kv_txn_operations(text: str, op: TxnOp) -> None:
    assert parse_op(text) == op


@pytest.mark.parametrize("text", ["nonsense", "=5", "?"])
def test_kv_txn_refuses_malformed_operations(text: str) -> None:
    with pytest.raises(ConfigError, match="cannot read the operation"):
        parse_op(text)


def test_a_transfer_debits_with_its_minimum_and_credits() -> None:
    assert transfer_ops("a", "b", 30, 0) == (TxnOp("a", "add", delta=-30, minimum=0), TxnOp("b", "add", delta=30))
    with pytest.raises(ConfigError):
        transfer_ops("a", "b", 0)
    with pytest.raises(ConfigError):
        transfer_ops("a", "a", 5)
