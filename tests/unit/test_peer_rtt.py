"""The per-peer round-trip estimator the node runtime keeps (``quorate.runtime.aio.peer_rtt``)."""

from __future__ import annotations

import pytest

from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.runtime.aio.peer_rtt import PeerRtt

A, B = NodeId(2), NodeId(3)


def test_the_first_sample_sets_the_estimate_and_later_ones_move_it_by_the_gain() -> None:
    rtt = PeerRtt(gain=0.25)
    seq = rtt.sent(A, 10.0)
    assert rtt.answered(A, seq, 10.004) == pytest.approx(0.004)
    assert rtt.rtt_ms() == {A: 4.0}
    seq = rtt.sent(A, 12.0)
    rtt.answered(A, seq, 12.012)  # sample 12 ms: 4 + 0.25 * (12 - 4) = 6
    assert rtt.rtt_ms() == {A: 6.0}
    assert rtt.peers[A].last_s == pytest.approx(0.012)


def test_a_constant_round_trip_is_the_estimate() -> None:
    rtt = PeerRtt()
    for i in range(20):
        seq = rtt.sent(B, float(i))
        rtt.answered(B, seq, i + 0.0025)
    assert rtt.rtt_ms() == {B: 2.5}
    assert rtt.loss() == {B: 0.0}


def test_an_unanswered_ping_is_lost_after_the_timeout_and_its_late_pong_ignored() -> None:
    rtt = PeerRtt(loss_after_s=5.0)
    first = rtt.sent(A, 0.0)
    second = rtt.sent(A, 2.0)
    assert rtt.expire(4.9) == 0
    assert rtt.expire(5.0) == 1  # the first one only
    assert rtt.answered(A, first, 5.5) is None
    assert rtt.answered(A, second, 2.003) == pytest.approx(0.003)
    assert rtt.loss() == {A: 0.5}
    assert rtt.peers[A].in_flight == {}
    assert (rtt.peers[A].sent, rtt.peers[A].answered, rtt.peers[A].lost) == (2, 1, 1)


def test_pongs_of_no_ping_in_flight_change_nothing() -> None:
    rtt = PeerRtt()
    assert rtt.answered(A, 1, 1.0) is None  # never pinged
    seq = rtt.sent(A, 0.0)
    assert rtt.answered(B, seq, 0.001) is None  # another peer's sequence number
    assert rtt.answered(A, seq + 1, 0.001) is None
    assert rtt.answered(A, seq, 0.002) == pytest.approx(0.002)
    assert rtt.answered(A, seq, 0.009) is None  # answered twice
    assert rtt.rtt_ms() == {A: 2.0}


def test_a_peer_pinged_but_never_answering_has_no_rtt_but_a_loss() -> None:
    rtt = PeerRtt(loss_after_s=1.0)
    rtt.sent(A, 0.0)
    rtt.expire(2.0)
    assert rtt.rtt_ms() == {}
    assert rtt.loss() == {A: 1.0}


@pytest.mark.parametrize(("gain", "loss_after_s"), [(0.0, 5.0), (1.5, 5.0), (0.1, 0.0)])
def test_bad_settings_are_refused(gain: float, loss_after_s: float) -> None:
    with pytest.raises(ConfigError):
        PeerRtt(gain=gain, loss_after_s=loss_after_s)
