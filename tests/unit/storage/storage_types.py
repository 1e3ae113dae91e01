"""The protocol-like types and entries both storage engines' tests write."""

from __future__ import annotations

import msgspec

from quorate.core.ready import Entry


class HardState(msgspec.Struct, frozen=True, array_like=True):
    term: int
    vote: int | None
    commit: int


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    index: int
    term: int
    data: bytes


class OtherState(msgspec.Struct, frozen=True, array_like=True):
    """Another protocol's hard state: opening a store with it must fail."""

    view: int


def entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, 0, f"e{i}t{term}".encode()) for i in range(lo, hi + 1)]
