"""``forward_commands = False``: validators keep their clients' commands and
put them in blocks when they propose (the large-n benchmark cells, whose
clients send every command to every validator)."""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.casper.casper_net import FAST_CONFIG, Network

from quorate.casper import CasperConfig, Forward
from quorate.errors import ConfigError

NO_FORWARD = dataclasses.replace(FAST_CONFIG, forward_commands=False)


def test_forward_commands_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="forward_commands"):
        CasperConfig(forward_commands="no").validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2])
def test_commands_sent_to_every_validator_are_finalized_once_without_forwards(seed: int) -> None:
    net = Network(4, seed=seed, config=NO_FORWARD)
    commands = [b"cmd-%d" % i for i in range(30)]
    for command in commands:
        for node in net.ids:
            net.submit(command, node)
        net.run_until(net.now + 0.003)
    net.run_until(10.0, until=lambda: net.all_committed(commands))
    assert net.all_committed(commands)
    net.check_safety()
    assert not [m for _, _, m in net.sent if isinstance(m, Forward)]
    for node in net.ids:
        data = [e.data for e in net.committed[node]]
        assert len(data) == len(set(data)) == len(commands)


def test_a_command_given_to_one_validator_is_still_finalized() -> None:
    net = Network(4, seed=3, config=NO_FORWARD)
    net.submit(b"lonely", 2)
    net.run_until(10.0, until=lambda: net.all_committed([b"lonely"]))
    assert net.all_committed([b"lonely"])
    net.check_safety()
