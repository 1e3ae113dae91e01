"""Resource timelines of the node processes (and of the simulated nodes).

Theory of operation. A ``ProcessSampler`` runs a thread that, every
``interval_s`` (1 s), reads for each node process:

- CPU: user + system seconds from ``psutil`` (all threads), as a percentage
  of one core over the interval (a CPython process rarely gets more than one
  core's worth: the GIL);
- memory: resident set size;
- disk: bytes the process caused to be written to storage and its write
  system calls (``/proc/<pid>/io`` through ``psutil``);
- fsyncs and progress: the node's own count of durable writes (``persists``:
  each is one transaction and one fsync) and its applied index, from the
  ``Status`` call when a ``poll_status`` function is given;
- network: bytes sent and received on the process's TCP sockets and the
  bytes waiting in their kernel send queues, from ``ss -tinpH`` (the kernel's
  ``tcp_info`` per socket, mapped to processes). Counters are per socket, so
  rates are deltas per socket summed per process; a socket that closed
  between samples drops out rather than going negative.

plus the whole machine's busy CPU share (``host``: on a shared machine the
other tenants' load is part of the picture), and it times a small append + ``fdatasync`` to a file on the nodes' file
system (the *fsync probe*, appending as a log does), so a report can say how long a flush costs there while the
load runs. Each sample is a flat dict of numbers; ``rates`` turns counters
into per-second rates between consecutive samples. ``timeline()`` returns
``{node: [sample, ...]}`` with ``t_s`` relative to the sampler's start.

``SimSampler`` gives the simulator the same shape from simulated time: per
node the simulated CPU busy fraction (the cost model's work), the inbox
waiting for that CPU, and durable writes per second (the storage's write
count). Memory and network are not modelled per node by the simulator and
are left out rather than made up.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from quorate.ids import node_name

SAMPLE_INTERVAL_S = 1.0
HOST = "host"
"""The whole machine (busy share of all its cores), sampled beside the nodes."""
FSYNC_PROBE_BYTES = 128
SS_TIMEOUT_S = 5.0
MB = 1_000_000
_PID = re.compile(r"pid=(\d+)")
_BYTES_SENT = re.compile(r"\bbytes_sent:(\d+)")
_BYTES_RECEIVED = re.compile(r"\bbytes_received:(\d+)")

Sample = dict[str, float]
Timeline = dict[str, list[Sample]]


def socket_counters() -> dict[tuple[int, str], tuple[int, int, int]] | None:
    """``(pid, socket) -> (bytes_sent, bytes_received, send_queue_bytes)`` for
    every TCP socket of this network namespace, or ``None`` without ``ss``."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        text = subprocess.run(
            [ss, "-tinpH"], capture_output=True, text=True, timeout=SS_TIMEOUT_S, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    out: dict[tuple[int, str], tuple[int, int, int]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith((" ", "\t")):
            header = line.split()
            continue
        if header is None or len(header) < 5:
            continue
        pids = _PID.findall(" ".join(header[5:]))
        sent = _BYTES_SENT.search(line)
        received = _BYTES_RECEIVED.search(line)
        socket_id = f"{header[3]}>{header[4]}"
        send_queue = int(header[2]) if header[2].isdigit() else 0
        for pid in {int(p) for p in pids}:
            out[(pid, socket_id)] = (
                int(sent.group(1)) if sent else 0,
                int(received.group(1)) if received else 0,
                send_queue,
            )
        header = None
    return out


class FsyncProbe:
    """Times a small append + ``fdatasync`` to one file in ``directory``, the
    way a log appends (a fresh file per probe would also flush its inode and
    directory entry, and overstate what a node's write costs)."""

    def __init__(self, directory: Path) -> None:
        self._fd: int | None = None
        self._name = ""
        with contextlib.suppress(OSError):
            self._fd, self._name = tempfile.mkstemp(prefix=".fsync-probe-", dir=directory)
            os.write(self._fd, b"\0" * FSYNC_PROBE_BYTES)
            os.fsync(self._fd)

    def measure_ms(self) -> float | None:
        if self._fd is None:
            return None
        try:
            start = time.perf_counter()
            os.write(self._fd, b"\0" * FSYNC_PROBE_BYTES)
            os.fdatasync(self._fd)
            return (time.perf_counter() - start) * 1000.0
        except OSError:
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            with contextlib.suppress(OSError):
                os.unlink(self._name)


class ProcessSampler:
    """Samples ``pids`` (node name -> pid) every ``interval_s`` in a thread."""

    def __init__(
        self,
        pids: Mapping[str, int],
        *,
        interval_s: float = SAMPLE_INTERVAL_S,
        probe_dir: Path | None = None,
        poll_status: Callable[[], Mapping[str, Mapping[str, int]]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.probe = FsyncProbe(probe_dir) if probe_dir is not None else None
        self.poll_status = poll_status
        self.clock = clock
        self.samples: dict[str, list[Sample]] = {name: [] for name in self.pids}
        self.fsync_probe_ms: list[float] = []
        self._processes: dict[str, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self._sockets: dict[tuple[int, str], tuple[int, int, int]] = {}
        self._net_totals: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> ProcessSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._start = self.clock()
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.Error):
                self._processes[name] = psutil.Process(pid)
        self.sample()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()
        if self.probe is not None:
            self.probe.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def _network(self) -> dict[str, tuple[int, int, int]]:
        """Per node: cumulative bytes sent, received (over sockets seen twice
        or more, so counters never run backwards) and current send queues."""
        counters = socket_counters()
        if counters is None:
            return {}
        by_pid = {pid: name for name, pid in self.pids.items()}
        totals = {name: [*self._net_totals.get(name, (0, 0)), 0] for name in self.pids}
        for key, (sent, received, queued) in counters.items():
            name = by_pid.get(key[0])
            if name is None:
                continue
            before = self._sockets.get(key, (0, 0, 0))
            totals[name][0] += max(0, sent - before[0])
            totals[name][1] += max(0, received - before[1])
            totals[name][2] += queued
        self._sockets = counters
        self._net_totals = {name: (t[0], t[1]) for name, t in totals.items()}
        return {name: (t[0], t[1], t[2]) for name, t in totals.items()}

    def sample(self) -> None:
        t_s = round(self.clock() - self._start, 3)
        network = self._network()
        status = {}
        if self.poll_status is not None:
            with contextlib.suppress(Exception):  # a node that does not answer is simply not sampled
                status = dict(self.poll_status())
        if self.probe is not None:
            probe = self.probe.measure_ms()
            if probe is not None:
                self.fsync_probe_ms.append(round(probe, 3))
        for name, process in self._processes.items():
            try:
                with process.oneshot():
                    cpu = process.cpu_times()
                    memory = process.memory_info()
                    io = process.io_counters()
            except psutil.Error:
                continue
            sample: Sample = {
                "t_s": t_s,
                "cpu_s": cpu.user + cpu.system,
                "rss_mb": round(memory.rss / MB, 3),
                "disk_write_bytes": float(io.write_bytes),
                "disk_writes": float(io.write_count),
            }
            if name in network:
                sent, received, queued = network[name]
                sample["net_sent_bytes"] = float(sent)
                sample["net_received_bytes"] = float(received)
                sample["send_queue_bytes"] = float(queued)
            metrics = status.get(name)
            if metrics is not None:
                if "persists" in metrics:
                    sample["fsyncs"] = float(metrics["persists"])
                if "applied_index" in metrics:
                    sample["applied_index"] = float(metrics["applied_index"])
            self.samples[name].append(sample)
        host = psutil.cpu_times()
        self.samples.setdefault(HOST, []).append(
            {"t_s": t_s, "cpu_s": (host.user + host.system + host.nice) / (psutil.cpu_count() or 1)}
        )

    def timeline(self) -> Timeline:
        """Per node, the samples with counters turned into rates."""
        return {name: rates(samples) for name, samples in self.samples.items()}


_COUNTERS = {
    "cpu_s": ("cpu_percent", 100.0),
    "disk_write_bytes": ("disk_write_mb_s", 1 / MB),
    "disk_writes": ("disk_writes_per_s", 1.0),
    "net_sent_bytes": ("net_sent_mb_s", 1 / MB),
    "net_received_bytes": ("net_received_mb_s", 1 / MB),
    "fsyncs": ("fsyncs_per_s", 1.0),
}
"""Counter -> (rate name, scale)."""


def rates(samples: list[Sample]) -> list[Sample]:
    """Counters between consecutive samples as per-second rates; gauges kept."""
    out: list[Sample] = []
    for before, after in itertools.pairwise(samples):
        dt = after["t_s"] - before["t_s"]
        if dt <= 0:
            continue
        row: Sample = {"t_s": after["t_s"]}
        for key, value in after.items():
            if key in _COUNTERS and key in before:
                name, scale = _COUNTERS[key]
                row[name] = round(max(0.0, value - before[key]) / dt * scale, 3)
            elif key not in _COUNTERS and key != "t_s":
                row[key] = value
        out.append(row)
    return out


class SimSampler:
    """Per-node samples of a ``Simulation`` at every ``interval_s`` of simulated time.

    Pass ``sample`` as the simulation's ``progress`` callback; it only reads
    the nodes, so the run (and its trace hash) is the same with or without it.
    """

    def __init__(self, simulation: Any, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.simulation = simulation
        self.interval_s = interval_s
        self.samples: dict[str, list[Sample]] = {node_name(node.id): [] for node in simulation.nodes}
        self._next_s = 0.0

    def sample(self, now_s: float, end_s: float) -> None:
        if now_s + 1e-9 < self._next_s:
            return
        self._next_s = now_s + self.interval_s
        for node in self.simulation.nodes:
            self.samples[node_name(node.id)].append(
                {
                    "t_s": round(now_s, 3),
                    "cpu_s": float(node.work_s),
                    "fsyncs": float(node.storage.writes),
                    "queue": float(len(node.inbox)),
                    "applied_index": float(node.storage.last_index()),
                }
            )

    def timeline(self) -> Timeline:
        return {name: rates(samples) for name, samples in self.samples.items()}
