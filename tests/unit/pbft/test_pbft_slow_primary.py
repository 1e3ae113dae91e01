"""A slow primary is deposed: a backup times how long the primary takes to
order the requests it forwards against how long the backups take to prepare
a batch (``PbftConfig.slow_primary_factor``)."""

from __future__ import annotations

import dataclasses

import pytest
from pbft_testnet import Net, check_safety

from quorate.errors import ConfigError
from quorate.pbft import PbftConfig
from quorate.pbft.replica import ORDER_SAMPLES

CONFIG = PbftConfig(batch_max=8, checkpoint_interval=4, batch_timeout_s=0.001)
BACKUPS = (1, 2, 3)


def _wave(net: Net, tag: str, count: int = 12) -> float:
    """Propose ``count`` commands at the backups; the simulated seconds until
    every honest replica committed them."""
    start, done = net.now, len(net.committed[net.honest[0]]) + count
    for i in range(count):
        net.propose(BACKUPS[i % len(BACKUPS)], b"%s-%d" % (tag.encode(), i))
    assert net.run_until_committed(done, timeout_s=30.0)
    return net.now - start


def test_a_primary_that_holds_its_pre_prepares_is_replaced() -> None:
    net = Net(4, seed=3, config=CONFIG, byzantine={0: "slow"})
    # Each backup judges the primary on ORDER_SAMPLES requests of its own.
    _wave(net, "a", count=len(BACKUPS) * ORDER_SAMPLES)
    assert all(net.core(r).view >= 1 for r in net.honest)
    # The new primary orders at network speed: a wave takes milliseconds,
    # not the 0.9 s the slow primary held each pre-prepare.
    assert _wave(net, "b") < 0.2
    check_safety(net.honest_logs())


def test_without_the_check_the_slow_primary_keeps_its_view() -> None:
    net = Net(4, seed=3, config=dataclasses.replace(CONFIG, slow_primary_factor=0.0), byzantine={0: "slow"})
    _wave(net, "a", count=len(BACKUPS) * ORDER_SAMPLES)
    assert all(net.core(r).view == 0 for r in net.honest)
    assert _wave(net, "b") > 0.5


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_an_honest_primary_is_not_suspected(loss: float) -> None:
    net = Net(4, seed=5, config=CONFIG, loss=loss)
    for wave in range(6):
        _wave(net, f"w{wave}", count=24)
    assert all(net.core(r).view == 0 for r in net.replicas)
    check_safety(net.honest_logs())


@pytest.mark.parametrize(("field", "value"), [("slow_primary_factor", -1.0), ("slow_primary_min_delay_s", -0.1)])
def test_negative_settings_are_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(CONFIG, **{field: value}).validate(4)
