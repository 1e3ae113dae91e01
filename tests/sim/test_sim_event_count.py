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


class _ScriptedCore:
    """Hands out a fixed sequence of Readies, two per drive, then idles."""

    def __init__(self) -> None:
        from quorate.core.ready import Entry, ReadState, Ready, Rejection
        from quorate.ids import NodeId

        entry = Entry(1, 1, 0, b"x")
        self.script = [
            Ready(messages=[(NodeId(2), "hello")], hard_state="hs", entries=[entry], wake_at=1.0),
            Ready(committed=[entry], reads=[ReadState(1, b"r")], wake_at=2.0),
            Ready(snapshot="snap", rejected=[Rejection(NodeId(3), "Ping", "bad")], wake_at=None),
            Ready(wake_at=3.0),
        ]
        self.advanced = 0

    def has_ready(self) -> bool:
        return len(self.script) % 2 == 1 or self.advanced % 2 == 1

    def ready(self) -> object:
        return self.script.pop(0)

    def advance(self, ready: object) -> None:
        self.advanced += 1


class _RecordingHost:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def persist(self, hard_state: object, entries: object, snapshot: object) -> None:
        self.calls.append(("persist", (hard_state, entries, snapshot)))

    def send(self, to: object, message: object) -> None:
        self.calls.append(("send", (to, message)))

    def restore(self, snapshot: object) -> None:
        self.calls.append(("restore", snapshot))

    def apply(self, entry: object) -> None:
        self.calls.append(("apply", entry))

    def read_ready(self, read: object) -> None:
        self.calls.append(("read", read))

    def rejected(self, rejection: object) -> None:
        self.calls.append(("rejected", rejection))


def test_a_bound_driver_does_what_drive_does() -> None:
    from quorate.runtime.driver import Driver

    by_function, by_driver = _RecordingHost(), _RecordingHost()
    core_a, core_b = _ScriptedCore(), _ScriptedCore()
    driver = Driver(core_b, by_driver)  # type: ignore[arg-type]
    deadlines_a = [drive(core_a, by_function) for _ in range(2)]  # type: ignore[arg-type]
    deadlines_b = [driver.drive() for _ in range(2)]
    assert deadlines_a == deadlines_b == [2.0, 3.0]
    assert by_driver.calls == by_function.calls
    assert [name for name, _ in by_driver.calls] == [
        "persist", "send", "apply", "read", "persist", "restore", "rejected",
    ]
