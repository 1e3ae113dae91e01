"""Configuration validation and the wire format of every Raft message."""

from __future__ import annotations

import random

import pytest

from quorate.codec import WireCodec
from quorate.core.protocol import ProtocolCore
from quorate.core.ready import ChainedEntry, Entry
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.raft import (
    RAFT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    ConfiguredSnapshot,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallConfiguredSnapshot,
    InstallSnapshot,
    PreVote,
    PreVoteResponse,
    QuiesceHeartbeat,
    RaftConfig,
    RaftNode,
    RequestVote,
    RequestVoteResponse,
    SignedAppendEntries,
    SignedAppendEntriesResponse,
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
        ({"quiesce_after_s": -1.0}, "quiesce_after_s"),
        ({"quiesce_after_s": float("nan")}, "quiesce_after_s"),
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
    SignedAppendEntries(5, 9, 4, [ChainedEntry(5, 10, EntryKind.NORMAL, b"cmd", b"d")], 8, b"s"),
    SignedAppendEntriesResponse(5, 10, True, 0, 0, b"s"),
    QuiesceHeartbeat(5, 8, 13),
    InstallConfiguredSnapshot(6, ConfiguredSnapshot(100, 5, (1, 2, 4), (), b"state", (1, 2, 3), (), True)),
]

PLAIN_ENCODINGS = {
    "RequestVote": "93010295b0726166742e52657175657374566f7465030a02c3",
    "RequestVoteResponse": "93010293b8726166742e52657175657374566f7465526573706f6e736503c2",
    "PreVote": "93010294ac726166742e507265566f7465040a02",
    "PreVoteResponse": "93010293b4726166742e507265566f7465526573706f6e736504c3",
    "TimeoutNow": "93010292af726166742e54696d656f75744e6f7705",
    "AppendEntries": "93010296b2726166742e417070656e64456e74726965730509049194050a00c403636d6408",
    "AppendEntriesResponse": "93010296ba726166742e417070656e64456e7472696573526573706f6e73650509c20703",
    "Heartbeat": "93010294ae726166742e48656172746265617405080c",
    "HeartbeatResponse": "93010293b6726166742e486561727462656174526573706f6e7365050c",
    "InstallSnapshot": (
        "93010293b4726166742e496e7374616c6c536e617073686f7406956405930102039104c4057374617465"
    ),
}
"""The bytes the codec wrote for these messages before the optional extensions
(digests, signatures, quiescence) existed: a cluster that does not use them
must send exactly these."""


@pytest.mark.parametrize("message", SAMPLES[: len(PLAIN_ENCODINGS)], ids=lambda m: type(m).__name__)
def test_plain_messages_encode_as_they_did_before_the_extensions(message: object) -> None:
    codec = WireCodec(RAFT_MESSAGE_TYPES)
    encoded = codec.encode(NodeId(2), message)  # type: ignore[arg-type]
    assert encoded.hex() == PLAIN_ENCODINGS[type(message).__name__]


def test_extensions_are_readable_from_the_plain_types() -> None:
    plain = Entry(1, 2, 0, b"x")
    chained = ChainedEntry(1, 2, 0, b"x", b"digest")
    assert plain.digest == b"" and chained.digest == b"digest" and isinstance(chained, Entry)
    assert AppendEntries(1, 0, 0, [], 0).signature == b""
    assert AppendEntriesResponse(1, 0, True).signature == b""
    assert isinstance(QuiesceHeartbeat(1, 0, 1), Heartbeat)
    # A signed message's entries keep their digests through the codec.
    codec = WireCodec(RAFT_MESSAGE_TYPES)
    signed = SignedAppendEntries(1, 1, 1, [chained], 0, b"sig")
    _, decoded = codec.decode(codec.encode(NodeId(1), signed))
    assert decoded == signed and decoded.entries[0].digest == b"digest"  # type: ignore[attr-defined]


def test_every_message_type_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(RAFT_MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_messages_round_trip_through_the_codec(message: object) -> None:
    codec = WireCodec(RAFT_MESSAGE_TYPES)
    sender, decoded = codec.decode(codec.encode(NodeId(2), message))  # type: ignore[arg-type]
    assert sender == 2 and decoded == message
    assert type(message).__struct_config__.tag.startswith("raft.")  # type: ignore[attr-defined]
