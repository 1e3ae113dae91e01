"""``quorate mcp``: serve the MCP tools over stdio (default) or streamable HTTP.

Backing cluster: ``--endpoints`` (with ``--tls-dir`` or ``--insecure``, or
a cluster directory with ``--dir``), or by default an embedded local
3-node cluster in ``--data-dir`` (created on first run, started when it is
not running, stopped when the server exits). HTTP needs ``--token`` (or
``QUORATE_MCP_TOKEN``) or ``--mtls-dir`` (a CA and a server certificate
named ``mcp``; clients present a certificate of that CA); without either
it refuses to start. Nothing but the MCP protocol goes to stdout.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from quorate.cli.main import app, fail, missing_module, missing_package
from quorate.client.contact import DEFAULT_DEADLINE_S, DEFAULT_TIMEOUT_S, parse_endpoints
from quorate.errors import ConfigError

DEFAULT_DATA_DIR = Path("quorate-mcp")


@app.command("mcp")
def mcp_command(
    transport: Annotated[str, typer.Option("--transport", help="stdio or http.")] = "stdio",
    host: Annotated[str, typer.Option("--host", help="HTTP: listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP: listen port.")] = 8765,
    token: Annotated[
        str | None, typer.Option("--token", envvar="QUORATE_MCP_TOKEN", help="HTTP: the bearer token callers must send.")
    ] = None,
    mtls_dir: Annotated[
        Path | None, typer.Option("--mtls-dir", help="HTTP: mutual TLS with ca.crt and mcp.crt/.key here.")
    ] = None,
    endpoints: Annotated[str | None, typer.Option("--endpoints", help="A running cluster: host:port,...")] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="A running cluster's directory.")] = None,
    tls_dir: Annotated[Path | None, typer.Option("--tls-dir", help="The cluster's client certificates.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain TCP to the cluster.")] = False,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The embedded cluster's directory (without --endpoints/--dir).")
    ] = DEFAULT_DATA_DIR,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds a tool call may wait for the cluster.")] = DEFAULT_DEADLINE_S,
    replica: Annotated[int | None, typer.Option("--replica", help="This server's CRDT replica id (default: random).")] = None,
) -> None:
    """Serve quorate's MCP tools (memory, tasks, locks, signed votes, CRDTs, metrics)."""
    if transport not in ("stdio", "http"):
        raise fail(f"--transport must be stdio or http, got {transport!r}")
    if transport == "http" and not token and mtls_dir is None:
        raise fail("HTTP needs a bearer token (--token or QUORATE_MCP_TOKEN) or mutual TLS (--mtls-dir)")
    if not timeout_s > 0:
        raise fail(f"--timeout must be > 0 seconds, got {timeout_s}")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="quorate mcp: %(message)s")
    try:
        from quorate.mcp.backend import Backend, EmbeddedCluster
        from quorate.mcp.server import QuorateMcp
    except ImportError as exc:
        if missing_package(exc) is None:
            raise
        raise fail(f"quorate mcp needs the MCP SDK: {missing_module(exc)}") from None

    embedded: EmbeddedCluster | None = None
    options: dict[str, Any]
    try:
        if endpoints is None and directory is None:
            embedded = EmbeddedCluster(data_dir)
            embedded.start()
            options = embedded.client_options()
        else:
            options = {
                "endpoints": None if endpoints is None else parse_endpoints(endpoints),
                "cluster": directory,
                "tls": tls_dir,
                "insecure": insecure,
            }
        options.update(timeout_s=min(DEFAULT_TIMEOUT_S, timeout_s), deadline_s=timeout_s)
        from quorate.client.aio import AsyncClient

        AsyncClient(**options)  # validate endpoints and TLS files now, in one line
    except ConfigError as exc:
        if embedded is not None:
            embedded.stop()
        raise fail(str(exc)) from None
    backend = Backend(options)
    server = QuorateMcp(backend, replica=replica)

    async def serve() -> None:
        try:
            if transport == "stdio":
                await server.serve_stdio()
            else:
                await server.serve_http(host, port, token=token, tls_dir=mtls_dir)
        finally:
            await backend.close()

    try:
        asyncio.run(serve())
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        if embedded is not None:
            embedded.stop()
