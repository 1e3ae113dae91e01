"""Per-node key files and the MAC keys agreed from them
(``quorate.crypto.keyfiles``)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier
from quorate.crypto.keyfiles import (
    PUBLIC_KEYS_FILE,
    agreed_session_keys,
    issue_node_key,
    key_file,
    load_node_keys,
    read_public_keys,
)
from quorate.errors import ConfigError
from quorate.ids import NodeId

NODES = [NodeId(i) for i in range(1, 5)]


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    for node in NODES:
        issue_node_key(tmp_path, node)
    return tmp_path


def test_each_node_gets_its_own_private_key_and_everyone_the_registry(keys_dir: Path) -> None:
    registry = read_public_keys(keys_dir)
    assert sorted(registry) == NODES
    assert len(set(registry.values())) == len(NODES)
    for node in NODES:
        assert stat.S_IMODE(key_file(keys_dir, node).stat().st_mode) == 0o600
        seed, public_keys = load_node_keys(keys_dir, node, NODES)
        signature = Ed25519Signer(node, seed).sign(b"statement")
        verifier = Ed25519Verifier(public_keys)
        assert verifier.verify(node, b"statement", signature)
        assert not verifier.verify(NodeId(node % 4 + 1), b"statement", signature)


def test_session_keys_are_shared_by_exactly_the_two_ends(keys_dir: Path) -> None:
    agreed = {}
    for node in NODES:
        seed, public_keys = load_node_keys(keys_dir, node, NODES)
        agreed[node] = agreed_session_keys(seed, node, public_keys)
        assert node not in agreed[node]
    for a in NODES:
        for b in NODES:
            if a != b:
                assert agreed[a][b] == agreed[b][a]
    pair_keys = {agreed[a][b] for a in NODES for b in NODES if a < b}
    assert len(pair_keys) == 6  # one distinct key per pair


def test_an_existing_key_is_kept_unless_forced(keys_dir: Path) -> None:
    before = key_file(keys_dir, NodeId(1)).read_text()
    with pytest.raises(ConfigError, match="--force"):
        issue_node_key(keys_dir, NodeId(1))
    assert key_file(keys_dir, NodeId(1)).read_text() == before
    issue_node_key(keys_dir, NodeId(1), force=True)
    assert key_file(keys_dir, NodeId(1)).read_text() != before
    load_node_keys(keys_dir, NodeId(1), NODES)  # the registry followed


def test_mistakes_in_the_files_are_named(keys_dir: Path) -> None:
    # Someone else's private key: it does not match this node's public key.
    key_file(keys_dir, NodeId(1)).write_text(key_file(keys_dir, NodeId(2)).read_text())
    with pytest.raises(ConfigError, match="does not match n1"):
        load_node_keys(keys_dir, NodeId(1), NODES)
    with pytest.raises(ConfigError, match="lists no key for n7"):
        load_node_keys(keys_dir, NodeId(2), [*NODES, NodeId(7)])
    key_file(keys_dir, NodeId(3)).write_text("zz")
    with pytest.raises(ConfigError, match="not hex"):
        load_node_keys(keys_dir, NodeId(3), NODES)
    key_file(keys_dir, NodeId(3)).unlink()
    with pytest.raises(ConfigError, match="quorate keys issue n3"):
        load_node_keys(keys_dir, NodeId(3), NODES)
    (keys_dir / PUBLIC_KEYS_FILE).write_text('n1 = "abcd"\n')
    with pytest.raises(ConfigError, match="32 bytes"):
        read_public_keys(keys_dir)
    (keys_dir / PUBLIC_KEYS_FILE).write_text('client = "00"\n')
    with pytest.raises(ConfigError, match="not a node name"):
        read_public_keys(keys_dir)
    (keys_dir / PUBLIC_KEYS_FILE).unlink()
    with pytest.raises(ConfigError, match="quorate keys init"):
        read_public_keys(keys_dir)


def test_bft_nodes_sign_with_their_own_key_and_refuse_a_shared_seed_too(keys_dir: Path) -> None:
    import random

    from quorate.crypto.keyring import Ed25519Keyring
    from quorate.runtime.aio.protocols import protocol_binding

    registry = read_public_keys(keys_dir)
    keys = Ed25519Keyring(NodeId(2), tuple(NODES), keys_dir=keys_dir)
    assert keys.signer(NodeId(2)).public_key == registry[NodeId(2)]
    seed, _ = load_node_keys(keys_dir, NodeId(2), NODES)
    assert keys._session_keys == agreed_session_keys(seed, NodeId(2), registry)
    with pytest.raises(ConfigError, match="holds n2's key, not n3's"):
        keys.signer(NodeId(3))  # a node signs only as itself
    for protocol in ("pbft", "hotstuff"):
        binding = protocol_binding(protocol)
        binding.build(NodeId(2), tuple(NODES), random.Random(1), 0.0, None, {"keys_dir": str(keys_dir)})
        with pytest.raises(ConfigError, match="not both"):
            binding.build(
                NodeId(2), tuple(NODES), random.Random(1), 0.0, None, {"keys_dir": str(keys_dir), "key_seed": "x"}
            )
