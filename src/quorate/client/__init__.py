"""Clients of a quorate cluster: ``AsyncClient`` (asyncio) and ``Client``
(blocking, its own loop in a thread). Re-exports only."""

from quorate.client.aio import AsyncClient
from quorate.client.contact import ClientError, ClusterUnreachable, new_client_id, parse_endpoints
from quorate.client.sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "ClusterUnreachable",
    "new_client_id",
    "parse_endpoints",
]
