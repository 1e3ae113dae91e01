"""Replicated locks with leases and fencing tokens.

Theory of operation (Chubby's sequencers, Kleppmann's fencing tokens). A
lock is free or held by one holder until a deadline in log time. Granting
it hands out a fencing token larger than every token granted before (the
counter is shared with task claims), so a resource that remembers the
largest token it has seen can refuse a holder whose lease ran out while it
was paused. The holder asking again before its deadline renews the lease
and keeps its token. Release needs the holder's name and its token.

The store is itself such a resource: ``FencedPut`` writes a key only while
the token it carries is the lock's live token, checked at the write's log
position, so two agents can never both write under one lock, whatever their
clocks or pauses.

Every grant, renewal, release and expiry is written to the change history
in namespace ``@locks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from quorate.state.agents.env import AgentEnv, Outcome, lease_fault, name_fault, refuse, to_json
from quorate.state.agents.ops import FencedPut, LockAcquire, LockRelease, LockStatus

NAMESPACE = "@locks"
MAX_LOCKS = 100_000
LEASE_KIND = "lock"


@dataclass(slots=True)
class Lock:
    name: str
    holder: str
    token: int
    deadline_s: float
    acquired_s: float

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "holder": self.holder,
            "token": self.token,
            "expires_s": self.deadline_s,
            "acquired_s": self.acquired_s,
        }


class _LockRecord(msgspec.Struct, array_like=True):
    name: str
    holder: str
    token: int
    deadline_s: float
    acquired_s: float


class Locks:
    """The lock state machine (see the module docstring)."""

    __slots__ = ("env", "held")

    def __init__(self, env: AgentEnv) -> None:
        self.env = env
        self.held: dict[str, Lock] = {}

    def acquire(self, op: LockAcquire) -> Outcome:
        fault = name_fault("lock name", op.name) or name_fault("holder", op.holder) or lease_fault(op.lease_s)
        if fault is not None:
            return refuse(fault)
        env = self.env
        lock = self.held.get(op.name)
        if lock is not None and lock.holder != op.holder:
            return refuse(f"lock {op.name!r} is held by {lock.holder!r} until {lock.deadline_s:.3f}", lock.view())
        if lock is None:
            if len(self.held) >= MAX_LOCKS:
                return refuse(f"too many locks held ({MAX_LOCKS})")
            lock = Lock(op.name, op.holder, env.next_token(), env.now_s + op.lease_s, env.now_s)
            self.held[op.name] = lock
            kind = "lock.acquired"
        else:
            lock.deadline_s = env.now_s + op.lease_s
            kind = "lock.renewed"
        env.schedule(lock.deadline_s, LEASE_KIND, lock.name, lock.token)
        view = lock.view()
        env.emit(kind, NAMESPACE, lock.name, view)
        return Outcome(True, to_json({"lock": view, "acquired": True}))

    def _holder_fault(self, name: str, token: int, holder: str | None) -> tuple[Lock | None, Outcome | None]:
        lock = self.held.get(name)
        if lock is None:
            return None, refuse(f"lock {name!r} is not held (its lease may have expired)")
        if token != lock.token:
            return None, refuse(
                f"stale fencing token {token}: lock {name!r} is held with token {lock.token}", lock.view()
            )
        if holder is not None and holder != lock.holder:
            return None, refuse(f"lock {name!r} is held by {lock.holder!r}, not {holder!r}", lock.view())
        return lock, None

    def release(self, op: LockRelease) -> Outcome:
        lock, refusal = self._holder_fault(op.name, op.token, op.holder)
        if refusal is not None:
            return refusal
        assert lock is not None
        del self.held[op.name]
        self.env.emit("lock.released", NAMESPACE, op.name, lock.view())
        return Outcome(True, to_json({"released": True, "lock": lock.view()}))

    def fenced_put(self, op: FencedPut, write: Callable[[str, str, str], None]) -> Outcome:
        _, refusal = self._holder_fault(op.lock, op.token, None)
        if refusal is not None:
            self.env.note("lock.write_refused", op.lock, {"token": op.token, "reason": refusal.error})
            return refusal
        write(op.namespace, op.key, op.value)
        return Outcome(True, to_json({"written": True, "token": op.token}))

    def expired(self, name: str, token: int, deadline_s: float) -> None:
        lock = self.held.get(name)
        if lock is None or lock.token != token or lock.deadline_s != deadline_s:
            return  # released, renewed or re-granted since
        del self.held[name]
        self.env.emit("lock.expired", NAMESPACE, name, lock.view())

    def status(self, op: LockStatus) -> Outcome:
        lock = self.held.get(op.name)
        return Outcome(True, to_json({"name": op.name, "held": lock is not None, "lock": lock and lock.view()}))

    # -- snapshots ---------------------------------------------------------------
    def state(self) -> list[_LockRecord]:
        return [_LockRecord(k.name, k.holder, k.token, k.deadline_s, k.acquired_s) for k in self.held.values()]

    def restore(self, records: list[_LockRecord]) -> None:
        self.held = {r.name: Lock(r.name, r.holder, r.token, r.deadline_s, r.acquired_s) for r in records}


__all__ = ["MAX_LOCKS", "NAMESPACE", "Lock", "Locks"]
