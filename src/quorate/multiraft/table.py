"""The range table: the meta group's replicated state machine.

Theory of operation. The meta group (group 0) replicates one ``RangeTable``
(CockroachDB's meta ranges, in one group). Like every state machine here it
is deterministic: ``apply`` reads no clock and no randomness, and refuses a
bad command with a ``MetaResult`` that names the reason, the same on every
replica. What it holds:

- the ranges, tiling the key space (``descriptor.check_tiling``, checked
  when the table is built and kept by every command);
- ``next_range_id``: ids handed to new ranges, each once, never reused
  (a range id is a group id, and a node keeps tombstones of the groups it
  left: a reused id would meet them);
- a record of every split and replica change made, keyed by what the
  request saw (``(range, generation)``; ``(range, old replicas)``), so a
  request repeated by a range leader that did not hear the answer — or by
  the next leader, finishing a split its predecessor started — gets the
  same answer instead of a second split.

Commands (``MetaOp``):

- ``SplitRange(range_id, generation, split_key)``: split the range at
  ``split_key`` if it is at that generation and the key lies strictly inside
  it; the left-hand side keeps the id and moves to the next generation, the
  right-hand side gets a new id and the same replicas. Answer: both.
- ``ChangeReplicas(range_id, expected, replicas)``: the range's replicas
  are now ``replicas``, if they were ``expected``.
- ``LookupKey(key)``, ``LookupRange(range_id, generation)``: reads (served
  by ReadIndex); the second also answers the split recorded for that
  generation, if any (how a new range leader finishes a split).

The whole table is the snapshot (a few dozen bytes per range).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Collection, Iterable

import msgspec

from quorate.core.host import MAX_GROUP_ID
from quorate.errors import ConfigError
from quorate.multiraft.descriptor import (
    RangeDescriptor,
    check_replicas,
    check_tiling,
    contains,
    describe,
)

__all__ = [
    "ChangeReplicas",
    "LookupKey",
    "LookupRange",
    "MetaOp",
    "MetaResult",
    "RangeTable",
    "SplitRange",
    "decode_meta_op",
    "decode_meta_result",
    "encode_meta_op",
    "encode_meta_result",
]


class SplitRange(msgspec.Struct, tag="split", array_like=True, frozen=True):
    range_id: int
    generation: int
    split_key: str


class ChangeReplicas(msgspec.Struct, tag="replicas", array_like=True, frozen=True):
    range_id: int
    expected: tuple[int, ...]
    replicas: tuple[int, ...]


class LookupKey(msgspec.Struct, tag="key", array_like=True, frozen=True):
    key: str


class LookupRange(msgspec.Struct, tag="range", array_like=True, frozen=True):
    range_id: int
    generation: int = 0


MetaOp = SplitRange | ChangeReplicas | LookupKey | LookupRange


class MetaResult(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """``ok`` with the ranges concerned, or a refusal with its reason."""

    ok: bool
    ranges: list[RangeDescriptor] = []
    error: str | None = None


class _Image(msgspec.Struct, array_like=True):
    ranges: list[RangeDescriptor]
    next_range_id: int
    splits: list[tuple[int, int, RangeDescriptor, RangeDescriptor]]
    changes: list[tuple[int, tuple[int, ...], tuple[int, ...]]]


_encoder = msgspec.msgpack.Encoder()
_op_decoder = msgspec.msgpack.Decoder(MetaOp)
_result_decoder = msgspec.msgpack.Decoder(MetaResult)
_image_decoder = msgspec.msgpack.Decoder(_Image)


def encode_meta_op(op: MetaOp) -> bytes:
    return _encoder.encode(op)


def decode_meta_op(data: bytes) -> MetaOp:
    """Raises ``msgspec.DecodeError``/``ValidationError`` on bad bytes."""
    op: MetaOp = _op_decoder.decode(data)
    return op


def encode_meta_result(result: MetaResult) -> bytes:
    return _encoder.encode(result)


def decode_meta_result(data: bytes) -> MetaResult:
    return _result_decoder.decode(data)


MALFORMED = MetaResult(ok=False, error="malformed meta command")


class RangeTable:
    """The replicated range table (see the module docstring). Built from
    ranges that tile the key space (else ``ConfigError`` with the reason)."""

    __slots__ = (
        "_by_id",
        "_changes",
        "_ranges",
        "_splits",
        "_starts",
        "applied_index",
        "next_deadline_s",
        "next_range_id",
        "nodes",
        "time_version",
        "time_wanted",
    )

    def __init__(self, descriptors: Iterable[RangeDescriptor], nodes: Collection[int] | None = None) -> None:
        ranges = sorted(descriptors, key=lambda d: d.start)
        why = check_tiling(ranges, nodes)
        if why is not None:
            raise ConfigError(f"bad range table: {why}")
        self.nodes = None if nodes is None else frozenset(nodes)
        """The node ids replicas must be among (None: any node id >= 1)."""
        self._ranges = ranges
        self._starts = [d.start for d in ranges]
        self._by_id = {d.range_id: d for d in ranges}
        self.next_range_id = max(d.range_id for d in ranges) + 1
        self._splits: dict[tuple[int, int], tuple[RangeDescriptor, RangeDescriptor]] = {}
        self._changes: dict[tuple[int, tuple[int, ...]], tuple[int, ...]] = {}
        self.applied_index = 0
        # The replica service's time-entry interface: the table keeps no time.
        self.time_version = 0
        self.next_deadline_s: float | None = None
        self.time_wanted = False

    # -- reading ----------------------------------------------------------
    def ranges(self) -> list[RangeDescriptor]:
        return list(self._ranges)

    def __len__(self) -> int:
        return len(self._ranges)

    def lookup(self, key: str) -> RangeDescriptor:
        """The range holding ``key``."""
        return self._ranges[bisect.bisect_right(self._starts, key) - 1]

    def get(self, range_id: int) -> RangeDescriptor | None:
        return self._by_id.get(range_id)

    @property
    def splits(self) -> int:
        """Splits made so far."""
        return len(self._splits)

    @property
    def moves(self) -> int:
        """Replica changes made so far."""
        return len(self._changes)

    # -- the service's state-machine interface ---------------------------------
    def apply(self, index: int, data: bytes) -> MetaResult:
        """Apply the command at log ``index`` (undecodable: refused)."""
        self.applied_index = index
        try:
            op = decode_meta_op(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return MALFORMED
        return self.execute(op)

    def read(self, op: MetaOp) -> MetaResult:
        if isinstance(op, LookupKey | LookupRange):
            return self.execute(op)
        return MetaResult(ok=False, error="not a read-only operation")

    def execute(self, op: MetaOp) -> MetaResult:
        if isinstance(op, LookupKey):
            return MetaResult(ok=True, ranges=[self.lookup(op.key)])
        if isinstance(op, LookupRange):
            current = self._by_id.get(op.range_id)
            if current is None:
                return MetaResult(ok=False, error=f"no range {op.range_id}")
            split = self._splits.get((op.range_id, op.generation))
            return MetaResult(ok=True, ranges=[current, *(split or ())])
        if isinstance(op, SplitRange):
            return self._split(op)
        return self._change_replicas(op)

    def _split(self, op: SplitRange) -> MetaResult:
        splits = self._splits
        done = splits.get((op.range_id, op.generation))
        if done is not None:
            return MetaResult(ok=True, ranges=list(done))
        current = self._by_id.get(op.range_id)
        if current is None:
            return MetaResult(ok=False, error=f"no range {op.range_id}")
        if current.generation != op.generation:
            return MetaResult(
                ok=False,
                ranges=[current],
                error=f"{describe(current)} is at generation {current.generation}, not {op.generation}",
            )
        if op.split_key == current.start or not contains(current, op.split_key):
            return MetaResult(
                ok=False, ranges=[current], error=f"split key {op.split_key!r} is not inside {describe(current)}"
            )
        if self.next_range_id > MAX_GROUP_ID:
            return MetaResult(ok=False, error="range ids are exhausted")
        left = RangeDescriptor(current.range_id, current.start, op.split_key, current.replicas, current.generation + 1)
        right = RangeDescriptor(self.next_range_id, op.split_key, current.end, current.replicas, 1)
        self.next_range_id += 1
        i = bisect.bisect_left(self._starts, current.start)
        self._ranges[i : i + 1] = [left, right]
        self._starts[i : i + 1] = [left.start, right.start]
        self._by_id[left.range_id] = left
        self._by_id[right.range_id] = right
        splits[(op.range_id, op.generation)] = (left, right)
        return MetaResult(ok=True, ranges=[left, right])

    def _change_replicas(self, op: ChangeReplicas) -> MetaResult:
        changes = self._changes
        current = self._by_id.get(op.range_id)
        if current is None:
            return MetaResult(ok=False, error=f"no range {op.range_id}")
        if current.replicas == op.replicas:
            return MetaResult(ok=True, ranges=[current])  # done already (a repeated request)
        if current.replicas != op.expected:
            return MetaResult(
                ok=False,
                ranges=[current],
                error=f"{describe(current)} has replicas {list(current.replicas)}, not {list(op.expected)}",
            )
        why = check_replicas(op.replicas, self.nodes)
        if why is not None:
            return MetaResult(ok=False, ranges=[current], error=why)
        moved = RangeDescriptor(current.range_id, current.start, current.end, op.replicas, current.generation)
        self._ranges[bisect.bisect_left(self._starts, current.start)] = moved
        self._by_id[moved.range_id] = moved
        changes[(op.range_id, op.expected)] = op.replicas
        return MetaResult(ok=True, ranges=[moved])

    # -- snapshots ------------------------------------------------------------
    def snapshot(self) -> bytes:
        splits = sorted((r, g, left, right) for (r, g), (left, right) in self._splits.items())
        changes = sorted((r, old, new) for (r, old), new in self._changes.items())
        return _encoder.encode(_Image(self._ranges, self.next_range_id, splits, changes))

    def restore(self, data: bytes) -> None:
        image = _image_decoder.decode(data)
        why = check_tiling(image.ranges, self.nodes)
        if why is not None:
            raise ValueError(f"range table snapshot does not tile the key space: {why}")
        self._ranges = sorted(image.ranges, key=lambda d: d.start)
        self._starts = [d.start for d in self._ranges]
        self._by_id = {d.range_id: d for d in self._ranges}
        self.next_range_id = image.next_range_id
        self._splits = {(r, g): (left, right) for r, g, left, right in image.splits}
        self._changes = {(r, old): new for r, old, new in image.changes}
        self.time_version += 1

    def state_digest(self) -> bytes:
        """A digest of the table (for the agreement checks of the simulator)."""
        return hashlib.blake2b(self.snapshot(), digest_size=16).digest()
