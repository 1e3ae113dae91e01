"""``quorate mcp``: the MCP server, on the official SDK's ``MCPServer``.

Theory of operation.

- *Tools* (``quorate.mcp.tools``) are registered with their typed
  parameters, so the SDK publishes input schemas and validates arguments
  (a missing or ill-typed argument is refused naming the field) and output
  schemas (every tool answers a JSON object). Each tool runs under
  ``_guarded``: a failure becomes a tool error with one line an agent can
  act on, never a stack trace, and the server keeps serving.
- *Resources.* Every memory namespace is a resource,
  ``quorate://memory/{namespace}`` (a JSON listing of its keys and values).
  A client that listens for updates of such a resource (the SDK's
  ``subscriptions/listen``) hears about every change to the namespace:
  a background task follows the store's change history with a watch
  (``quorate.state.watch``) from the revision it started at and publishes
  one ``ResourceUpdated`` per changed namespace, in revision order; after a
  lost connection it resumes from the next revision, so no change is
  missed. Agent namespaces (``@tasks``, ``@locks``, ``@proposals``,
  ``@agents``) are resources too, read-only.
- *Transports.* stdio (the default) or streamable HTTP. HTTP demands an
  authenticated caller: a bearer token (compared in constant time; any
  other request is answered 401 before it reaches MCP) or mutual TLS (the
  client presents a certificate of the given CA). ``serve_http`` refuses to
  start with neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

from quorate import __version__
from quorate.client.agents import AsyncWatches, WatchCompacted
from quorate.client.contact import ClientError, ClusterUnreachable
from quorate.errors import ConfigError
from quorate.mcp.backend import Backend
from quorate.mcp.shared import SharedObjects
from quorate.mcp.tools import (
    DEFAULT_NAMESPACE,
    LIST_MAX_RESULTS,
    TOOL_NAMES,
    Tools,
    reason_of,
    store_namespace,
)
from quorate.state.kv import List
from quorate.state.watch import WATCH_ALL_NAMESPACES

log = logging.getLogger("quorate.mcp")

RESOURCE_SCHEME = "quorate://memory/"
WATCH_IDLE_POLL_S = 0.1
WATCH_RETRY_S = 1.0
FOLLOWER_STOP_S = 2.0
"""How long shutdown waits for the change follower (it checks its stop flag at every pause)."""
INSTRUCTIONS = (
    "Shared, replicated state for agents. Keep memory with memory_usage; split work with task_orchestrate, "
    "task_claim (keep the token), task_heartbeat and task_complete; take locks with lock_acquire; decide "
    "together with consensus_propose and consensus_vote (ballots are signed: quorate agents sign); see the "
    "cluster with cluster_status and metrics_collect."
)


def _guarded(name: str, function: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Awaitable[dict[str, Any]]]:
    @functools.wraps(function)
    async def tool(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return await function(*args, **kwargs)
        except Exception as exc:
            reason = reason_of(exc)
            log.info("tool %s failed: %s", name, reason)
            raise ToolError(reason) from None

    return tool


class QuorateMcp:
    """The server object: the SDK's ``MCPServer`` with quorate's tools and resources."""

    def __init__(self, backend: Backend, *, replica: int | None = None) -> None:
        self.backend = backend
        self.bus = InMemorySubscriptionBus()
        self.shared = SharedObjects(replica if replica is not None else secrets.randbits(31) or 1, backend.execute)
        self.tools = Tools(backend, self.shared)
        self.server: MCPServer[Any] = MCPServer(
            "quorate",
            version=__version__,
            instructions=INSTRUCTIONS,
            subscriptions=self.bus,
            lifespan=self._lifespan,
        )
        for name in TOOL_NAMES:
            function = getattr(self.tools, name)
            self.server.add_tool(_guarded(name, function), name=name, description=function.__doc__)
        self.server.resource(
            f"{RESOURCE_SCHEME}{{namespace}}",
            name="memory namespace",
            description="The keys and values of one namespace of the replicated store (JSON).",
            mime_type="application/json",
        )(self._read_namespace)
        self.server.resource(
            f"{RESOURCE_SCHEME}{DEFAULT_NAMESPACE}",
            name="default memory",
            description="The default namespace of the replicated store (JSON).",
            mime_type="application/json",
        )(functools.partial(self._read_namespace, DEFAULT_NAMESPACE))
        self.revision = 0
        """The next revision the change follower asks for."""
        self._follower: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    async def _read_namespace(self, namespace: str) -> str:
        try:
            if namespace.startswith("@"):
                listing: dict[str, Any] = {"namespace": namespace, "events": []}
                events, _ = await AsyncWatches(self.backend.execute).poll(namespace=namespace, from_revision=1)
                listing["events"] = events
                return json.dumps(listing)
            result = await self.backend.execute(List("", store_namespace(namespace), LIST_MAX_RESULTS), write=False)
        except (ClusterUnreachable, TimeoutError, ClientError, WatchCompacted) as exc:
            raise ValueError(reason_of(exc)) from None
        items = [{"key": k, "value": v} for k, v in result.items or []]
        return json.dumps({"namespace": namespace, "entries": items, "count": len(items)})

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Any) -> Any:
        self._stopping = asyncio.Event()
        self._follower = asyncio.ensure_future(self.follow_changes())
        try:
            yield {}
        finally:
            # A stop flag as well as the cancellation: a cancellation delivered
            # while the transport's task group unwinds can be absorbed on the
            # way, and the server must still exit when its stdin closes.
            self._stopping.set()
            self._follower.cancel()
            await asyncio.wait({self._follower}, timeout=FOLLOWER_STOP_S)

    async def follow_changes(self) -> None:
        """Publish ``ResourceUpdated`` for each namespace a committed change touched."""
        watches = AsyncWatches(self.backend.watch_execute)
        pause = WATCH_IDLE_POLL_S
        stopping = self._stopping or asyncio.Event()
        while not stopping.is_set():
            try:
                if self.revision == 0:
                    _, self.revision = await watches.poll(namespace=WATCH_ALL_NAMESPACES)
                events, self.revision = await watches.poll(namespace=WATCH_ALL_NAMESPACES, from_revision=self.revision)
            except WatchCompacted as exc:
                self.revision = exc.oldest  # changes were missed: say every namespace we knew changed
                await self.bus.publish(ResourceUpdated(uri=f"{RESOURCE_SCHEME}{DEFAULT_NAMESPACE}"))
                continue
            except (ClusterUnreachable, TimeoutError, ClientError, OSError):
                await _pause(stopping, WATCH_RETRY_S)
                continue
            touched = dict.fromkeys(e["namespace"] or DEFAULT_NAMESPACE for e in events)
            for namespace in touched:
                await self.bus.publish(ResourceUpdated(uri=f"{RESOURCE_SCHEME}{namespace}"))
            if events:
                await asyncio.sleep(0)
            else:
                await _pause(stopping, pause)

    # -- transports -----------------------------------------------------------------------
    async def serve_stdio(self) -> None:
        await self.server.run_stdio_async()

    async def serve_http(
        self,
        host: str,
        port: int,
        *,
        token: str | None = None,
        tls_dir: Path | None = None,
        tls_name: str = "mcp",
    ) -> None:
        """Streamable HTTP at ``/mcp``, for callers with ``token`` or a client
        certificate of ``tls_dir``'s CA (mutual TLS)."""
        import uvicorn

        if not token and tls_dir is None:
            raise ConfigError("HTTP needs a bearer token (--token or QUORATE_MCP_TOKEN) or mutual TLS (--mtls-dir)")
        app: Any = self.server.streamable_http_app(host=host)
        if token:
            app = BearerTokenGate(app, token)
        options: dict[str, Any] = {}
        if tls_dir is not None:
            ca, cert, key = tls_dir / "ca.crt", tls_dir / f"{tls_name}.crt", tls_dir / f"{tls_name}.key"
            for path in (ca, cert, key):
                if not path.is_file():
                    raise ConfigError(f"TLS file not found: {path} (make it with 'quorate certs issue {tls_name}')")
            options = {
                "ssl_certfile": str(cert),
                "ssl_keyfile": str(key),
                "ssl_ca_certs": str(ca),
                "ssl_cert_reqs": ssl.CERT_REQUIRED,
            }
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", **options)
        await uvicorn.Server(config).serve()


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stopping`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


class BearerTokenGate:
    """ASGI middleware: HTTP requests without ``Authorization: Bearer <token>`` get 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps(
                    {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": "unauthorized: a valid bearer token is required"}}
                ).encode()
                await send({
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                })
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


__all__ = ["RESOURCE_SCHEME", "BearerTokenGate", "QuorateMcp"]
