"""HMAC authenticators (PBFT §3.1): one MAC per receiver, each checked by its receiver."""

from __future__ import annotations

import msgspec
import pytest

from quorate.crypto.mac import Authenticator, SessionKeys, pairwise_session_keys
from quorate.errors import ConfigError
from quorate.ids import NodeId

NODES = [NodeId(i) for i in range(4)]
SECRET = b"cluster secret, 32 bytes or more!"
KEYS = {n: SessionKeys(n, pairwise_session_keys(SECRET, n, [p for p in NODES if p != n])) for n in NODES}


def test_pairwise_keys_are_symmetric_and_distinct() -> None:
    k01 = pairwise_session_keys(SECRET, NodeId(0), [NodeId(1)])[NodeId(1)]
    k10 = pairwise_session_keys(SECRET, NodeId(1), [NodeId(0)])[NodeId(0)]
    k02 = pairwise_session_keys(SECRET, NodeId(0), [NodeId(2)])[NodeId(2)]
    assert k01 == k10
    assert k01 != k02


def test_every_receiver_accepts_its_entry() -> None:
    auth = KEYS[NodeId(0)].authenticator(b"pre-prepare", NODES[1:])
    assert sorted(auth.macs) == [1, 2, 3]
    for receiver in NODES[1:]:
        assert KEYS[receiver].verify_entry(NodeId(0), b"pre-prepare", auth)


def test_rejects_altered_data_wrong_sender_and_missing_entry() -> None:
    auth = KEYS[NodeId(0)].authenticator(b"m", [NodeId(1), NodeId(2)])
    assert not KEYS[NodeId(1)].verify_entry(NodeId(0), b"m2", auth)
    assert not KEYS[NodeId(1)].verify_entry(NodeId(2), b"m", auth)  # claims another sender
    assert not KEYS[NodeId(3)].verify_entry(NodeId(0), b"m", auth)  # no entry for node 3
    assert not KEYS[NodeId(1)].verify_entry(NodeId(9), b"m", auth)  # no key with node 9


def test_an_entry_cannot_be_moved_to_another_receiver() -> None:
    auth = KEYS[NodeId(0)].authenticator(b"m", [NodeId(1)])
    moved = Authenticator({2: auth.macs[1]})
    assert not KEYS[NodeId(2)].verify_entry(NodeId(0), b"m", moved)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 32, b"\x00" * 31, "text", None])
def test_garbage_entries_are_false(bad: object) -> None:
    auth = Authenticator({1: bad})  # type: ignore[dict-item]
    assert KEYS[NodeId(1)].verify_entry(NodeId(0), b"m", auth) is False
    assert KEYS[NodeId(1)].verify_entry(NodeId(0), b"m", "not an authenticator") is False


def test_authenticator_survives_the_wire() -> None:
    auth = KEYS[NodeId(0)].authenticator(b"m", NODES[1:])
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(auth), type=Authenticator)
    assert decoded == auth
    assert KEYS[NodeId(3)].verify_entry(NodeId(0), b"m", decoded)


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError):
        SessionKeys(NodeId(0), {NodeId(1): b"short"})
    with pytest.raises(ConfigError):
        KEYS[NodeId(0)].mac(NodeId(7), b"m")
