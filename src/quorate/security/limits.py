"""Limits at a node's edge: connections, handshakes and request rates by
source address and subnet (denial of service and eclipse attacks).

Theory of operation. A node's listener is open to anyone who can reach it.
What a stranger can make it hold is bounded *before* any cryptography runs:

- **connections** that are not (yet) an authenticated member's: at most
  ``max_connections`` in all, ``max_connections_per_address`` from one source
  address and ``max_connections_per_subnet`` from one subnet (IPv4 /24, IPv6
  /48 by default). One host — or one provider's block of addresses — cannot
  take every slot, so it cannot *eclipse* the node from its honest peers and
  clients. A connection that authenticates as a member peer leaves this
  accounting (a member has one connection per pair; it is no stranger).
- **handshakes in flight**: TLS handshakes cost CPU; at most
  ``max_handshakes_in_flight`` run at once and ``max_handshakes_per_address``
  from one address. Each must finish within the transport's handshake
  timeout, and a frame that has begun must finish within ``frame_timeout_s``
  (a *slowloris* trickling bytes is cut off).
- **requests**: each source address gets a token bucket of
  ``client_requests_per_s`` client messages per second (one second of burst).

``ConnectionGovernor`` does the accounting; it is sans-IO (addresses are
strings, nothing is read or timed here) and answers a refusal with a reason
the transport counts under ``metric``. ``AddressRateLimiter`` holds the
buckets, at most ``MAX_TRACKED_ADDRESSES`` of them (the least recently used
are forgotten first, so a spray of addresses cannot grow memory without
bound).
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from dataclasses import dataclass

from quorate.errors import ConfigError
from quorate.security.ratelimit import TokenBucket

DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256
"""Generous: a machine may run a swarm of agents, each with its own connections."""
DEFAULT_MAX_CONNECTIONS_PER_SUBNET = 1024
DEFAULT_MAX_HANDSHAKES_IN_FLIGHT = 256
DEFAULT_MAX_HANDSHAKES_PER_ADDRESS = 64
DEFAULT_CLIENT_REQUESTS_PER_S = 50_000.0
DEFAULT_FRAME_TIMEOUT_S = 10.0
DEFAULT_SUBNET_PREFIX_V4 = 24
DEFAULT_SUBNET_PREFIX_V6 = 48
MAX_TRACKED_ADDRESSES = 65_536
DEFAULT_MAX_INBOX = 65_536
"""Inputs a node holds between two turns; beyond it they are dropped (a flood
must not grow memory without bound; protocols resend what matters)."""


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """See the module docstring; 0 switches a rate limit off."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Client and not-yet-authenticated connections held at once (member peers not counted)."""
    max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    """Of those, from one source address."""
    max_connections_per_subnet: int = DEFAULT_MAX_CONNECTIONS_PER_SUBNET
    """Of those, from one subnet (subnet_prefix_v4 / subnet_prefix_v6)."""
    max_handshakes_in_flight: int = DEFAULT_MAX_HANDSHAKES_IN_FLIGHT
    """TLS handshakes (and Hello frames) under way at once."""
    max_handshakes_per_address: int = DEFAULT_MAX_HANDSHAKES_PER_ADDRESS
    """Of those, from one source address."""
    client_requests_per_s: float = DEFAULT_CLIENT_REQUESTS_PER_S
    """Client messages per second admitted from one source address (one second of burst); 0 = off."""
    frame_timeout_s: float = DEFAULT_FRAME_TIMEOUT_S
    """A frame that has begun must arrive whole within this many seconds (slowloris defence)."""
    subnet_prefix_v4: int = DEFAULT_SUBNET_PREFIX_V4
    """IPv4 prefix length that makes one subnet for max_connections_per_subnet."""
    subnet_prefix_v6: int = DEFAULT_SUBNET_PREFIX_V6
    """IPv6 prefix length that makes one subnet."""

    def validate(self) -> EdgeLimits:
        for name in (
            "max_connections",
            "max_connections_per_address",
            "max_connections_per_subnet",
            "max_handshakes_in_flight",
            "max_handshakes_per_address",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.client_requests_per_s < 0:
            raise ConfigError(f"client_requests_per_s must be >= 0 (0 = off), got {self.client_requests_per_s}")
        if not self.frame_timeout_s > 0:
            raise ConfigError(f"frame_timeout_s must be > 0 seconds, got {self.frame_timeout_s}")
        if not 0 <= self.subnet_prefix_v4 <= 32 or not 0 <= self.subnet_prefix_v6 <= 128:
            raise ConfigError("subnet_prefix_v4 must be in 0..32 and subnet_prefix_v6 in 0..128")
        return self


def subnet_of(address: str, prefix_v4: int = DEFAULT_SUBNET_PREFIX_V4, prefix_v6: int = DEFAULT_SUBNET_PREFIX_V6) -> str:
    """The subnet ``address`` belongs to (``10.1.2.0/24``); an unparsable
    address (a Unix socket, a name) is its own subnet."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = prefix_v4 if ip.version == 4 else prefix_v6
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection was refused: ``metric`` is the counter to bump."""

    metric: str
    detail: str


class ConnectionGovernor:
    """Connection and handshake accounting by address and subnet (see the module docstring)."""

    __slots__ = ("_by_address", "_by_subnet", "_handshakes", "_handshakes_by_address", "connections", "limits")

    def __init__(self, limits: EdgeLimits | None = None) -> None:
        self.limits = (limits or EdgeLimits()).validate()
        self.connections = 0
        self._handshakes = 0
        self._by_address: Counter[str] = Counter()
        self._by_subnet: Counter[str] = Counter()
        self._handshakes_by_address: Counter[str] = Counter()

    def _subnet(self, address: str) -> str:
        return subnet_of(address, self.limits.subnet_prefix_v4, self.limits.subnet_prefix_v6)

    def admit(self, address: str) -> Refusal | None:
        """A connection from ``address`` arrived: take a connection and a
        handshake slot for it, or say why not (then nothing is taken)."""
        limits = self.limits
        subnet = self._subnet(address)
        if self.connections >= limits.max_connections:
            return Refusal("refused_connections_total", f"{self.connections} connections held (limit {limits.max_connections})")
        if self._by_address[address] >= limits.max_connections_per_address:
            return Refusal(
                "refused_connections_per_address",
                f"{address} holds {self._by_address[address]} connections (limit {limits.max_connections_per_address})",
            )
        if self._by_subnet[subnet] >= limits.max_connections_per_subnet:
            return Refusal(
                "refused_connections_per_subnet",
                f"{subnet} holds {self._by_subnet[subnet]} connections (limit {limits.max_connections_per_subnet})",
            )
        if self._handshakes >= limits.max_handshakes_in_flight:
            return Refusal("refused_handshakes", f"{self._handshakes} handshakes in flight (limit {limits.max_handshakes_in_flight})")
        if self._handshakes_by_address[address] >= limits.max_handshakes_per_address:
            return Refusal(
                "refused_handshakes_per_address",
                f"{address} has {self._handshakes_by_address[address]} handshakes in flight "
                f"(limit {limits.max_handshakes_per_address})",
            )
        self.connections += 1
        self._by_address[address] += 1
        self._by_subnet[subnet] += 1
        self._handshakes += 1
        self._handshakes_by_address[address] += 1
        return None

    def handshake_over(self, address: str) -> None:
        """The handshake of a connection from ``address`` ended (done or failed)."""
        self._handshakes -= 1
        self._drop(self._handshakes_by_address, address)

    def release(self, address: str) -> None:
        """A connection counted for ``address`` closed, or became a member's."""
        self.connections -= 1
        self._drop(self._by_address, address)
        self._drop(self._by_subnet, self._subnet(address))

    @property
    def handshakes_in_flight(self) -> int:
        return self._handshakes

    @staticmethod
    def _drop(counter: Counter[str], key: str) -> None:
        counter[key] -= 1
        if counter[key] <= 0:
            del counter[key]


class AddressRateLimiter:
    """A token bucket per source address, the least recently used forgotten first."""

    __slots__ = ("_buckets", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(rate_per_s, 1.0) if burst is None else burst
        TokenBucket(self.rate_per_s, self.burst)  # validates the settings
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, address: str, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = TokenBucket(self.rate_per_s, self.burst, updated_s=now)
            self._buckets[address] = bucket
            if len(self._buckets) > MAX_TRACKED_ADDRESSES:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(address)
        return bucket.allow(now, cost)
