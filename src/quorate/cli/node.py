"""``quorate node --config node.toml [--protocol raft|pbft|hotstuff]``: run
one real node until told to stop (``--protocol`` overrides the file's).
``quorate node --print-config [--protocol P]`` prints a commented config
template instead (every field, its type, default and meaning; see
``quorate.runtime.aio.config_reference`` and ``docs/node-config.md``).
``--metrics-port PORT`` also serves Prometheus text at
``http://127.0.0.1:PORT/metrics`` (``quorate.observe.metrics``).

Theory of operation: the config is validated first (``load_node_config``), so
a mistake ends with one line on stderr and exit code 2 before anything binds
a port or touches the data directory. The node then runs an ``AioNode`` on an
asyncio loop until SIGTERM or SIGINT; either one closes the transport and the
SQLite store cleanly and exits 0. A failed start (port taken, a data
directory of another protocol or storage engine, a key that is not the
node's, PyNaCl missing) is one line on stderr and exit code 2. Everything the
node says is logged as JSON Lines (one object per record: time, level,
logger, message) to ``log_file`` or stderr, so refused TLS handshakes and
leadership changes can be read back by ``quorate cluster status`` and by
people. A PBFT or HotStuff node without ``keys_dir`` also prints a warning
on stderr: its keys derive from the shared test seed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from quorate.cli.main import app, fail, missing_module, missing_package
from quorate.errors import ConfigError
from quorate.ids import node_name
from quorate.observe.events import decision, event_fields
from quorate.protocols import byzantine_fault_tolerant
from quorate.runtime.aio.config import NodeConfig, format_address, load_node_config
from quorate.runtime.aio.config_reference import config_template
from quorate.runtime.aio.health import HealthServer
from quorate.runtime.aio.multiraft import MultiRaftNode, RangeLayout
from quorate.runtime.aio.node import SHARED_SEED_WARNING, AioNode, event_loop_factory
from quorate.runtime.aio.protocols import protocol_names
from quorate.runtime.aio.transport import TransportConfig


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record, for machines and ``grep`` alike."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in event_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(config: NodeConfig) -> None:
    handler: logging.Handler
    if config.log_file is not None:
        config.log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(config.log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLinesFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())


async def run_node(config: NodeConfig, metrics_listen: tuple[str, int] | None = None) -> None:
    """Run ``config``'s node until SIGTERM/SIGINT, then close it cleanly;
    with ``metrics_listen``, serve Prometheus text at ``/metrics`` there."""
    log = logging.getLogger("quorate.node")
    security = config.security_config()
    kind: Any = AioNode
    extra: dict[str, Any] = {}
    if config.ranges:
        kind = MultiRaftNode
        extra["layout"] = RangeLayout(config.ranges, config.replicas, config.split_at_ops)
    node = kind(
        config.id,
        config.peers,
        config.data_dir,
        listen=config.listen,
        protocol=config.protocol,
        protocol_options=(
            config.options if config.keys_dir is None else {**config.options, "keys_dir": str(config.keys_dir)}
        ),
        tls=config.tls(),
        insecure=config.insecure,
        read_mode=config.read_mode,
        snapshot_every=config.snapshot_every,
        storage_kind=config.storage,
        transport_config=TransportConfig(
            peer_rate_limit_msgs_per_s=config.peer_rate_limit,
            limits=security.limits,
            handshake_timeout_s=security.handshake_timeout_s,
        ),
        security=security.settings,
        max_inbox=security.max_inbox,
        **extra,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    metrics_server: asyncio.Server | None = None
    if metrics_listen is not None:
        from quorate.observe.metrics import NodeMetrics, serve_metrics

        metrics = NodeMetrics(node)
        node.persist_observer = metrics.observe_persist
        metrics_server = await serve_metrics(metrics, *metrics_listen)
    address = await node.start()
    health = (
        HealthServer(config.health_listen, node.status, lambda: len(node.transport_or_raise().connected_peers()))
        if config.health_listen
        else None
    )
    if health is not None:
        log.info("%s: /readyz and /livez on %s", node_name(config.id), format_address(await health.start()))
    if byzantine_fault_tolerant(config.protocol) and config.keys_dir is None and config.log_file is not None:
        # The node logged it; say it on stderr too, where a person looks first.
        print(f"quorate: warning: {node_name(config.id)}: {SHARED_SEED_WARNING}", file=sys.stderr)
    decision(
        log,
        "node.listening",
        "%s listening on %s (%s, %s)",
        node_name(config.id),
        format_address(address),
        config.protocol,
        "insecure" if config.insecure else "TLS 1.3",
        address=format_address(address),
        protocol=config.protocol,
        tls=not config.insecure,
    )
    try:
        await stop.wait()
    finally:
        uptime_s = time.monotonic() - started
        decision(
            log,
            "node.stopping",
            "%s stopping after %.1f s; counters %s",
            node_name(config.id),
            uptime_s,
            json.dumps(node.metrics, sort_keys=True),
            uptime_s=round(uptime_s, 3),
        )
        if health is not None:
            await health.close()
        if metrics_server is not None:
            metrics_server.close()
        await node.close()


@app.command("node")
def node_command(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="The node's TOML config file.")
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option("--protocol", help="raft, pbft, hotstuff or casper; overrides the config file's protocol."),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option("--print-config", help="Print a commented config template (for --protocol) and exit."),
    ] = False,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics at http://HOST:PORT/metrics.")
    ] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Listen address of --metrics-port.")] = "127.0.0.1",
) -> None:
    """Run one node of a cluster (until SIGTERM or Ctrl-C)."""
    if metrics_port is not None and not 0 < metrics_port < 65536:
        raise fail(f"--metrics-port must be a port number (1-65535), got {metrics_port}")
    if print_config:
        if protocol is not None and protocol not in protocol_names():
            raise fail(f"unknown protocol {protocol!r}; choose one of {', '.join(protocol_names())}")
        typer.echo(config_template(protocol or "raft"), nl=False)
        return
    if config is None:
        raise fail("give the node's config file with --config FILE (a template: quorate node --print-config)")
    try:
        node_config = load_node_config(config, {"protocol": protocol} if protocol is not None else None)
        node_config.data_dir.mkdir(parents=True, exist_ok=True)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot create the data directory: {exc}") from None
    configure_logging(node_config)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory(tls=not node_config.insecure)) as runner:
            runner.run(run_node(node_config, None if metrics_port is None else (metrics_host, metrics_port)))
    except ConfigError as exc:
        raise fail(f"{node_name(node_config.id)} cannot start: {exc}") from None
    except ImportError as exc:
        if missing_package(exc) is None:
            raise
        raise fail(f"{node_name(node_config.id)} cannot start: {missing_module(exc)}") from None
    except OSError as exc:
        # Most often the listen port is taken.
        raise fail(f"{node_name(node_config.id)} cannot start: {exc}") from None
