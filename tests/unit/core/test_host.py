"""The node host (``core/host.py``) and the driver's turns (``runtime/driver.py``
``HostDriver``): routing by group, deadlines in one heap, one write per turn
for every group, early messages before the write and the rest after, a
background write holding the next turn, pipelining groups."""

from __future__ import annotations

from typing import Any

import pytest

from quorate.core.binding import Binding, GroupStatus
from quorate.core.host import GroupReady, HostedGroup, NodeHost
from quorate.core.protocol import Accepted, ProposeOutcome
from quorate.core.ready import ENTRY_NORMAL, Entry, ReadState, Ready, Rejection
from quorate.errors import LocalProtocolError
from quorate.ids import NodeId
from quorate.runtime.driver import HostDriver

ME = NodeId(1)


class Echo:
    """A toy core: every message it steps is persisted as an entry, committed
    and echoed back to its sender; ``deadline`` is its timer."""

    def __init__(self, node: NodeId = ME, *, early: bool = False, pipelining: bool = False) -> None:
        self._id = node
        self.deadline: float | None = None
        self.ticks: list[float] = []
        self.early = early
        self.advanced = 0
        self._pending: list[tuple[NodeId, Any]] = []
        self._index = 0

    @property
    def id(self) -> NodeId:
        return self._id

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        self._pending.append((sender, message))

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        self.deadline = None

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        self._pending.append((ME, command))
        return Accepted(self._index + 1, 1)

    def has_ready(self) -> bool:
        return bool(self._pending)

    def ready(self) -> Ready:
        entries = []
        messages = []
        for sender, message in self._pending:
            self._index += 1
            entries.append(Entry(1, self._index, ENTRY_NORMAL, repr(message).encode()))
            messages.append((sender, ("echo", message)))
        self._pending = []
        ready = Ready(entries=entries, committed=list(entries), wake_at=self.deadline)
        if self.early:
            ready.early_messages = messages
        else:
            ready.messages = messages
        return ready

    def advance(self, ready: Ready) -> None:
        self.advanced += 1


def _binding(pipelining: bool = False) -> Binding:
    return Binding(
        name="echo",
        message_types=(),
        hard_state_type=None,
        snapshot_type=None,
        parse_config=dict,
        builder=lambda config, cluster: (lambda *a: Echo()),
        leadership=lambda core: (None, 0),
        status=lambda core: GroupStatus("echo", 0, None),
        pipelines_while_persisting=lambda config: pipelining,
    )


class Effects:
    def __init__(self, background: bool = False) -> None:
        self.log: list[tuple[str, Any]] = []
        self.background = background
        self.writes: list[list[int]] = []

    def persist(self, writes: list[GroupReady], sync: bool) -> bool:
        self.writes.append([group.id for group, _ in writes])
        self.log.append(("persist", tuple(group.id for group, _ in writes)))
        return not self.background

    def send(self, group: HostedGroup, messages: list[tuple[NodeId, Any]]) -> None:
        for to, message in messages:
            self.log.append(("send", (to, group.id, message)))

    def restore(self, group: HostedGroup, snapshot: Any) -> None:
        self.log.append(("restore", group.id))

    def apply(self, group: HostedGroup, entries: list[Entry]) -> None:
        for entry in entries:
            self.log.append(("apply", (group.id, entry.index)))

    def read_ready(self, group: HostedGroup, read: ReadState) -> None:
        self.log.append(("read", group.id))

    def rejected(self, group: HostedGroup, rejection: Rejection) -> None:
        self.log.append(("rejected", group.id))


def host_with(groups: dict[int, Echo], pipelining: frozenset[int] = frozenset()) -> NodeHost:
    host = NodeHost(ME)
    for gid, core in groups.items():
        host.add(HostedGroup(gid, core, _binding(gid in pipelining), pipelines=gid in pipelining))
    return host


def test_messages_reach_only_their_group_and_unknown_groups_are_counted() -> None:
    a, b = Echo(), Echo()
    host = host_with({0: a, 7: b})
    assert host.step(NodeId(2), 7, "m", 0.0) is None
    assert b._pending == [(NodeId(2), "m")] and a._pending == []
    rejection = host.step(NodeId(2), 8, "m", 0.0)
    assert rejection is not None and rejection.reason == "unknown group"
    assert host.unknown_group_messages == 1


