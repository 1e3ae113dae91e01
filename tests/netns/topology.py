"""Hosts made of Linux network namespaces, for multi-host tests on one machine.

Theory of operation. ``Topology`` makes one namespace per host (``node``
hosts, a ``proxy`` host, a ``client`` host) and one more holding a bridge;
each host gets a veth pair whose far end is a port of that bridge, and an
address in 198.18.0.0/24 (the range set aside for benchmarking networks,
RFC 2544: it collides with nothing real, and no packet leaves these
namespaces). Names resolve per host: ``ip netns exec`` shows a host
``/etc/netns/<namespace>/hosts`` as its ``/etc/hosts``, so each host can be
given its own view of where ``n1``, ``n2``... live, and that view can change
while processes run (the file is rewritten in place).

A partition is a host's bridge port taken down (``isolate``): nothing gets
in or out, and no FIN or RST either, as when a machine drops off the
network. ``move`` gives a host a new address (a rescheduled pod).

Processes run in a host with ``popen`` (``ip netns exec`` execs the command,
so the pid is the process's own: SIGKILL hits the node, not a wrapper).
``close`` kills what was started and deletes the namespaces and files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

SUBNET_PREFIX = "198.18.0."
PREFIX_LEN = 24
NETNS_ETC = Path("/etc/netns")
KILL_WAIT_S = 10.0


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)


def netns_problem() -> str | None:
    """Why this machine cannot run the suite, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip command"
    name = f"qprobe{os.getpid()}"
    try:
        run("ip", "netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"cannot create a network namespace: {getattr(exc, 'stderr', exc)}".strip()
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            run("ip", "netns", "del", name)
    return None


def netem_available(namespace: str, device: str) -> bool:
    """Whether the kernel has the netem queueing discipline (tried on a device
    inside our own namespace, then removed)."""
    try:
        run("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", device, "root", "netem", "delay", "1ms")
    except (subprocess.CalledProcessError, OSError):
        return False
    run("ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", device, "root")
    return True


class Topology:
    """Hosts on one bridge; ``hosts`` maps a host name to its last octet."""

    def __init__(self, tag: str, hosts: dict[str, int]) -> None:
        self.tag = tag
        self.octets = dict(hosts)
        self.bridge_ns = f"{tag}-br"
        self.processes: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def namespace(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def address(self, host: str) -> str:
        return f"{SUBNET_PREFIX}{self.octets[host]}"

    def port(self, host: str) -> str:
        """The host's port on the bridge (in the bridge namespace)."""
        return f"p-{host}"[:15]

    def _make(self) -> None:
        run("ip", "netns", "add", self.bridge_ns)
        self._made.append(self.bridge_ns)
        run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        for host in self.octets:
            ns = self.namespace(host)
            run("ip", "netns", "add", ns)
            self._made.append(ns)
            run("ip", "-n", self.bridge_ns, "link", "add", self.port(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "-n", self.bridge_ns, "link", "set", self.port(host), "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.address(host)}/{PREFIX_LEN}", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def set_hosts(self, host: str, names: dict[str, str]) -> None:
        """What ``host`` resolves ``names`` to (its /etc/hosts, rewritten in place)."""
        path = NETNS_ETC / self.namespace(host) / "hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in sorted(names.items()))
        # In place (same inode): the bind mount of a running process sees it.
        with open(path, "a+") as f:
            f.seek(0)
            f.truncate()
            f.write(text)

    def isolate(self, host: str) -> None:
        run("ip", "-n", self.bridge_ns, "link", "set", self.port(host), "down")

    def rejoin(self, host: str) -> None:
        run("ip", "-n", self.bridge_ns, "link", "set", self.port(host), "up")

    def move(self, host: str, octet: int) -> None:
        """Give ``host`` a new address (the old one disappears)."""
        ns = self.namespace(host)
        run("ip", "-n", ns, "addr", "flush", "dev", "eth0")
        self.octets[host] = octet
        run("ip", "-n", ns, "addr", "add", f"{self.address(host)}/{PREFIX_LEN}", "dev", "eth0")

    def popen(self, host: str, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace(host), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes], signum: int = signal.SIGKILL) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)
            try:
                process.wait(KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(KILL_WAIT_S)

    def close(self) -> None:
        for process in self.processes:
            self.kill(process)
        for ns in reversed(self._made):
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                run("ip", "netns", "del", ns)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        with contextlib.suppress(OSError):
            NETNS_ETC.rmdir()  # only when empty: other users' entries stay
        deadline = time.monotonic() + KILL_WAIT_S
        while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(0.05)
