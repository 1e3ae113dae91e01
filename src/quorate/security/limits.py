"""Limits at a node's edge: connections, handshakes and request rates by
source address and subnet (denial of service and eclipse attacks).

Theory of operation. A node's listener is open to anyone who can reach it.
What a stranger can make it hold is bounded *before* any cryptography runs:

- **connections** that are not (yet) an authenticated member's: at most
  ``max_connections`` in all. From an *unknown* source, at most
  ``max_connections_per_address`` (3) from one address and
  ``max_connections_per_subnet`` (16) from one subnet (IPv4 /24, IPv6 /48 by
  default): one host — or one provider's block of addresses — cannot take
  more than a sliver of the slots, so it cannot *eclipse* the node from its
  honest peers and clients. A *known* source — an address a cluster member
  listens on or has authenticated from (``trust``), or one inside
  ``trusted_networks`` — may hold ``max_connections_per_member_address``
  (256) and is not counted in its subnet: a machine that runs nodes also
  runs their clients and agents (a local cluster is many nodes and clients
  on one loopback address). A connection that authenticates as a member peer
  leaves this accounting (a member has one connection per pair; it is no
  stranger).
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
from collections.abc import Iterable
from dataclasses import dataclass

from quorate.errors import ConfigError
from quorate.security.ratelimit import TokenBucket

DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 3
"""From an unknown source: a few clients per host (eclipse resistance)."""
DEFAULT_MAX_CONNECTIONS_PER_SUBNET = 16
DEFAULT_MAX_CONNECTIONS_PER_MEMBER_ADDRESS = 256
"""From a member's address or a trusted network: generous, a machine that
runs nodes may run a swarm of clients and agents, each with its connections."""
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
    """Of those, from one unknown source address (not a member's, not in trusted_networks): eclipse resistance."""
    max_connections_per_subnet: int = DEFAULT_MAX_CONNECTIONS_PER_SUBNET
    """Of those, from unknown addresses of one subnet (subnet_prefix_v4 / subnet_prefix_v6)."""
    max_connections_per_member_address: int = DEFAULT_MAX_CONNECTIONS_PER_MEMBER_ADDRESS
    """From one known address: a configured peer's or this node's own, one a member peer authenticated from, or one in trusted_networks (clients and agents on the nodes' machines)."""
    trusted_networks: str = ""
    """Comma-separated networks (CIDR, e.g. "10.0.0.0/8, 192.168.1.0/24") whose addresses count as known: where many clients connect from (a client subnet, the pod network)."""
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
            "max_connections_per_member_address",
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
        self.networks()
        return self

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``trusted_networks`` parsed; ``ConfigError`` naming a bad one."""
        out = []
        for text in self.trusted_networks.split(","):
            text = text.strip()
            if not text:
                continue
            try:
                out.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ConfigError(
                    f"trusted_networks: {text!r} is not a network (write CIDR, e.g. 10.0.0.0/8 or 192.168.1.7)"
                ) from None
        return tuple(out)


def normal_address(address: str) -> str:
    """``address`` in one spelling (an IPv4 address seen through an IPv6
    socket as the IPv4 address); a name or garbage as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


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

    __slots__ = (
        "_by_address",
        "_by_subnet",
        "_handshakes",
        "_handshakes_by_address",
        "_in_subnet",
        "_networks",
        "_trusted",
        "connections",
        "limits",
    )

    def __init__(self, limits: EdgeLimits | None = None, trusted: Iterable[str] = ()) -> None:
        self.limits = (limits or EdgeLimits()).validate()
        self.connections = 0
        self._handshakes = 0
        self._by_address: Counter[str] = Counter()
        self._by_subnet: Counter[str] = Counter()
        self._in_subnet: Counter[str] = Counter()
        """Address -> its connections counted in its subnet (admitted while unknown)."""
        self._handshakes_by_address: Counter[str] = Counter()
        self._networks = self.limits.networks()
        self._trusted: set[str] = set()
        for address in trusted:
            self.trust(address)

    def _subnet(self, address: str) -> str:
        return subnet_of(address, self.limits.subnet_prefix_v4, self.limits.subnet_prefix_v6)

    def trust(self, address: str) -> None:
        """``address`` is a member's (configured, or a member authenticated
        from it): from now on its connections get the member limit. Only IP
        addresses are kept (the transport sees peers by address, not name);
        there are at most as many as the members' addresses seen."""
        try:
            ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return
        self._trusted.add(normal_address(address))

    def known(self, address: str) -> bool:
        """True for an address of a member or inside ``trusted_networks``."""
        address = normal_address(address)
        if address in self._trusted:
            return True
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def admit(self, address: str) -> Refusal | None:
        """A connection from ``address`` arrived: take a connection and a
        handshake slot for it, or say why not (then nothing is taken)."""
        limits = self.limits
        subnet = self._subnet(address)
        known = self.known(address)
        if self.connections >= limits.max_connections:
            return Refusal("refused_connections_total", f"{self.connections} connections held (limit {limits.max_connections})")
        cap = limits.max_connections_per_member_address if known else limits.max_connections_per_address
        if self._by_address[address] >= cap:
            return Refusal(
                "refused_connections_per_address",
                f"{address} holds {self._by_address[address]} connections "
                f"(limit {cap} for {'a member' if known else 'an unknown'} address)",
            )
        if not known and self._by_subnet[subnet] >= limits.max_connections_per_subnet:
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
        if not known:
            self._by_subnet[subnet] += 1
            self._in_subnet[address] += 1
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
        if self._in_subnet[address] > 0:
            self._drop(self._in_subnet, address)
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
