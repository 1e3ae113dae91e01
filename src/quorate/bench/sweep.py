"""Seed sweeps of the simulator, in parallel processes or on a Ray cluster.

Theory of operation. A sweep is one ``SimConfig`` run under many seeds. Each
seed is independent of the others (one seed fixes the whole run), so the
seeds are spread over workers and their results collected in seed order:

- ``run_seed(config)`` is the unit of work: run the simulation, check its
  history for linearizability, and return a small JSON-ready verdict (the
  trace hash, safety violations, the checker's verdict, liveness after the
  heal). It is a module-level function so that both executors can ship it
  by reference, and it returns no history (kilobytes per seed, not
  megabytes, cross the process boundary).
- ``ProcessExecutor`` runs seeds on a local process pool (``spawn`` start
  method: workers begin from a clean interpreter, so nothing the parent
  imported or configured leaks into a run); with one worker it runs them one
  by one in this process, the reference the parallel runs must match.
- ``RayExecutor`` runs them as Ray tasks on the cluster at ``address``
  (``local`` starts a Ray instance on this machine, on loopback only). An address is probed
  with a plain TCP connection first and ``ray.init`` is bounded by a
  timeout, so an address that does not answer is one clear error, not a
  hang. Ray is an optional extra (``pip install '.[ray]'``); the
  machines of the cluster need the same quorate installed.

A run is *failed* when it broke a safety invariant, left a history that is
not linearizable, or (when the config heals at some point) did not commit
again within the liveness bound; a checker that ran out of time is
*undecided*, reported apart. The caller turns a failed seed into the
``quorate sim ... --seed N`` command that reproduces it.

The executors are not tied to seeds: given another module-level ``task``
(any independent run of a benchmark, its input and result picklable), they
run it over a list of inputs the same way, and ``run_all`` returns the
results in input order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any, Protocol

from quorate.bench.hrb_sim import HrbRunConfig
from quorate.bench.hrb_sim import verdict as hrb_verdict
from quorate.check import check_history
from quorate.errors import ConfigError
from quorate.runtime.sim import SimConfig, SimResult, run
from quorate.runtime.sim.multiraft import MultiRaftConfig, run_multiraft

CHECK_TIMEOUT_S = 60.0
"""Wall-clock budget of the linearizability check of one seed."""
RAY_CONNECT_TIMEOUT_S = 10.0
"""How long to wait for a Ray cluster to answer before giving up."""
LOCAL_RAY = "local"
RAY_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, a Ray instance uses the loopback address."""
_SEEDS = re.compile(r"^\s*(-?\d+)\s*(?:\.\.\s*(-?\d+)\s*)?$")

Verdict = dict[str, Any]
Task = Callable[[Any], Any]
"""One independent run: a module-level function (shipped by reference)."""


def parse_seeds(text: str) -> range:
    """``"A..B"`` (inclusive) or ``"N"`` → the seeds; ``ConfigError`` otherwise."""
    match = _SEEDS.match(text)
    if match is None:
        raise ConfigError(f"--seeds takes A..B (e.g. 1..200) or one seed, got {text!r}")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise ConfigError(f"--seeds {text}: the range is empty ({last} < {first}); write A..B with A <= B")
    return range(first, last + 1)


def run_seed(config: SimConfig | HrbRunConfig, check_timeout_s: float = CHECK_TIMEOUT_S) -> Verdict:
    """Run one seed and judge it; a JSON-ready verdict (no history)."""
    if isinstance(config, HrbRunConfig):
        return hrb_verdict(config)
    result: SimResult = run_multiraft(config) if isinstance(config, MultiRaftConfig) else run(config)
    linearizable: bool | None
    if not result.history:
        linearizable, check = True, "linearizable"
    else:
        verdict = check_history(result.history, timeout_s=check_timeout_s, clock=time.monotonic)
        check = str(verdict.verdict)
        linearizable = {"linearizable": True, "not_linearizable": False}.get(check)
    problem = None
    if result.safety_violations:
        problem = f"safety violation: {result.safety_violations[0]['message']}"
    elif linearizable is False:
        problem = "history not linearizable"
    elif result.liveness_ok is False:
        problem = f"no commit within {config.liveness_bound_s:g} s of the heal"
    return {
        "seed": config.seed,
        "ok": problem is None and linearizable is not None,
        "undecided": problem is None and linearizable is None,
        "problem": problem,
        "trace_sha256": result.trace_sha256,
        "committed_ops": result.committed_ops,
        "failed_ops": result.failed_ops,
        "unknown_ops": result.unknown_ops,
        "throughput_ops": result.throughput_ops,
        "latency_ms": result.latency_ms,
        "faults_injected": result.faults_injected,
        "safety_violations": result.safety_violations,
        "linearizable": linearizable,
        "check_verdict": check,
        "liveness_ok": result.liveness_ok,
        "recovered_after_s": result.recovered_after_s,
        "wall_seconds": result.wall_seconds,
    }


class SweepExecutor(Protocol):
    """Runs its task over inputs; yields ``(position, result)`` as each completes."""

    name: str

    def map(self, items: Sequence[Any]) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...


