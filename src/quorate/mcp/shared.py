"""Shared counters, sets and texts for agents that may be offline: CRDTs
whose states meet in the replicated store.

Theory of operation. Each MCP server is a CRDT replica with its own id. A
counter is a PN-Counter, a set an OR-Set (add wins), a text a FugueMax
``Text`` (``quorate.crdt``). An operation is applied to the local replica
first — it always succeeds, with the cluster reachable or not — then the
replica *syncs*: it reads every replica's encoded state of that object from
the store (keys ``<kind>/<name>/<replica>`` in namespace ``quorate.crdt``),
merges them (merging is commutative, associative and idempotent, so the
order and repeats do not matter), and writes its own merged state back
under its own key. No replica ever overwrites another's key, so no write is
lost and nothing needs a lock; a replica that was cut off syncs at its next
operation (``synced`` says whether this one did).
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

from quorate.client.contact import ClientError, ClusterUnreachable
from quorate.crdt import ORSet, PNCounter, Text
from quorate.state.kv import List, Put, Result

NAMESPACE = "quorate.crdt"
KINDS = ("counter", "set", "text")
LIST_LIMIT = 10_000


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


class SharedObjects:
    """This server's replicas of the shared objects (see the module docstring)."""

    def __init__(self, replica: int, execute: Any) -> None:
        self.replica = replica
        self._execute = execute
        self.counters: dict[str, PNCounter] = {}
        self.sets: dict[str, ORSet] = {}
        self.texts: dict[str, Text] = {}

    def counter(self, name: str) -> PNCounter:
        return self.counters.setdefault(name, PNCounter())

    def set(self, name: str) -> ORSet:
        found = self.sets.get(name)
        if found is None:
            found = self.sets[name] = ORSet(self.replica)
        return found

    def text(self, name: str) -> Text:
        found = self.texts.get(name)
        if found is None:
            found = self.texts[name] = Text(self.replica)
        return found

    async def sync(self, kind: str, name: str) -> bool:
        """Merge every replica's state of ``kind/name`` and publish ours; False
        when the cluster could not be reached (the local state still holds)."""
        prefix = f"{kind}/{name}/"
        try:
            result: Result = await self._execute(List(prefix, NAMESPACE, LIST_LIMIT), write=False)
            for key, value in result.items or []:
                with contextlib.suppress(ValueError):
                    self._merge(kind, name, int(key[len(prefix) :]), _decode(value))
            await self._execute(Put(f"{prefix}{self.replica}", _encode(self._state(kind, name)), NAMESPACE))
        except (ClusterUnreachable, TimeoutError, ClientError, OSError):
            return False
        return True

    def _merge(self, kind: str, name: str, replica: int, data: bytes) -> None:
        if replica == self.replica and kind != "counter":
            return  # our own state is never behind what we published
        if kind == "counter":
            self.counter(name).merge(PNCounter.decode(data))
        elif kind == "set":
            self.set(name).merge(ORSet.decode(data, self.replica))
        else:
            self.text(name).merge(Text.decode(data, self.replica))

    def _state(self, kind: str, name: str) -> bytes:
        if kind == "counter":
            return self.counter(name).encode()
        if kind == "set":
            return self.set(name).encode()
        return self.text(name).encode()


__all__ = ["KINDS", "NAMESPACE", "SharedObjects"]
