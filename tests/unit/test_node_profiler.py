"""The real node's opt-in profiler: off unless ``QUORATE_PROFILE_DIR`` is
set; when set, the event loop's profile is written to ``<dir>/<node>.prof``
(a file ``pstats`` reads) while the loop runs."""

from __future__ import annotations

import asyncio
import pstats
from pathlib import Path

import pytest

from quorate.runtime.aio.profiling import PROFILE_DIR_ENV, start_profiler

DEADLINE_S = 30.0
"""Generous: the first dump is due after one second of the loop."""


def test_profiler_is_off_without_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROFILE_DIR_ENV, raising=False)
    loop = asyncio.new_event_loop()
    try:
        assert start_profiler(loop, "n1") is None
    finally:
        loop.close()


def test_profiler_writes_a_readable_profile_while_the_loop_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROFILE_DIR_ENV, str(tmp_path / "profiles"))
    path = tmp_path / "profiles" / "n1.prof"

    async def wait_for_dump() -> None:
        profiler = start_profiler(asyncio.get_running_loop(), "n1")
        assert profiler is not None
        try:
            waited = 0.0
            while not path.exists() and waited < DEADLINE_S:
                await asyncio.sleep(0.05)
                waited += 0.05
        finally:
            profiler.disable()

    asyncio.run(wait_for_dump())
    assert path.exists()
    assert pstats.Stats(str(path)).get_stats_profile().func_profiles
