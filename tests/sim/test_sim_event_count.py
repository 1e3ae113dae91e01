"""The simulator's event count is honest: every popped event either did work
(counted in ``events``) or was a superseded timer (``stale_timer_events``)."""

from __future__ import annotations

from quorate.runtime.driver import drive
from quorate.runtime.sim import SimConfig
from quorate.runtime.sim.cluster import Simulation


def test_events_and_stale_timers_add_up_to_every_pop() -> None:
    sim = Simulation(
        SimConfig(nodes=5, clients=20, duration_s=4.0, seed=3, check_invariants=False, record_history=False)
    )
    result = sim.run()
    assert result.committed_ops > 0
    assert result.events + result.stale_timer_events == sim.loop.events
    # Closed-loop clients arm a timeout per operation; the ones that finished
    # in time leave a timer that pops with nothing to do.
    assert sim.workload is not None and sim.workload.stale_timers > 0
    assert result.stale_timer_events >= sim.workload.stale_timers


class _ProbedCore:
    """A core offering ``wake_at``: idle, it must not be asked for a Ready."""

    def __init__(self, pending: bool) -> None:
        self.pending = pending
        self.readies = 0

    def has_ready(self) -> bool:
        return self.pending

    def wake_at(self) -> float | None:
        return 4.5

    def ready(self) -> object:
        from quorate.core.ready import Ready

        self.readies += 1
        self.pending = False
        return Ready(wake_at=4.5)

    def advance(self, ready: object) -> None:
        pass


def test_drive_skips_the_ready_of_an_idle_core_with_a_deadline_probe() -> None:
    idle = _ProbedCore(pending=False)
    assert drive(idle, None) == 4.5  # type: ignore[arg-type]
    assert idle.readies == 0
    busy = _ProbedCore(pending=True)
    assert drive(busy, None) == 4.5  # type: ignore[arg-type]
    assert busy.readies == 1
