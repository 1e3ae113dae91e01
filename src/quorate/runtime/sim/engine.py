"""The discrete-event loop at the bottom of the simulator.

Theory of operation (after FoundationDB's simulation and TigerBeetle's VOPR):
simulated time only moves when the loop pops the next event from a binary heap.
Every event is one flat tuple ``(time_s, seq, kind, dst, src, payload, size)``:

- ``time_s``: simulated seconds at which it happens;
- ``seq``: a counter that breaks ties, so two events at the same instant always
  run in the order they were scheduled (the heap never compares payloads);
- ``kind``: a small int indexing a handler table (no isinstance chains);
- ``dst``/``src``/``payload``/``size``: meaning fixed by the kind (for a message:
  receiver, sender, the message object, its encoded size in bytes).

Determinism: one master seed fixes every random stream through ``derive_rng``
(string seeds are hashed with SHA-512 by CPython, so the derivation is stable
across runs and machines). Given the same seed and configuration the loop
processes the same events in the same order; ``trace_sha256`` proves it. The
trace is a running SHA-256 over the msgpack encoding of every popped event tuple
(time, seq, kind, endpoints, the message itself, its size), fed in batches of
``TRACE_BATCH_EVENTS`` so hashing costs no per-event allocation.

Invariants:
- time never goes backwards: an event is never scheduled before ``now``;
- handlers run one at a time, to completion, in (time, seq) order.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import msgspec

from quorate.errors import LocalProtocolError

Event = tuple[float, int, int, int, int, Any, int]
"""``(time_s, seq, kind, dst, src, payload, size)``."""

Handler = Callable[[Event], object]
"""Called with the event; any return value is ignored."""

TRACE_BATCH_EVENTS = 4096
"""Events buffered before they are encoded into the trace hash."""


def derive_rng(seed: int, purpose: str, node: int | None = None) -> random.Random:
    """A random stream for one purpose (and node), fixed by the master seed."""
    if node is None:
        return random.Random(f"{seed}:{purpose}")
    return random.Random(f"{seed}:{purpose}:{node}")


def _trace_default(obj: Any) -> Any:
    """Encode payloads msgspec does not know natively by their stable repr."""
    return repr(obj)


class EventLoop:
    """A heap of timed events and a table of handlers, one per event kind."""

    __slots__ = (
        "_buffer",
        "_encoder",
        "_handlers",
        "_hash",
        "_heap",
        "_seq",
        "events",
        "now",
        "skipped",
    )

    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = itertools.count()
        self._handlers: list[Handler] = []
        self._buffer: list[Event] = []
        self._hash = hashlib.sha256()
        self._encoder = msgspec.msgpack.Encoder(enc_hook=_trace_default)
        self.now = 0.0
        self.events = 0
        """Events popped and handed to a handler."""
        self.skipped = 0
        """Events a handler found stale (a superseded timer): cheap, not work."""

    def add_kind(self, handler: Handler) -> int:
        """Register a handler; returns the ``kind`` number to schedule it with."""
        self._handlers.append(handler)
        return len(self._handlers) - 1

    def schedule(self, time_s: float, kind: int, dst: int, src: int, payload: Any, size: int) -> None:
        """Queue an event. Scheduling in the past is a caller bug."""
        if time_s < self.now:
            raise LocalProtocolError(f"event at {time_s!r} s scheduled before now ({self.now!r} s)")
        heappush(self._heap, (time_s, next(self._seq), kind, dst, src, payload, size))

    def fast_path(self) -> tuple[list[Event], Callable[[], int]]:
        """The heap and the sequence counter, for callers on the hot path that
        push ``(time_s, next(counter), kind, dst, src, payload, size)`` themselves
        and guarantee ``time_s >= now``."""
        return self._heap, self._seq.__next__

    def pending(self) -> int:
        """Events queued and not yet run."""
        return len(self._heap)

    def next_time(self) -> float | None:
        """Time of the next event, or ``None`` when the heap is empty."""
        return self._heap[0][0] if self._heap else None

    def run(self, until_s: float) -> None:
        """Process events with ``time <= until_s`` in order; ``now`` ends at ``until_s``."""
        heap = self._heap
        handlers = self._handlers
        buffer = self._buffer
        record = buffer.append
        pop = heappop
        count = 0
        try:
            while heap:
                event = heap[0]
                if event[0] > until_s:
                    break
                pop(heap)
                self.now = event[0]
                record(event)
                count += 1
                if len(buffer) >= TRACE_BATCH_EVENTS:
                    self._hash.update(self._encoder.encode(buffer))
                    buffer.clear()
                handlers[event[2]](event)
        finally:
            self.events += count
        if self.now < until_s:
            self.now = until_s

    def trace_sha256(self) -> str:
        """Hex SHA-256 of every event processed so far."""
        if self._buffer:
            self._hash.update(self._encoder.encode(self._buffer))
            self._buffer.clear()
        return self._hash.hexdigest()
