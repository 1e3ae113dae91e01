"""Extension machines in the key-value store's log: dispatch by name with the
log index and log time, sessions (exactly-once), and snapshots that carry
their state only when they hold some."""

from __future__ import annotations

from quorate.core.machine import MachineResult
from quorate.state.kv import (
    FORMAT_VERSION_WITH_CHANGES,
    FORMAT_VERSION_WITH_MACHINES,
    Command,
    Extension,
    KVStore,
    Put,
    encode_command,
)


class Tally:
    """A tiny deterministic machine: adds the numbers it is sent."""

    def __init__(self) -> None:
        self.total = 0
        self.seen: list[tuple[int, float]] = []

    def apply(self, index: int, now_s: float, data: bytes) -> MachineResult:
        if not data.isdigit():
            return MachineResult(False, error="not a number")
        self.total += int(data)
        self.seen.append((index, now_s))
        return MachineResult(True, value=str(self.total))

    def snapshot(self) -> bytes | None:
        return str(self.total).encode() if self.total else None

    def restore(self, data: bytes | None) -> None:
        self.total = int(data) if data else 0


def test_an_extension_command_reaches_its_machine_with_index_and_log_time() -> None:
    tally = Tally()
    kv = KVStore(machines={"tally": tally})
    result = kv.apply(7, encode_command(Command(1, 1, Extension("tally", b"5"), time_s=3.5)))
    assert (result.ok, result.value) == (True, "5")
    assert tally.seen == [(7, 3.5)]
    refused = kv.apply(8, encode_command(Command(1, 2, Extension("tally", b"x"), time_s=4.0)))
    assert (refused.ok, refused.error) == (False, "not a number")
    unknown = kv.apply(9, encode_command(Command(1, 3, Extension("nope", b"1"), time_s=4.0)))
    assert (unknown.ok, unknown.error) == (False, "no state machine named 'nope'")


def test_a_retried_extension_command_applies_once() -> None:
    tally = Tally()
    kv = KVStore(machines={"tally": tally})
    command = encode_command(Command(5, 1, Extension("tally", b"2"), time_s=1.0))
    assert kv.apply(1, command).value == "2"
    assert kv.apply(2, command).value == "2"  # the saved result, not a second addition
    assert tally.total == 2


def test_snapshots_keep_the_old_format_until_a_machine_holds_state() -> None:
    plain = KVStore()
    with_machine = KVStore(machines={"tally": Tally()})
    for kv in (plain, with_machine):
        kv.apply(1, encode_command(Command(1, 1, Put("k", "v"), time_s=1.0)))
    assert with_machine.snapshot() == plain.snapshot()
    assert plain.snapshot()[1] == FORMAT_VERSION_WITH_CHANGES  # a put takes a revision
    with_machine.apply(2, encode_command(Command(1, 2, Extension("tally", b"9"), time_s=2.0)))
    data = with_machine.snapshot()
    assert data[1] == FORMAT_VERSION_WITH_MACHINES
    restored_tally = Tally()
    restored = KVStore(machines={"tally": restored_tally})
    restored.restore(data)
    assert restored_tally.total == 9
    assert restored.get("k") == "v"
    # A snapshot without machines restores a machine to empty.
    restored.restore(plain.snapshot())
    assert restored_tally.total == 0