def test_an_unknown_group_may_be_created_by_the_runtime() -> None:
    created: list[int] = []

    def create(sender: NodeId, group: int, message: Any, now: float) -> HostedGroup | None:
        if message != "join":
            return None
        created.append(group)
        return HostedGroup(group, Echo(), _binding())

    host = NodeHost(ME, on_unknown_group=create)
    assert host.step(NodeId(2), 5, "noise", 0.0) is not None
    assert host.step(NodeId(2), 5, "join", 0.0) is None
    assert created == [5] and 5 in host and host.get(5).core._pending == [(NodeId(2), "join")]  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [-1, 1 << 63, True, "1", 1.0])
def test_malformed_group_ids_are_refused(bad: Any) -> None:
    host = NodeHost(ME, on_unknown_group=lambda *a: HostedGroup(0, Echo(), _binding()))
    with pytest.raises(LocalProtocolError):
        host.add(HostedGroup(bad, Echo(), _binding()))
    assert host.step(NodeId(2), bad, "m", 0.0) is not None  # never reaches the factory
    assert len(host) == 0


def test_one_turn_writes_every_group_once_then_sends_then_applies() -> None:
    cores = {0: Echo(), 1: Echo(), 2: Echo()}
    host = host_with(cores)
    effects = Effects()
    driver = HostDriver(host, effects)
    driver.drive()  # the groups' first (empty) Readies
    effects.log.clear()
    for gid in cores:
        host.step(NodeId(2), gid, f"m{gid}", 0.0)
    driver.drive()
    kinds = [k for k, _ in effects.log]
    assert effects.writes == [[0, 1, 2]]  # one write for all groups (one fsync)
    assert kinds.index("persist") < kinds.index("send") < kinds.index("apply")
    assert [v for k, v in effects.log if k == "send"] == [(NodeId(2), g, ("echo", f"m{g}")) for g in cores]
    assert all(core.advanced >= 1 for core in cores.values())


def test_early_messages_leave_before_the_write() -> None:
    host = host_with({0: Echo(early=True)})
    effects = Effects()
    driver = HostDriver(host, effects)
    host.step(NodeId(2), 0, "m", 0.0)
    driver.drive()
    kinds = [k for k, _ in effects.log]
    assert kinds.index("send") < kinds.index("persist") < kinds.index("apply")


def test_a_background_write_holds_the_next_turn_and_groups_its_inputs() -> None:
    cores = {0: Echo(), 1: Echo()}
    host = host_with(cores)
    effects = Effects(background=True)
    driver = HostDriver(host, effects)
    host.step(NodeId(2), 0, "a", 0.0)
    driver.drive()
    assert driver.persisting and effects.writes == [[0]]
    assert not any(k == "send" for k, _ in effects.log)  # held until durable
    host.step(NodeId(2), 0, "b", 0.0)
    host.step(NodeId(2), 1, "c", 0.0)
    driver.drive()  # group 0's write is in flight: its Ready waits; group 1's is held
    assert effects.writes == [[0]]
    assert not any(k == "send" for k, _ in effects.log)
    driver.persisted()  # the first turn finishes; the next writes both groups
    assert effects.writes == [[0], [1, 0]]
    sends = [v for k, v in effects.log if k == "send"]
    assert sends == [(NodeId(2), 0, ("echo", "a"))]
    driver.persisted()
    sends = [v for k, v in effects.log if k == "send"]
    assert [m for _, _, m in sends] == [("echo", "a"), ("echo", "c"), ("echo", "b")]
    with pytest.raises(LocalProtocolError):
        driver.persisted()


def test_pipelining_groups_send_while_a_write_is_in_flight() -> None:
    cores = {0: Echo(), 1: Echo()}
    host = host_with(cores, pipelining=frozenset({1}))
    effects = Effects(background=True)
    driver = HostDriver(host, effects)
    host.step(NodeId(2), 0, "a", 0.0)
    driver.drive()
    host.step(NodeId(2), 1, "fast", 0.0)
    host.step(NodeId(2), 0, "slow", 0.0)
    driver.drive()
    sends = [v for k, v in effects.log if k == "send"]
    assert sends == [(NodeId(2), 1, ("echo", "fast"))]  # before any write is durable
    assert not any(k == "apply" for k, _ in effects.log)
    driver.persisted()
    assert effects.writes[-1] == [1, 0]  # the pipelined group's entries join the next write
    driver.persisted()
    applied = [v for k, v in effects.log if k == "apply"]
    assert sorted(applied) == [(0, 1), (0, 2), (1, 1)]


