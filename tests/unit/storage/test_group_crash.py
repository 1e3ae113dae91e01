"""SIGKILL while many groups are being written: after recovery every group
holds every write whose ``persist_many`` had returned, all groups end at
the same round (a batch is all-or-nothing across groups), snapshots,
creations and removals included. Both disk engines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.unit.storage.group_crash_writer import (
    BASE_GROUPS,
    BATCH_ENTRIES,
    CHURN_EVERY_ROUNDS,
    CHURN_GROUP_BASE,
    PROTOCOL_TYPES,
    churn_group,
    commit_of,
    open_store,
    payload,
)
from tests.unit.storage.storage_types import Snapshot

from quorate.storage import SqliteStorage, WalStorage

WRITER = Path(__file__).with_name("group_crash_writer.py")
CRASH_MIN_ACKNOWLEDGED_ROUNDS = 40
CRASH_WAIT_S = 60.0


def run_and_kill(engine: str, directory: Path) -> tuple[int, set[str]]:
    """Start the writer, SIGKILL it once it acknowledged enough rounds;
    return the last acknowledged round and every acknowledged event."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, str(WRITER), engine, str(directory)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    events: list[str] = []
    try:
        assert child.stdout is not None
        while f"round {CRASH_MIN_ACKNOWLEDGED_ROUNDS}" not in events:
            line = child.stdout.readline()
            assert line, "writer exited early"
            events.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=CRASH_WAIT_S)
    assert child.stdout is not None
    # Lines printed after the last one read were acknowledged too.
    events += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    rounds = max(int(e.split()[1]) for e in events if e.startswith("round"))
    return rounds, set(events)


def check_group(store: SqliteStorage | WalStorage, group: int, protocol: str) -> int:
    """Check one group's log, snapshot and hard state agree; return its last index."""
    recovered = store.recover_group(group, PROTOCOL_TYPES[protocol], Snapshot)
    last = store.last_index_of(group)
    start = recovered.snapshot.index + 1 if recovered.snapshot is not None else 1
    assert [e.index for e in recovered.entries] == list(range(start, last + 1)), group
    assert all(e.data == payload(group, e.index) for e in recovered.entries), group
    if last:
        # The hard state came in the same batch as the last entries.
        assert commit_of(recovered.hard_state) == last, group
    if recovered.snapshot is not None:
        assert recovered.snapshot.index % BATCH_ENTRIES == 0
    return last


@pytest.mark.parametrize("engine", ["sqlite", "wal"])
def test_sigkill_mid_stream_recovers_every_acknowledged_write_of_every_group(
    engine: str, tmp_path: Path
) -> None:
    acknowledged_rounds, events = run_and_kill(engine, tmp_path)
    with open_store(engine, str(tmp_path)) as store:
        hosted = {r.group: r.protocol for r in store.groups()}
        base = range(1, BASE_GROUPS + 1)
        assert set(base) <= set(hosted)
        lasts = {check_group(store, g, hosted[g]) for g in base}
        # Every base group ends at the same round: no batch was half applied.
        assert len(lasts) == 1
        [last] = lasts
        assert last % BATCH_ENTRIES == 0
        rounds = last // BATCH_ENTRIES
        assert rounds >= acknowledged_rounds
        churned = {g for g in hosted if g >= CHURN_GROUP_BASE}
        k = rounds // CHURN_EVERY_ROUNDS
        if rounds % CHURN_EVERY_ROUNDS:
            # The churn after round 5k was done before round 5k + 1 began.
            assert churned == {churn_group(k)}
            last_churn = check_group(store, churn_group(k), hosted[churn_group(k)])
            assert last_churn == (rounds - k * CHURN_EVERY_ROUNDS) * BATCH_ENTRIES
        else:
            # Killed between round 5k and 5k + 1: the churn may be partly done.
            previous = churn_group(k - 1) if k >= 2 else None
            new = churn_group(k)
            if f"create {new}" in events:
                assert churned == {new}
            elif previous is not None and f"drop {previous}" in events:
                assert churned in (set(), {new})
            else:
                assert churned in ({previous} - {None}, set(), {new})
            for g in churned:
                last_churn = check_group(store, g, hosted[g])
                assert last_churn == (CHURN_EVERY_ROUNDS * BATCH_ENTRIES if g == previous else 0)
