"""An opt-in profiler for a real node's event loop.

Theory of operation. When the environment variable ``QUORATE_PROFILE_DIR``
names a directory, a node started in that environment runs ``cProfile`` on
its event-loop thread, timed by that thread's CPU clock (so time spent
waiting in ``epoll`` or for the persist worker's fsync is not counted), and
writes the statistics to ``<dir>/<node>.prof`` every ``DUMP_EVERY_S``
seconds: a node stopped by SIGKILL (as benchmarks stop theirs) leaves its
last dump behind. Read a dump with ``python -m pstats``. Off by default; the
profiler slows the code it measures (calls of small functions most), so read
its split between layers, not its absolute times.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import time
from pathlib import Path

__all__ = ["PROFILE_DIR_ENV", "start_profiler"]

PROFILE_DIR_ENV = "QUORATE_PROFILE_DIR"
DUMP_EVERY_S = 1.0


def start_profiler(loop: asyncio.AbstractEventLoop, name: str) -> cProfile.Profile | None:
    """Profile the running loop's thread when ``QUORATE_PROFILE_DIR`` is set (module docstring)."""
    directory = os.environ.get(PROFILE_DIR_ENV)
    if not directory:
        return None
    path = Path(directory) / f"{name}.prof"
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler = cProfile.Profile(time.thread_time)

    def dump() -> None:
        partial = path.with_suffix(".part")
        profiler.dump_stats(partial)  # stops the profiler (pstats' create_stats)
        os.replace(partial, path)  # a kill mid-dump leaves the previous one whole
        profiler.enable()
        loop.call_later(DUMP_EVERY_S, dump)

    profiler.enable()
    loop.call_later(DUMP_EVERY_S, dump)
    return profiler