class Scripted:
    """A toy core that hands out the Readies a test queues (``script``)."""

    def __init__(self, node: NodeId = ME) -> None:
        self._id = node
        self.script: list[Ready] = []
        self.advanced: list[Ready] = []

    @property
    def id(self) -> NodeId:
        return self._id

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        return Accepted(0, 0)

    def has_ready(self) -> bool:
        return bool(self.script)

    def ready(self) -> Ready:
        return self.script.pop(0) if self.script else Ready()

    def advance(self, ready: Ready) -> None:
        self.advanced.append(ready)


def _entry(index: int) -> Entry:
    return Entry(1, index, ENTRY_NORMAL, b"x")


def _in_flight(groups: int) -> tuple[NodeHost, Effects, HostDriver, dict[int, Scripted]]:
    """Group 0's write is in flight; the other groups have nothing pending."""
    cores = {gid: Scripted() for gid in range(groups)}
    host = NodeHost(ME)
    for gid, core in cores.items():
        host.add(HostedGroup(gid, core, None))
    effects = Effects(background=True)
    driver = HostDriver(host, effects)
    driver.drive()
    cores[0].script.append(Ready(entries=[_entry(1)], messages=[(NodeId(2), "ack0")]))
    host.touch(host.get(0))  # type: ignore[arg-type]
    driver.drive()
    assert driver.persisting and effects.writes == [[0]]
    effects.log.clear()
    return host, effects, driver, cores


def test_a_ready_with_nothing_to_sync_is_carried_out_while_another_write_is_in_flight() -> None:
    host, effects, driver, cores = _in_flight(3)
    committed = [_entry(7)]
    cores[1].script.append(Ready(messages=[(NodeId(3), "hb")], committed=committed))
    cores[2].script.append(Ready(hard_state="commit 7", committed=committed, must_sync=False))
    host.touch(host.get(1))  # type: ignore[arg-type]
    host.touch(host.get(2))  # type: ignore[arg-type]
    driver.drive()
    assert effects.log == [("send", (NodeId(3), 1, "hb")), ("apply", (1, 7)), ("apply", (2, 7))]
    assert len(cores[1].advanced) == 2 and len(cores[2].advanced) == 2
    assert driver.carried_in_flight == 2 and effects.writes == [[0]]
    driver.persisted()
    # Group 0's ack leaves now; group 2's hard state rides with the next write.
    assert ("send", (NodeId(2), 0, "ack0")) in effects.log
    assert effects.writes == [[0], [2]]


def test_a_ready_that_must_sync_is_held_for_the_next_write_and_sends_its_early_messages() -> None:
    host, effects, driver, cores = _in_flight(2)
    cores[1].script.append(
        Ready(
            entries=[_entry(1)],
            early_messages=[(NodeId(2), "append")],
            messages=[(NodeId(2), "after")],
            committed=[_entry(1)],
        )
    )
    cores[1].script.append(Ready(messages=[(NodeId(2), "second")]))
    host.touch(host.get(1))  # type: ignore[arg-type]
    driver.drive()
    assert effects.log == [("send", (NodeId(2), 1, "append"))]
    assert len(cores[1].advanced) == 1  # its first (empty) Ready only: this one is held
    cores[0].script.append(Ready(messages=[(NodeId(2), "zero")]))
    host.touch(host.get(0))  # type: ignore[arg-type]
    driver.drive()  # group 0 is in the write in flight: nothing taken
    assert len(effects.log) == 1 and len(cores[0].advanced) == 1
    driver.persisted()
    assert effects.writes == [[0], [1]]
    # Group 1's held write is in flight now (group 0's next Ready joined that
    # turn); group 1's second Ready waits for it.
    assert [v for k, v in effects.log if k == "send"] == [(NodeId(2), 1, "append"), (NodeId(2), 0, "ack0")]
    assert len(cores[1].advanced) == 1
    driver.persisted()
    sends = [v for k, v in effects.log if k == "send"]
    assert sends[2:] == [(NodeId(2), 1, "after"), (NodeId(2), 0, "zero"), (NodeId(2), 1, "second")]
    assert ("apply", (1, 1)) in effects.log
    assert len(cores[1].advanced) == 3


