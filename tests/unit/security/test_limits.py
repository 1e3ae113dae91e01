"""Edge limits as pure accounting: connections and handshakes by address and
subnet, request buckets by address, and settings checked once."""

from __future__ import annotations

import pytest

from quorate.errors import ConfigError
from quorate.security.limits import (
    MAX_TRACKED_ADDRESSES,
    AddressRateLimiter,
    ConnectionGovernor,
    EdgeLimits,
    subnet_of,
)


def test_subnets_group_addresses() -> None:
    assert subnet_of("10.1.2.3") == "10.1.2.0/24"
    assert subnet_of("10.1.2.3", prefix_v4=16) == "10.1.0.0/16"
    assert subnet_of("2001:db8::1") == "2001:db8::/48"
    assert subnet_of("::ffff:10.1.2.3") == "10.1.2.0/24"  # IPv4 seen through an IPv6 socket
    assert subnet_of("some-host") == "some-host"


def test_one_address_cannot_take_every_slot() -> None:
    governor = ConnectionGovernor(EdgeLimits(max_connections=10, max_connections_per_address=3, max_connections_per_subnet=5, max_handshakes_per_address=3))
    for _ in range(3):
        assert governor.admit("10.0.0.1") is None
    refusal = governor.admit("10.0.0.1")
    assert refusal is not None and refusal.metric == "refused_connections_per_address"
    # Another address in the same subnet: two more, then the subnet is full.
    assert governor.admit("10.0.0.2") is None
    assert governor.admit("10.0.0.2") is None
    refusal = governor.admit("10.0.0.3")
    assert refusal is not None and refusal.metric == "refused_connections_per_subnet"
    # Elsewhere there is room.
    assert governor.admit("192.168.7.1") is None
    # Releasing gives the slot back.
    governor.handshake_over("10.0.0.1")
    governor.release("10.0.0.1")
    assert governor.admit("10.0.0.1") is None
    assert governor.connections == 6


def test_handshakes_in_flight_are_bounded_in_all_and_per_address() -> None:
    governor = ConnectionGovernor(EdgeLimits(max_handshakes_in_flight=4, max_handshakes_per_address=2))
    assert governor.admit("10.0.0.1") is None
    assert governor.admit("10.0.0.1") is None
    refusal = governor.admit("10.0.0.1")
    assert refusal is not None and refusal.metric == "refused_handshakes_per_address"
    assert governor.admit("10.9.0.1") is None
    assert governor.admit("10.9.0.2") is None
    refusal = governor.admit("10.9.0.3")
    assert refusal is not None and refusal.metric == "refused_handshakes"
    # A finished handshake frees its handshake slot but keeps the connection.
    governor.handshake_over("10.0.0.1")
    assert governor.handshakes_in_flight == 3
    assert governor.admit("10.0.0.1") is None
    assert governor.connections == 5


def test_the_total_is_bounded() -> None:
    governor = ConnectionGovernor(EdgeLimits(max_connections=2))
    assert governor.admit("10.0.0.1") is None
    assert governor.admit("10.1.0.1") is None
    refusal = governor.admit("10.2.0.1")
    assert refusal is not None and refusal.metric == "refused_connections_total"


def test_address_buckets_and_their_bound() -> None:
    limiter = AddressRateLimiter(rate_per_s=2.0)
    assert limiter.allow("a", 0.0) and limiter.allow("a", 0.0)
    assert not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)  # each address its own bucket
    assert limiter.allow("a", 0.6)  # refilled
    for i in range(MAX_TRACKED_ADDRESSES + 10):
        limiter.allow(f"spray-{i}", 1.0)
    assert len(limiter._buckets) == MAX_TRACKED_ADDRESSES


@pytest.mark.parametrize(
    "limits",
    [EdgeLimits(max_connections=0), EdgeLimits(max_handshakes_per_address=-1), EdgeLimits(client_requests_per_s=-1), EdgeLimits(frame_timeout_s=0), EdgeLimits(subnet_prefix_v4=33)],
)
def test_bad_limits_are_refused(limits: EdgeLimits) -> None:
    with pytest.raises(ConfigError):
        limits.validate()


def test_the_operator_summary_shows_refusals_at_the_edge_and_above() -> None:
    from quorate.runtime.aio.cluster import summarize_metrics

    metrics = {
        "transport.refused_connections_per_address": 3,
        "transport.handshake_timeouts": 2,
        "transport.frames_sent": 9,
        "keys.refused": 1,
        "votes.refused": 0,
        "inbox_drops": 4,
    }
    assert summarize_metrics(metrics) == {
        "refused_connections_per_address": 3,
        "handshake_timeouts": 2,
        "keys.refused": 1,
        "inbox_drops": 4,
    }


def test_known_addresses_get_the_member_limit_and_no_subnet_limit() -> None:
    limits = EdgeLimits(
        max_connections_per_address=2, max_connections_per_subnet=3, max_connections_per_member_address=10,
        max_handshakes_per_address=10,
    )
    governor = ConnectionGovernor(limits, trusted=["10.0.0.1", "node.example"])  # a name is not kept
    for _ in range(10):
        assert governor.admit("10.0.0.1") is None
    refusal = governor.admit("10.0.0.1")
    assert refusal is not None and refusal.metric == "refused_connections_per_address"
    assert "member" in refusal.detail
    # The member's subnet is not filled by its own connections: strangers there get their share.
    assert governor.admit("10.0.0.2") is None and governor.admit("10.0.0.2") is None
    refusal = governor.admit("10.0.0.2")
    assert refusal is not None and refusal.metric == "refused_connections_per_address" and "unknown" in refusal.detail
    assert governor.admit("10.0.0.3") is None
    refusal = governor.admit("10.0.0.4")
    assert refusal is not None and refusal.metric == "refused_connections_per_subnet"
    # An IPv4 address seen through an IPv6 socket is the same address.
    assert governor.known("::ffff:10.0.0.1") and not governor.known("node.example")


def test_an_address_trusted_later_keeps_its_accounting_right() -> None:
    governor = ConnectionGovernor(EdgeLimits(max_connections_per_address=2, max_connections_per_subnet=2))
    assert governor.admit("10.0.0.7") is None and governor.admit("10.0.0.7") is None
    assert governor.admit("10.0.0.8") is not None  # the subnet is full of strangers
    governor.trust("10.0.0.7")  # a member peer authenticated from there
    assert governor.admit("10.0.0.7") is None  # now under the member limit
    for _ in range(3):
        governor.handshake_over("10.0.0.7")
        governor.release("10.0.0.7")
    assert governor.connections == 0
    assert not governor._by_subnet and not governor._in_subnet and not governor._by_address
    assert governor.admit("10.0.0.8") is None


def test_trusted_networks() -> None:
    limits = EdgeLimits(max_connections_per_address=1, trusted_networks="192.168.5.0/24, 2001:db8::/32")
    governor = ConnectionGovernor(limits)
    assert governor.known("192.168.5.77") and governor.known("2001:db8::9") and not governor.known("192.168.6.1")
    assert governor.admit("192.168.5.77") is None and governor.admit("192.168.5.77") is None
    assert governor.admit("192.168.6.1") is None and governor.admit("192.168.6.1") is not None
    with pytest.raises(ConfigError, match="trusted_networks: 'ten' is not a network"):
        EdgeLimits(trusted_networks="10.0.0.0/8, ten").validate()


def test_the_defaults_bound_strangers_tightly_and_members_generously() -> None:
    limits = EdgeLimits()
    assert limits.max_connections_per_address <= 3 < limits.max_connections_per_member_address
    assert limits.max_connections_per_subnet <= 16
