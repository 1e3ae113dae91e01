"""Clients of a quorate cluster: ``AsyncClient`` (asyncio) and ``Client``
(blocking, its own loop in a thread). Re-exports only."""

from quorate.client.agents import (
    AsyncLocks,
    AsyncTasks,
    AsyncVotes,
    AsyncWatches,
    Refused,
    WatchCompacted,
)
from quorate.client.aio import AsyncClient
from quorate.client.connect import Connection, connect
from quorate.client.contact import ClientError, ClusterUnreachable, new_client_id, parse_endpoints
from quorate.client.identity import AgentIdentity
from quorate.client.sync import Client

__all__ = [
    "AgentIdentity",
    "AsyncClient",
    "AsyncLocks",
    "AsyncTasks",
    "AsyncVotes",
    "AsyncWatches",
    "Client",
    "ClientError",
    "ClusterUnreachable",
    "Connection",
    "Refused",
    "WatchCompacted",
    "connect",
    "new_client_id",
    "parse_endpoints",
]
