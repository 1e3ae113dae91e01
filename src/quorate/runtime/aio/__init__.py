"""Real nodes: asyncio TCP with length-prefixed frames, TLS 1.3 with mutual
authentication, SQLite storage, one core per node driven by ``driver.drive``."""

from quorate.runtime.aio.node import AioNode, event_loop_factory
from quorate.runtime.aio.protocols import (
    ProtocolBinding,
    protocol_binding,
    protocol_names,
    register_protocol,
)
from quorate.runtime.aio.tls import TlsConfig, certificate_names
from quorate.runtime.aio.transport import (
    ClientConnection,
    Hello,
    Transport,
    TransportConfig,
)

__all__ = [
    "AioNode",
    "ClientConnection",
    "Hello",
    "ProtocolBinding",
    "TlsConfig",
    "Transport",
    "TransportConfig",
    "certificate_names",
    "event_loop_factory",
    "protocol_binding",
    "protocol_names",
    "register_protocol",
]