def test_a_deferred_hard_state_of_a_removed_group_is_dropped() -> None:
    host, effects, driver, cores = _in_flight(2)
    cores[1].script.append(Ready(hard_state="commit 3", must_sync=False))
    host.touch(host.get(1))  # type: ignore[arg-type]
    driver.drive()
    host.remove(1)
    driver.persisted()
    assert effects.writes == [[0]]
    assert not driver.persisting


def test_deadlines_tick_only_due_groups_and_removed_groups_are_forgotten() -> None:
    cores = {0: Echo(), 1: Echo(), 2: Echo()}
    cores[0].deadline, cores[1].deadline = 5.0, 2.0
    host = host_with(cores)
    driver = HostDriver(host, Effects())
    driver.drive()
    assert host.wake_at() == 2.0
    host.tick(3.0)
    assert cores[1].ticks == [3.0] and cores[0].ticks == []
    driver.drive()
    assert host.wake_at() == 5.0
    host.remove(0)
    assert host.wake_at() is None
    host.tick(10.0)
    assert cores[0].ticks == []


class Relay(Echo):
    """A toy core that also speaks on another group: every message it steps
    is relayed to node 9 on group ``to_group`` (``CrossGroupOutput``), and,
    as HRB's core does, it counts queued relays as work in ``has_ready``."""

    def __init__(self, to_group: int, *, step_only: bool = False) -> None:
        super().__init__()
        self.to_group = to_group
        self.step_only = step_only
        self._out: list[tuple[NodeId, int, Any]] = []

    def step(self, sender: NodeId, message: Any, now: float) -> None:
        if self.step_only:
            self._out.append((NodeId(9), self.to_group, message))  # no Ready needed
        else:
            super().step(sender, message, now)

    def has_ready(self) -> bool:
        return super().has_ready() or bool(self._out)

    def ready(self) -> Ready:
        for _, message in self._pending:
            self._out.append((NodeId(9), self.to_group, message))
        return super().ready()

    def take_outbound(self) -> list[tuple[NodeId, int, Any]]:
        out, self._out = self._out, []
        return out


@pytest.mark.parametrize("groups", [1, 2])
def test_messages_for_other_groups_are_taken_with_each_ready_and_handed_to_the_runtime(groups: int) -> None:
    cores: dict[int, Echo] = {5: Relay(to_group=6)}
    if groups == 2:
        cores[0] = Echo()
    host = host_with(cores)
    driver = HostDriver(host, Effects())
    driver.drive()
    assert host.take_outbound() == []
    host.step(NodeId(2), 5, "a", 0.0)
    host.step(NodeId(2), 5, "b", 0.0)
    driver.drive()  # ends: relays queued in ready() are taken with it, not left as work
    assert host.take_outbound() == [(NodeId(9), 6, "a"), (NodeId(9), 6, "b")]
    assert host.take_outbound() == []


def test_messages_for_other_groups_queued_without_a_ready_are_taken_too() -> None:
    host = host_with({5: Relay(to_group=6, step_only=True), 0: Echo()})
    host.step(NodeId(2), 5, "a", 0.0)
    assert host.take_outbound() == [(NodeId(9), 6, "a")]


def test_groups_without_cross_group_output_and_removed_groups_give_nothing() -> None:
    relay = Relay(to_group=6, step_only=True)
    host = host_with({5: relay, 0: Echo()})
    host.step(NodeId(2), 0, "m", 0.0)
    assert host.take_outbound() == []
    host.remove(5)
    relay.step(NodeId(2), "late", 0.0)
    assert host.take_outbound() == []


def test_cross_group_says_whether_take_outbound_can_give_anything() -> None:
    host = host_with({0: Echo()})
    assert host.cross_group is False  # a runtime may skip take_outbound
    relay = Relay(to_group=6)
    host.add(HostedGroup(5, relay, None))
    assert host.cross_group is True
    host.step(NodeId(2), 5, "a", 0.0)
    HostDriver(host, Effects()).drive()  # the relay is taken with the Ready
    host.remove(5)
    assert host.cross_group is True  # the relay taken before the removal still waits
    assert host.take_outbound() == [(NodeId(9), 6, "a")]
    assert host.cross_group is False