@dataclass
class ProcessExecutor:
    """A local pool of ``workers`` processes (one worker: this process)."""

    workers: int = 1
    task: Task = run_seed
    name: str = "processes"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")

    def map(self, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        if self.workers == 1:
            for position, item in enumerate(items):
                yield position, self.task(item)
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(items)), mp_context=context) as pool:
            futures = {pool.submit(self.task, item): position for position, item in enumerate(items)}
            for future in as_completed(futures):
                yield futures[future], future.result()

    def close(self) -> None:
        pass


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` or ``ray://host:port`` → its parts; ``None`` for ``auto``."""
    text = address.removeprefix("ray://")
    if text == "auto":
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--ray takes 'local', 'auto', HOST:PORT or ray://HOST:PORT, got {address!r}"
        )
    return host.strip("[]"), int(port)


def probe(address: str, timeout_s: float) -> None:
    """Fail with ``ConfigError`` unless something accepts TCP at ``address``."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as exc:
        reason = (
            f"no answer within {timeout_s:g} s"
            if isinstance(exc, TimeoutError)
            else (exc.strerror or str(exc)).lower()
        )
        raise ConfigError(
            f"no Ray cluster answers at {address} ({reason}); "
            "start one with 'ray start --head' or check the address"
        ) from None


class RayExecutor:
    """Seeds as Ray tasks, at most ``workers`` in flight."""

    name = "ray"

    def __init__(
        self, address: str, workers: int, timeout_s: float = RAY_CONNECT_TIMEOUT_S, task: Task = run_seed
    ) -> None:
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        if address != LOCAL_RAY:
            _host_port(address)  # the address's form, before anything else
        else:
            # A Ray started here serves this machine only: its processes
            # advertise the loopback address (Ray's own switch for
            # single-machine clusters, read when Ray is imported), not an
            # interface reachable from outside.
            os.environ.setdefault(RAY_SINGLE_MACHINE_ENV, "0")
        try:
            import ray
        except ImportError:
            raise ConfigError("--ray needs Ray (the ray extra): pip install ray") from None
        if address != LOCAL_RAY:
            probe(address, timeout_s)
        self.ray: Any = ray
        self.address = address
        self.workers = workers
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
            "ignore_reinit_error": True,
        }
        if address == LOCAL_RAY:
            kwargs["num_cpus"] = workers
        else:
            kwargs["address"] = address
        failure: list[BaseException] = []
        connected = threading.Event()
        self._release = threading.Event()
        # Ray warns when started off the main thread (it then sets no SIGTERM
        # handler, which the sweep does not need); its warnings are not ours to print.
        logging.getLogger("ray").setLevel(logging.ERROR)

        def connect() -> None:
            try:
                ray.init(**kwargs)
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
            connected.set()
            # A local Ray's processes die with the *thread* that started them
            # (parent-death signal), so this thread lives until close().
            self._release.wait()

        # A Ray start-up can take long on a loaded machine; a local one gets
        # more time than a remote one that already answered TCP.
        budget_s = timeout_s * (6 if address == LOCAL_RAY else 1)
        self._thread = threading.Thread(target=connect, name="ray-init", daemon=True)
        self._thread.start()
        if not connected.wait(budget_s):
            raise ConfigError(f"Ray at {address} did not complete the connection within {budget_s:g} s")
        if failure:
            self._release.set()
            raise ConfigError(f"cannot connect to Ray at {address}: {failure[0]}")
        self._task = ray.remote(num_cpus=1)(task)

    def map(self, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        waiting = list(enumerate(items))
        in_flight: dict[Any, int] = {}
        while waiting or in_flight:
            while waiting and len(in_flight) < self.workers:
                position, item = waiting.pop(0)
                in_flight[self._task.remote(item)] = position
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                yield in_flight.pop(ref), ray.get(ref)

    def close(self) -> None:
        self.ray.shutdown()
        self._release.set()
        self._thread.join()


def sweep_configs(base: SimConfig | HrbRunConfig, seeds: range) -> list[SimConfig | HrbRunConfig]:
    """``base`` once per seed; each validated now, so a bad flag fails before any run."""
    configs = [replace(base, seed=seed) for seed in seeds]
    for config in configs[:1]:
        config.validate()
    return configs


def run_all(
    items: Sequence[Any],
    executor: SweepExecutor,
    on_result: Callable[[Any], None] | None = None,
) -> list[Any]:
    """The executor's task over every item, results in the order of ``items``."""
    results: list[Any] = [None] * len(items)
    for position, result in executor.map(items):
        results[position] = result
        if on_result is not None:
            on_result(result)
    return results


def run_sweep(
    configs: Sequence[SimConfig | HrbRunConfig],
    executor: SweepExecutor,
    on_verdict: Callable[[Verdict], None] | None = None,
) -> list[Verdict]:
    """Every config's verdict, in the order of ``configs`` (seed order)."""
    return run_all(configs, executor, on_verdict)


def summarize(verdicts: Sequence[Verdict], wall_s: float) -> dict[str, Any]:
    """Counts and the spread of throughput over the seeds."""
    throughputs = sorted(v["throughput_ops"] for v in verdicts)
    median = throughputs[len(throughputs) // 2] if throughputs else None
    return {
        "seeds": len(verdicts),
        "passed": sum(1 for v in verdicts if v["ok"]),
        "failed": sum(1 for v in verdicts if v["problem"] is not None),
        "undecided": sum(1 for v in verdicts if v["undecided"]),
        "committed_ops": sum(v["committed_ops"] for v in verdicts),
        "throughput_ops_median": median,
        "throughput_ops_min": throughputs[0] if throughputs else None,
        "throughput_ops_max": throughputs[-1] if throughputs else None,
        "wall_s": round(wall_s, 3),
    }
