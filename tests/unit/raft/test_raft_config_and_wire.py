"""Configuration validation and the wire format of every Raft message."""

from __future__ import annotations

import random

import pytest

from quorate.codec import WireCodec
from quorate.core.protocol import ProtocolCore
from quorate.core.ready import Entry
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.raft import (
    RAFT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    PreVote,
    PreVoteResponse,
    RaftConfig,
    RaftNode,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    TimeoutNow,
)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"election_timeout_s": 0}, "election_timeout_s"),
        ({"heartbeat_interval_s": 2.0}, "heartbeat_interval_s"),
        ({"max_batch_entries": 0}, "max_batch_entries"),
        ({"max_inflight": -1}, "max_inflight"),
        ({"read_mode": "stale"}, "read_mode"),
        ({"max_clock_drift": 0.7}, "max_clock_drift"),
        ({"read_mode": "lease", "check_quorum": False}, "check_quorum"),
        ({"read_mode": "lease", "lease_margin_s": 0.95}, "lease"),
        ({"lease_margin_s": -1.0}, "lease_margin_s"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(
    changes: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        RaftConfig(**changes).validate()  # type: ignore[arg-type]


def test_the_default_config_is_valid_and_node_checks_it() -> None:
    assert RaftConfig().validate() == RaftConfig()
    with pytest.raises(ConfigError):
        RaftNode(
            NodeId(1), [NodeId(1)], config=RaftConfig(max_inflight=0), rng=random.Random(0), now=0.0
        )


def test_raft_node_implements_the_core_protocol() -> None:
    node = RaftNode(NodeId(1), [NodeId(1)], config=RaftConfig(), rng=random.Random(0), now=0.0)
    assert isinstance(node, ProtocolCore)


SAMPLES = [
    RequestVote(3, 10, 2, True),
    RequestVoteResponse(3, False),
    PreVote(4, 10, 2),
    PreVoteResponse(4, True),
    TimeoutNow(5),
    AppendEntries(5, 9, 4, [Entry(5, 10, EntryKind.NORMAL, b"cmd")], 8),
    AppendEntriesResponse(5, 9, False, 7, 3),
    Heartbeat(5, 8, 12),
    HeartbeatResponse(5, 12),
    InstallSnapshot(6, Snapshot(100, 5, (1, 2, 3), (4,), b"state")),
]


def test_every_message_type_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(RAFT_MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_messages_round_trip_through_the_codec(message: object) -> None:
    codec = WireCodec(RAFT_MESSAGE_TYPES)
    sender, decoded = codec.decode(codec.encode(NodeId(2), message))  # type: ignore[arg-type]
    assert sender == 2 and decoded == message
    assert type(message).__struct_config__.tag.startswith("raft.")  # type: ignore[attr-defined]
