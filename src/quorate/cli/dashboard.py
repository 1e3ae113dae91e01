"""``quorate dashboard``: serve the live page of a running cluster.

Reads the cluster like ``quorate kv`` does (``--dir``, default
``./quorate-cluster``, or ``--endpoints`` with ``--tls-dir`` or
``--insecure``) and serves ``http://HOST:PORT/`` (``quorate.dashboard``)
until Ctrl-C. It only reads the cluster. It listens on 127.0.0.1 unless
``--host`` says otherwise; it has no login, so expose it only where every
reader may see the cluster's state.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from quorate.cli.kv import Directory, Endpoints, Insecure, TlsDir, TlsName, _target
from quorate.cli.main import app, fail, missing_module, missing_package
from quorate.client.contact import DEFAULT_DEADLINE_S

DEFAULT_PORT = 8642


def serve_dashboard(client_options: dict[str, object], host: str, port: int, interval_s: float) -> None:
    """Run the dashboard until interrupted (imports its web stack lazily)."""
    import uvicorn

    from quorate.dashboard.app import Sampler, build_app

    sampler = Sampler(dict(client_options), interval_s)
    config = uvicorn.Config(build_app(sampler), host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    asyncio.run(server.serve())


@app.command("dashboard")
def dashboard_command(
    directory: Directory = None,
    endpoints: Endpoints = None,
    insecure: Insecure = False,
    tls_dir: TlsDir = None,
    tls_name: TlsName = "client",
    host: Annotated[str, typer.Option("--host", help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Listen port.")] = DEFAULT_PORT,
    interval_s: Annotated[float, typer.Option("--interval", help="Seconds between samples of the cluster.")] = 0.5,
) -> None:
    """A live page: nodes and roles, the leader, throughput and latency, events."""
    if not 0 < port < 65536:
        raise fail(f"--port must be 1..65535, got {port}")
    if not 0.05 <= interval_s <= 60:
        raise fail(f"--interval must be in 0.05..60 seconds, got {interval_s}")
    options = _target(directory, endpoints, insecure, tls_dir, tls_name, DEFAULT_DEADLINE_S).client_options()
    try:
        from quorate.client.aio import AsyncClient
        from quorate.errors import ConfigError

        try:
            AsyncClient(**options)  # endpoints and certificates checked now, in one line
        except ConfigError as exc:
            raise fail(str(exc)) from None
        typer.echo(f"dashboard on http://{host}:{port}/ (Ctrl-C stops it)", err=True)
        serve_dashboard(options, host, port, interval_s)
    except ImportError as exc:
        if missing_package(exc) is None:
            raise
        raise fail(f"quorate dashboard needs its web stack: {missing_module(exc)}") from None
    except OSError as exc:
        raise fail(f"cannot serve on {host}:{port}: {exc}") from None
    except KeyboardInterrupt:
        pass
