"""Free loopback ports for local clusters, chosen outside the ephemeral range.

Theory of operation: asking the kernel for a free port (binding port 0)
returns one from its *ephemeral* range, the range it also draws the source
port of every outgoing connection from. A local cluster keeps its ports for
its whole life, and while one of its nodes is down (killed, restarting) that
port is free for the kernel to hand to any outgoing connection on the
machine — a peer redialling the node included, which then connects to itself
(TCP simultaneous open). The node cannot listen again until that connection
ends, and a test or demo that restarted it waits in vain. Ports below the
ephemeral range are only ever taken by an explicit bind, so a block chosen
there stays free for as long as nobody else binds it.

``free_port_block`` picks ``count`` consecutive ports in
``[LOWEST_PORT, start of the ephemeral range)`` that can all be bound now.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
LOWEST_PORT = 20000
"""Below this, ports are commonly assigned to services."""
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_START = 32768
"""Linux's default when the range cannot be read (other systems start higher)."""
ATTEMPTS = 200


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range."""
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_START


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a listening node does
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(count: int, host: str = LOOPBACK, rng: random.Random | None = None) -> int:
    """The first of ``count`` consecutive ports on ``host`` below the
    ephemeral range that are free now; ``OSError`` if none is found."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = rng or random.Random()
    highest_base = ephemeral_start() - count
    if highest_base < LOWEST_PORT:
        raise OSError(f"no room for {count} ports below the ephemeral range")
    for _ in range(ATTEMPTS):
        base = rng.randrange(LOWEST_PORT, highest_base + 1)
        if all(_bindable(port, host) for port in range(base, base + count)):
            return base
    raise OSError(f"no {count} consecutive free ports on {host} below the ephemeral range")
