"""A local cluster of real node processes: configs, start, kill, stop.

Theory of operation: a cluster lives in one directory::

    DIR/cluster.json       what was asked for: nodes, ports, protocol, TLS or not
    DIR/n1.toml ...        each node's config (``quorate.runtime.aio.config``)
    DIR/n1/                each node's data (SQLite by default)
    DIR/n1.log             each node's JSON Lines log
    DIR/n1.stderr          what the process wrote to stderr (a failed start says why here)
    DIR/n1.pid             the process id while it runs
    DIR/certs/             the cluster CA, node certificates and the ``client``
                           certificate (unless insecure)
    DIR/keys/              per-node signing keys and the public-key registry
                           (with ``node_keys``: BFT signatures, the key registry)

``cluster_contact`` reads from ``cluster.json`` what a client needs (the
endpoints, the TLS directory, the protocol), so the ``quorate kv`` family and
``quorate.Client()`` work with no other argument in the directory where
``quorate cluster up`` ran (``DEFAULT_CLUSTER_DIR``).

Each node is its own OS process (``python -m quorate node --config n1.toml``)
in its own session, so a Ctrl-C at the terminal reaches the controlling
program, which then stops the nodes itself, in order. ``stop`` sends SIGTERM
and waits ``stop_timeout_s`` before SIGKILL; ``kill`` sends SIGKILL at once
(a crash, for fault tests). Pid files let another command (``quorate cluster
down``) find the processes; a pid is trusted only while its command line
still names this directory's config, so a recycled pid is never signalled.

Certificates are made by whoever creates the cluster (``quorate cluster up``
uses ``quorate certs``'s functions): this module only points nodes at them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name
from quorate.multiraft.messages import MULTIRAFT
from quorate.runtime.aio.config import NodeConfig, format_address

DEFAULT_CLUSTER_DIR = Path("quorate-cluster")
"""Where ``quorate cluster up`` writes a cluster and where clients look for one."""
LOOPBACK = "127.0.0.1"
DEFAULT_BASE_PORT = 7001
DEFAULT_STOP_TIMEOUT_S = 5.0
PROCESS_POLL_INTERVAL_S = 0.02
CLUSTER_FILE = "cluster.json"
CERTS_DIR = "certs"
KEYS_DIR = "keys"


@dataclass(slots=True)
class LocalCluster:
    """``nodes`` nodes on loopback ports ``base_port``, ``base_port + 1``...
    under ``directory``. ``options`` go to every node's protocol."""

    directory: Path
    nodes: int = 3
    base_port: int = DEFAULT_BASE_PORT
    insecure: bool = False
    protocol: str = "raft"
    options: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"
    node_keys: bool = False
    """Give each node its own signing key (``keys/``) instead of deriving
    every key from the shared ``key_seed`` option (BFT signatures and every
    node's key registry use them)."""
    metrics_base_port: int | None = None
    """Node ``i`` serves Prometheus metrics on ``metrics_base_port + i - 1``."""
    ranges: int = 0
    """Multi-Raft (Raft only): range groups at the start; 0 for one group."""
    replicas: int = 3
    """Multi-Raft: replicas of each range and of the meta group."""
    split_at_ops: int = 0
    """Multi-Raft: a range splits after this many writes (0: never)."""
    processes: dict[NodeId, subprocess.Popen[bytes]] = field(default_factory=dict)
    stderr_offsets: dict[NodeId, int] = field(default_factory=dict)
    """Where each started process's stderr begins in its (appended) file."""

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).resolve()
        if self.nodes < 1:
            raise ConfigError(f"a cluster needs at least 1 node, got {self.nodes}")
        if not 1024 <= self.base_port <= 65535 - self.nodes:
            raise ConfigError(f"base port must leave room for {self.nodes} ports in 1024..65535")
        if self.metrics_base_port is not None and not 1024 <= self.metrics_base_port <= 65535 - self.nodes:
            raise ConfigError(f"the metrics base port must leave room for {self.nodes} ports in 1024..65535")

    # ------------------------------------------------------------ layout
    @property
    def ids(self) -> list[NodeId]:
        return [NodeId(i) for i in range(1, self.nodes + 1)]

    def address(self, node: NodeId) -> tuple[str, int]:
        return (LOOPBACK, self.base_port + node - 1)

    @property
    def endpoints(self) -> list[str]:
        return [format_address(self.address(n)) for n in self.ids]

    @property
    def tls_dir(self) -> Path | None:
        return None if self.insecure else self.directory / CERTS_DIR

    def config_path(self, node: NodeId) -> Path:
        return self.directory / f"{node_name(node)}.toml"

    def log_path(self, node: NodeId) -> Path:
        return self.directory / f"{node_name(node)}.log"

    def stderr_path(self, node: NodeId) -> Path:
        return self.directory / f"{node_name(node)}.stderr"

    def pid_path(self, node: NodeId) -> Path:
        return self.directory / f"{node_name(node)}.pid"

    def node_config(self, node: NodeId) -> NodeConfig:
        return NodeConfig(
            id=node,
            listen=self.address(node),
            peers={p: self.address(p) for p in self.ids if p != node},
            data_dir=self.directory / node_name(node),
            tls_dir=self.tls_dir,
            insecure=self.insecure,
            protocol=self.protocol,
            keys_dir=self.directory / KEYS_DIR if self.node_keys else None,
            log_file=self.log_path(node),
            log_level=self.log_level,
            options=dict(self.options),
            ranges=self.ranges,
            replicas=self.replicas,
            split_at_ops=self.split_at_ops,
        )

    def write_configs(self) -> None:
        """Write ``cluster.json`` and every node's config file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        description = {
            "nodes": self.nodes,
            "base_port": self.base_port,
            "insecure": self.insecure,
            "protocol": self.protocol,
            "options": self.options,
            "log_level": self.log_level,
            "node_keys": self.node_keys,
            "metrics_base_port": self.metrics_base_port,
        }
        if self.ranges:
            description.update(ranges=self.ranges, replicas=self.replicas, split_at_ops=self.split_at_ops)
        (self.directory / CLUSTER_FILE).write_text(json.dumps(description, indent=2) + "\n")
        if self.node_keys:
            from quorate.crypto.keyfiles import issue_node_key, key_file

            for node in self.ids:
                if not key_file(self.directory / KEYS_DIR, node).exists():  # keys outlive restarts
                    issue_node_key(self.directory / KEYS_DIR, node)
        for node in self.ids:
            self.config_path(node).write_text(self.node_config(node).to_toml())

    @classmethod
    def open(cls, directory: str | Path) -> LocalCluster:
        """The cluster ``write_configs`` described in ``directory``."""
        path = Path(directory) / CLUSTER_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"no cluster in {directory} (no {CLUSTER_FILE} there): start one with "
                f"'quorate cluster up --dir {directory}', or give the nodes' endpoints"
            ) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        try:
            return cls(
                Path(directory),
                nodes=int(raw["nodes"]),
                base_port=int(raw["base_port"]),
                insecure=bool(raw["insecure"]),
                protocol=str(raw.get("protocol", "raft")),
                options=dict(raw.get("options", {})),
                log_level=str(raw.get("log_level", "info")),
                node_keys=bool(raw.get("node_keys", False)),
                metrics_base_port=None if raw.get("metrics_base_port") is None else int(raw["metrics_base_port"]),
                ranges=int(raw.get("ranges", 0)),
                replicas=int(raw.get("replicas", 3)),
                split_at_ops=int(raw.get("split_at_ops", 0)),
            )
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path} is not a cluster description ({exc!r})") from None

    def contact(self) -> ClusterContact:
        return ClusterContact(
            self.directory, self.endpoints, self.tls_dir, self.insecure, MULTIRAFT if self.ranges else self.protocol
        )

    def metrics_url(self, node: NodeId) -> str | None:
        """Where ``node`` serves ``/metrics`` (None: it does not)."""
        if self.metrics_base_port is None:
            return None
        return f"http://{LOOPBACK}:{self.metrics_base_port + node - 1}/metrics"

    def metrics_args(self, node: NodeId) -> list[str]:
        if self.metrics_base_port is None:
            return []
        return ["--metrics-port", str(self.metrics_base_port + node - 1)]

    # ------------------------------------------------------------ processes
    def start(self, node: NodeId) -> int:
        """Start ``node``'s process; return its pid."""
        if self.running(node):
            raise ConfigError(f"{node_name(node)} is already running (pid {self.pid(node)})")
        stderr = open(self.stderr_path(node), "ab")  # noqa: SIM115
        with stderr:
            self.stderr_offsets[node] = stderr.tell()
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "quorate", "node",
                    "--config", str(self.config_path(node)),
                    "--protocol", self.protocol,
                    *self.metrics_args(node),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        self.processes[node] = process
        self.pid_path(node).write_text(f"{process.pid}\n")
        return process.pid

    def exit_reason(self, node: NodeId) -> str | None:
        """Why the process this object started for ``node`` ended: the last
        line it wrote to stderr (or its exit status); ``None`` while it runs
        or when this object did not start it."""
        process = self.processes.get(node)
        if process is None or process.poll() is None:
            return None
        try:
            with open(self.stderr_path(node), "rb") as f:
                f.seek(self.stderr_offsets.get(node, 0))
                lines = f.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        last = last.removeprefix("quorate: error: ")
        return last or f"the process exited with status {process.returncode}"

    def start_all(self) -> None:
        for node in self.ids:
            if not self.running(node):
                self.start(node)

    def pid(self, node: NodeId) -> int | None:
        """The pid of ``node``'s live process, or ``None``."""
        process = self.processes.get(node)
        if process is not None:
            return process.pid if process.poll() is None else None
        try:
            pid = int(self.pid_path(node).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid, node) else None

    def _is_ours(self, pid: int, node: NodeId) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return str(self.config_path(node)).encode() in cmdline

    def running(self, node: NodeId) -> bool:
        return self.pid(node) is not None

    def kill(self, node: NodeId, signum: int = signal.SIGKILL) -> None:
        """Send ``signum`` (SIGKILL: a crash) to ``node`` and reap it."""
        pid = self.pid(node)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        if signum == signal.SIGKILL:
            self._wait_gone(node, pid, DEFAULT_STOP_TIMEOUT_S)
            self.pid_path(node).unlink(missing_ok=True)

    def stop(self, node: NodeId, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``; True if it stopped cleanly."""
        pid = self.pid(node)
        if pid is None:
            self.pid_path(node).unlink(missing_ok=True)
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        clean = self._wait_gone(node, pid, timeout_s)
        if not clean:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(node, pid, timeout_s)
        self.pid_path(node).unlink(missing_ok=True)
        return clean

    def stop_all(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> dict[NodeId, bool]:
        for node in self.ids:
            pid = self.pid(node)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        return {node: self.stop(node, timeout_s) for node in self.ids}

    def kill_all(self) -> None:
        for node in self.ids:
            self.kill(node)

    def _wait_gone(self, node: NodeId, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        process = self.processes.get(node)
        while time.monotonic() < deadline:
            if process is not None and process.pid == pid:
                if process.poll() is not None:
                    return True
            elif not self._is_ours(pid, node) or _is_zombie(pid):
                return True
            time.sleep(PROCESS_POLL_INTERVAL_S)
        return False

    # ------------------------------------------------------------ logs
    def log_records(self, node: NodeId) -> Iterator[dict[str, Any]]:
        """The JSON records of ``node``'s log (unparseable lines are skipped)."""
        try:
            with open(self.log_path(node), encoding="utf-8", errors="replace") as f:
                for line in f:
                    with contextlib.suppress(ValueError):
                        record = json.loads(line)
                        if isinstance(record, dict):
                            yield record
        except FileNotFoundError:
            return

    def refusals(self, node: NodeId) -> list[str]:
        """Log messages of refused connections (TLS, wrong peer, spoofing...)."""
        words = (
            "tls_refused",
            "peer_name_mismatch",
            "unknown_peer",
            "wrong_peer",
            "sender_spoofed",
        )
        return [
            r["msg"]
            for r in self.log_records(node)
            if any(w in str(r.get("msg", "")) for w in words)
        ]


@dataclass(frozen=True, slots=True)
class ClusterContact:
    """What a client needs to reach a local cluster."""

    directory: Path
    endpoints: list[str]
    tls_dir: Path | None
    """The cluster's certificates (``ca.crt``, ``client.crt``...); ``None`` when insecure."""
    insecure: bool
    protocol: str


def cluster_contact(directory: str | Path = DEFAULT_CLUSTER_DIR) -> ClusterContact:
    """How to reach the cluster ``quorate cluster up`` wrote in ``directory``;
    ``ConfigError`` (saying how to make one) when there is none."""
    return LocalCluster.open(directory).contact()


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``condition`` until true or ``timeout_s`` passes; return the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` from ``/proc`` (Linux), or ``None``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    # After the command name: state is field 0, utime 11, stime 12.
    return (int(fields[11]) + int(fields[12])) / ticks


SUMMARY_TRANSPORT_COUNTERS = (
    "tls_refused",
    "peer_name_mismatch",
    "unknown_peer",
    "wrong_peer",
    "peer_refused",
    "handshake_failures",
    "send_queue_drops",
    "malformed_messages",
    "oversize_frames",
    "refused_connections_total",
    "refused_connections_per_address",
    "refused_connections_per_subnet",
    "refused_handshakes",
    "refused_handshakes_per_address",
    "handshake_timeouts",
    "frame_timeouts",
    "rate_limited_drops",
    "client_rate_limited_drops",
)
SUMMARY_NODE_COUNTERS = (
    "inbox_drops",
    "security.admission_rate_limited",
    "security.admissions_refused",
    "security.revoked_messages_dropped",
    "keys.refused",
    "votes.refused",
)


def summarize_metrics(metrics: Mapping[str, int]) -> dict[str, int]:
    """The counters an operator looks at first: refusals and drops, at the
    wire (named without their ``transport.`` prefix) and above it."""
    out = {k: metrics.get(f"transport.{k}", 0) for k in SUMMARY_TRANSPORT_COUNTERS}
    out |= {k: metrics.get(k, 0) for k in SUMMARY_NODE_COUNTERS}
    return {k: v for k, v in out.items() if v}
