"""etcd as the yardstick: a local 3-member etcd cluster driven by the same
client model as ``quorate.bench.real``.

Theory of operation.

- *Install.* ``ensure_etcd()`` finds the ``etcd`` binary on ``PATH``. When it is
  missing and ``install=True``, it runs ``apt-get install -y etcd-server
  etcd-client`` (Debian/Ubuntu, needs root); when that is impossible it raises
  ``EtcdUnavailable`` with a message saying what to do, and the benchmark
  reports ``{"etcd": {"error": ...}}`` instead of failing.
- *Cluster.* ``EtcdCluster`` starts ``members`` etcd processes on loopback in
  a temporary directory, each with its own data dir. etcd's defaults are kept,
  in particular its WAL fsync on every batch (``--unsafe-no-fsync`` is never
  passed), so the comparison is durable write against durable write.
- *Client.* etcd v3 serves a JSON gateway on its client port
  (``POST /v3/kv/put`` with base64 key and value). ``EtcdHttpClient`` is a
  minimal HTTP/1.1 keep-alive client over asyncio streams: one connection,
  one request in flight, exactly like one ``AsyncClient`` session of ours.
  Clients talk to the leader (found through ``/v3/maintenance/status``), as
  ours do, so neither side pays a follower's forwarding hop.

What is measured is therefore the same thing on both sides: N concurrent
Python asyncio sessions, each doing sequential 100-byte puts and timing each
one from call to acknowledgement, spread over the same number of client
processes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ETCD_BINARY = "etcd"
APT_PACKAGES = ("etcd-server", "etcd-client")
APT_TIMEOUT_S = 600.0
ETCD_READY_WAIT_S = 30.0
ETCD_POLL_INTERVAL_S = 0.2
ETCD_STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 10.0
_CRLF = b"\r\n"


class EtcdUnavailable(RuntimeError):
    """etcd is not installed and could not be installed here."""


def ensure_etcd(install: bool = True) -> str:
    """The path of the ``etcd`` binary, installing the Debian package if asked."""
    found = shutil.which(ETCD_BINARY)
    if found is not None:
        return found
    if not install:
        raise EtcdUnavailable("etcd is not installed (apt-get install etcd-server etcd-client)")
    apt = shutil.which("apt-get")
    if apt is None:
        raise EtcdUnavailable(
            "etcd is not installed and apt-get is unavailable: install etcd 3.4+ on PATH"
        )
    for command in ([apt, "update"], [apt, "install", "-y", *APT_PACKAGES]):
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EtcdUnavailable(f"{' '.join(command)} failed: {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EtcdUnavailable(
                f"{' '.join(command)} exited {done.returncode}: {tail[0]} "
                "(installing etcd needs root; or put etcd 3.4+ on PATH)"
            )
    found = shutil.which(ETCD_BINARY)
    if found is None:
        raise EtcdUnavailable(f"{' '.join(APT_PACKAGES)} installed but no etcd on PATH")
    return found


def etcd_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or "").splitlines()[:1]
    return first[0].replace("etcd Version:", "").strip() if first else "unknown"


# ---------------------------------------------------------------- HTTP client
class EtcdHttpClient:
    """One keep-alive HTTP/1.1 connection to an etcd member's JSON gateway."""

    def __init__(self, host: str, port: int, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body; return the JSON answer. Raises ``OSError`` on any
        transport or HTTP failure (the connection is then dropped)."""
        try:
            return await asyncio.wait_for(self._post(path, body), self.timeout_s)
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            await self.close()
            raise OSError(f"etcd {path}: {exc!r}") from None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await self._connection()
        payload = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        head = await reader.readuntil(_CRLF + _CRLF)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            data = await _read_chunked(reader)
        else:
            raise ValueError("response without a length")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        if status != 200:
            raise ValueError(f"HTTP {status}: {data[:200]!r}")
        answer: dict[str, Any] = json.loads(data)
        return answer

    async def put(self, key: str, value: str) -> None:
        await self.post(
            "/v3/kv/put",
            {
                "key": base64.b64encode(key.encode()).decode(),
                "value": base64.b64encode(value.encode()).decode(),
            },
        )

    async def status(self) -> dict[str, Any]:
        return await self.post("/v3/maintenance/status", {})

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(_CRLF)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(_CRLF)
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(len(_CRLF))


# ---------------------------------------------------------------- cluster
@dataclass(slots=True)
class EtcdCluster:
    """``members`` etcd processes on loopback; client ports from ``base_port``,
    peer ports from ``base_port + 100``."""

    binary: str
    members: int = 3
    base_port: int = 23790
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="etcd-bench-")))
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    PEER_PORT_OFFSET = 100

    def client_port(self, i: int) -> int:
        return self.base_port + i

    def peer_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.base_port + self.PEER_PORT_OFFSET + i}"

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.client_port(i)) for i in range(self.members)]

    def start(self) -> None:
        initial = ",".join(f"e{i}={self.peer_url(i)}" for i in range(self.members))
        for i in range(self.members):
            client_url = f"http://127.0.0.1:{self.client_port(i)}"
            log = open(self.directory / f"e{i}.log", "ab")  # noqa: SIM115
            with log:
                self.processes.append(
                    subprocess.Popen(
                        [
                            self.binary,
                            "--name", f"e{i}",
                            "--data-dir", str(self.directory / f"e{i}"),
                            "--listen-client-urls", client_url,
                            "--advertise-client-urls", client_url,
                            "--listen-peer-urls", self.peer_url(i),
                            "--initial-advertise-peer-urls", self.peer_url(i),
                            "--initial-cluster", initial,
                            "--initial-cluster-state", "new",
                            "--initial-cluster-token", f"bench-{self.base_port}",
                            "--logger", "zap",
                            "--log-level", "error",
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                    )
                )

    async def leader_endpoint(self) -> tuple[str, int]:
        """Wait until the members agree on a leader; return its client endpoint."""
        deadline = time.monotonic() + ETCD_READY_WAIT_S
        last_error = "no answer"
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise EtcdUnavailable(
                        f"etcd exited with {process.returncode}; see {self.directory}"
                    )
            for host, port in self.endpoints:
                client = EtcdHttpClient(host, port, timeout_s=1.0)
                try:
                    status = await client.status()
                except OSError as exc:
                    last_error = str(exc)
                    continue
                finally:
                    await client.close()
                leader = status.get("leader")
                if leader and leader == status.get("header", {}).get("member_id"):
                    return host, port
            await asyncio.sleep(ETCD_POLL_INTERVAL_S)
        raise EtcdUnavailable(f"etcd elected no leader in {ETCD_READY_WAIT_S} s: {last_error}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(ETCD_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
