"""Casper's binding: what runtimes know about it (``quorate.protocols``)."""

from __future__ import annotations

import random

import pytest

from quorate.casper import ByzantineValidator, CasperValidator
from quorate.core.binding import ClusterContext
from quorate.crypto.keyring import Ed25519Keyring
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.protocols import binding, byzantine_fault_tolerant, names
from quorate.runtime.aio.protocols import protocol_names

MEMBERS = (NodeId(1), NodeId(2), NodeId(3), NodeId(4))


def test_casper_is_a_registered_byzantine_protocol() -> None:
    assert "casper" in names() and "casper" in protocol_names()
    assert byzantine_fault_tolerant("casper")
    b = binding("casper")
    assert b.max_faulty(4) == 1 and b.reply_quorum(4) == 2
    assert {"double_vote", "surround_vote"} <= set(b.behaviours)


def test_options_are_checked_by_name() -> None:
    b = binding("casper")
    settings = b.parse_config({"epoch_blocks": 4, "send_before_persist": True})
    assert settings.core.epoch_blocks == 4 and settings.send_before_persist
    with pytest.raises(ConfigError, match="unknown Casper option"):
        b.parse_config({"epochs": 4})
    with pytest.raises(ConfigError, match="epoch_blocks"):
        b.parse_config({"epoch_blocks": 0})


def test_builds_validators_and_byzantine_ones_with_real_keys() -> None:
    b = binding("casper")
    settings = b.parse_config({})
    with pytest.raises(ConfigError, match="keys"):
        b.builder(settings, ClusterContext())
    keyring = Ed25519Keyring(NodeId(1), MEMBERS, key_seed="casper-binding-test")
    build = b.builder(settings, ClusterContext(keyring, {NodeId(1): "surround_vote"}))
    core = build(NodeId(1), MEMBERS, random.Random(1), 0.0, None)
    assert isinstance(core, ByzantineValidator) and isinstance(core.inner, CasperValidator)
    leader, slot = b.leadership(core)
    assert (leader, slot) == (NodeId(1), 1)
    status = b.status(core)
    assert status.role == "proposer" and status.leader == NodeId(1)
    assert status.metrics["casper.finalized_epoch"] == 0 and status.metrics["bft.detections"] == 0
