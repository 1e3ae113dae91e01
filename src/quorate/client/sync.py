"""``Client``: the blocking face of ``AsyncClient``.

Theory of operation: the client owns one event loop running in a daemon
thread for its whole life; each method submits the matching ``AsyncClient``
coroutine to that loop (``run_coroutine_threadsafe``) and waits for it. One
loop per client (rather than ``asyncio.run`` per call) keeps connections open
between calls, so a call costs one round trip, not a TCP and TLS handshake,
and the client works the same whether or not the caller has a loop of its own.
``close`` (or leaving the ``with`` block) closes the connections and stops
the thread. Every guarantee of ``AsyncClient`` holds: the same ``(client,
seq)`` through retries, linearizable reads, one call at a time per client.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

from quorate.client.aio import AsyncClient
from quorate.client.contact import DEFAULT_DEADLINE_S, DEFAULT_TIMEOUT_S
from quorate.runtime.aio.admin import StatusReply
from quorate.runtime.aio.config import Address
from quorate.runtime.aio.tls import TlsConfig

T = TypeVar("T")


class Client:
    """Blocking key-value client; arguments as for ``AsyncClient``
    (``Client()`` reaches the local cluster in ``./quorate-cluster``)."""

    def __init__(
        self,
        endpoints: Iterable[str | Address] | None = None,
        *,
        cluster: str | Path | None = None,
        tls: TlsConfig | str | Path | None = None,
        tls_name: str = "client",
        insecure: bool = False,
        client_id: int | None = None,
        namespace: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        # Built (and validated) before the thread starts, so a bad argument
        # raises here and leaves nothing running.
        self._client = AsyncClient(
            endpoints,
            cluster=cluster,
            tls=tls,
            tls_name=tls_name,
            insecure=insecure,
            client_id=client_id,
            namespace=namespace,
            timeout_s=timeout_s,
            deadline_s=deadline_s,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="quorate-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def client_id(self) -> int:
        return self._client.client_id

    @property
    def async_client(self) -> AsyncClient:
        """The ``AsyncClient`` this client drives (use it only through ``run``)."""
        return self._client

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on this client's loop and wait for its result."""
        return self._run(coroutine)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def put(
        self, key: str, value: str, *, namespace: str | None = None, ttl_s: float | None = None
    ) -> None:
        self._run(self._client.put(key, value, namespace=namespace, ttl_s=ttl_s))

    def get(self, key: str, *, namespace: str | None = None) -> str | None:
        return self._run(self._client.get(key, namespace=namespace))

    def delete(self, key: str, *, namespace: str | None = None) -> bool:
        return self._run(self._client.delete(key, namespace=namespace))

    def cas(
        self, key: str, expected: str | None, new: str, *, namespace: str | None = None
    ) -> tuple[bool, str | None]:
        return self._run(self._client.cas(key, expected, new, namespace=namespace))

    def list(
        self, prefix: str = "", *, namespace: str | None = None, limit: int = 1000
    ) -> list[tuple[str, str]]:
        return self._run(self._client.list(prefix, namespace=namespace, limit=limit))

    def status(self, endpoint: str | Address) -> StatusReply:
        return self._run(self._client.status(endpoint))

    def reachable(self) -> StatusReply:
        """The first endpoint's ``Status``; ``ClusterUnreachable`` when none answers."""
        return self._run(self._client.reachable())

    @property
    def endpoints(self) -> builtins.list[Address]:
        return self._client.endpoints

    def admin(self, action: str, node: int, address: str = "") -> None:
        self._run(self._client.admin(action, node, address))

    def change_members(
        self,
        *,
        add: dict[int, str] | None = None,
        remove: Iterable[int] = (),
        add_learners: dict[int, str] | None = None,
        quorum: tuple[int, int] | None = None,
        transition: str = "auto",
    ) -> None:
        """Several members and/or quorum sizes at once (``AsyncClient.change_members``)."""
        self._run(
            self._client.change_members(
                add=add, remove=remove, add_learners=add_learners, quorum=quorum, transition=transition
            )
        )

    def close(self) -> None:
        if self._closed:
            return
        asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result()
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
