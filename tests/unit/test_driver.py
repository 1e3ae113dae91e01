"""The driver carries out a Ready in the contract's order: persist, send,
restore, apply, reads, rejections; then advance; and loops until drained."""

from __future__ import annotations

from typing import Any

from quorate.core import Entry, ReadState, Ready, Rejection
from quorate.core.protocol import ProposeOutcome, Refused
from quorate.ids import NodeId
from quorate.runtime.driver import drive
from quorate.storage import MemoryStorage


class ScriptedCore:
    def __init__(self, readies: list[Ready]) -> None:
        self.readies = readies
        self.advanced: list[Ready] = []

    @property
    def id(self) -> NodeId:
        return NodeId(1)

    def step(self, sender: NodeId, message: Any, now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        return Refused("scripted")

    def has_ready(self) -> bool:
        return bool(self.readies)

    def ready(self) -> Ready:
        return self.readies.pop(0) if self.readies else Ready(wake_at=9.0)

    def advance(self, ready: Ready) -> None:
        self.advanced.append(ready)


class RecordingHost:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.storage = MemoryStorage()

    def persist(self, hard_state: Any, entries: list[Entry], snapshot: Any) -> None:
        self.log.append(f"persist {len(entries)}")
        self.storage.persist(hard_state, entries, snapshot)

    def send(self, to: NodeId, message: Any) -> None:
        self.log.append(f"send {to}")

    def restore(self, snapshot: Any) -> None:
        self.log.append("restore")

    def apply(self, entry: Entry) -> None:
        self.log.append(f"apply {entry.index}")

    def read_ready(self, read: ReadState) -> None:
        self.log.append(f"read {read.index}")

    def rejected(self, rejection: Rejection) -> None:
        self.log.append(f"rejected {rejection.reason}")


def test_persist_then_send_then_apply_then_advance() -> None:
    e1, e2 = Entry(1, 1, 0, b"a"), Entry(1, 2, 0, b"b")
    first = Ready(
        messages=[(NodeId(2), "append"), (NodeId(3), "append")],
        hard_state=("term", 1),
        entries=[e1, e2],
        committed=[e1],
        reads=[ReadState(1, b"r")],
        rejected=[Rejection(NodeId(4), "Vote", "stale term")],
        wake_at=5.0,
    )
    second = Ready(committed=[e2], wake_at=6.0)
    core = ScriptedCore([first, second])
    host = RecordingHost()
    assert drive(core, host) == 6.0
    assert host.log == [
        "persist 2",
        "send 2",
        "send 3",
        "apply 1",
        "read 1",
        "rejected stale term",
        "apply 2",
    ]
    assert core.advanced == [first, second]
    assert host.storage.last_index() == 2 and host.storage.load_state() == ("term", 1)


def test_nothing_to_do_returns_the_deadline() -> None:
    core = ScriptedCore([])
    host = RecordingHost()
    assert drive(core, host) == 9.0 and host.log == []


def test_memory_storage_truncates_conflicting_suffix_and_compacts() -> None:
    s = MemoryStorage()
    s.store([Entry(1, i, 0, b"") for i in range(1, 6)])
    s.store([Entry(2, 3, 0, b"x")])
    assert s.last_index() == 3 and s.entries(3, 4)[0].term == 2
    s.compact(2)
    assert s.first_index() == 3 and [e.index for e in s.entries(1, 10)] == [3]
    recovered = s.recover()
    assert [e.index for e in recovered.entries] == [3]
