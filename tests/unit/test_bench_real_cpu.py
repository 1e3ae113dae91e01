"""The real benchmark's CPU reader counts every CPU second a node process
used: a busy child (and a grandchild it waits for) that burned a known
amount of its own CPU time reads back as that amount from ``/proc``.

CPU time, not wall time, is compared, so the check holds on a machine
shared with other load, where a busy loop gets only part of a core."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from quorate.bench.puts import host_cpu_seconds, process_tree_cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

CHILD_BUSY_CPU_S = 1.0
GRANDCHILD_BUSY_CPU_S = 0.5
TOLERANCE_CPU_S = 0.15
"""A few clock ticks plus the interpreter's own work around the loops."""

BUSY = textwrap.dedent(
    """
    import subprocess, sys, time

    def burn(cpu_s):
        start = time.process_time()
        while time.process_time() - start < cpu_s:
            pass

    print("ready", flush=True)
    sys.stdin.readline()
    burn(float(sys.argv[1]))
    grandchild = subprocess.run(
        [sys.executable, "-c", "import time\\nstart = time.process_time()\\n"
         "while time.process_time() - start < " + sys.argv[2] + ": pass"]
    )
    print("done", flush=True)
    sys.stdin.readline()
    """
)


def test_busy_process_and_waited_child_read_back_their_cpu_seconds() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", BUSY, str(CHILD_BUSY_CPU_S), str(GRANDCHILD_BUSY_CPU_S)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        before = process_tree_cpu_seconds(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        after = process_tree_cpu_seconds(child.pid)
        child.stdin.write("end\n")
        child.stdin.flush()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert before is not None and after is not None
    used = after - before
    # The grandchild's start-up (an interpreter) counts too, hence the wider upper bound.
    expected = CHILD_BUSY_CPU_S + GRANDCHILD_BUSY_CPU_S
    assert expected - TOLERANCE_CPU_S <= used <= expected + 2 * TOLERANCE_CPU_S, used


def test_a_finished_process_reads_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_tree_cpu_seconds(child.pid) is None


def test_host_cpu_is_monotonic_and_busy_is_part_of_total() -> None:
    first = host_cpu_seconds()
    second = host_cpu_seconds()
    assert first is not None and second is not None
    assert 0 <= first[0] <= first[1]
    assert second[0] >= first[0] and second[1] >= first[1]
