"""quorate: agreement and shared state for groups of processes.

Protocol cores are sans-IO state machines (see ``quorate.core``); runtimes in
``quorate.runtime`` drive them. This module re-exports the public API only.
"""

from quorate.client import Client, connect
from quorate.core import Accepted, Entry, ProtocolCore, ReadState, Ready, Redirect, Refused
from quorate.errors import (
    ConfigError,
    InvariantViolation,
    LocalProtocolError,
    QuorateError,
    RemoteProtocolError,
)
from quorate.ids import ClientId, NodeId

__version__ = "0.1.0"

__all__ = [
    "Accepted",
    "Client",
    "ClientId",
    "ConfigError",
    "Entry",
    "InvariantViolation",
    "LocalProtocolError",
    "NodeId",
    "ProtocolCore",
    "QuorateError",
    "ReadState",
    "Ready",
    "Redirect",
    "Refused",
    "RemoteProtocolError",
    "__version__",
    "connect",
]
