"""A shard member under dynamic sharding: its side of a hand-off (docs/hrb.md
section 10, ``quorate.hrb.reshard``).

Theory of operation. ``ReshardingShardMember`` is a ``ShardMember`` (the node
host's ``CrossGroupOutput`` role) that also reports hand-off states. When its
store's ``ShardHandoff`` has taken the state of a route leaving this shard
(``ready``), the member signs a ``HandoffReport`` with it and sends it to
every member of the core epoch it knows, with its other messages for the
core, and again every ``resend_s`` until the change settles in its log (a
report lost, a core view change, an epoch change: the core counts one
report per member, so repeats are harmless). Every member reports, not only
the leader: the core needs f + 1 matching states, so one lying member cannot
hand off a forged state.

``ReshardingPartitionMember`` is the same member with partition handling on
(``quorate.hrb.partition.Reconciliation``): it also reconciles
after a cut, and fetches the certificates of a map change it missed.
"""

from __future__ import annotations

from typing import Any

from quorate.core.host import GroupMessage
from quorate.hrb.partition import Reconciliation, Reconciling, ShardView
from quorate.hrb.reshard import HandoffReport, handoff_bytes
from quorate.hrb.shard.state import ShardStore
from quorate.hrb.system import ShardMember, route_to_core

__all__ = ["ReshardingPartitionMember", "ReshardingShardMember"]

RESEND_S = 1.0


class ReshardingShardMember(ShardMember):
    """``ShardMember`` plus hand-off reports (see the module docstring)."""

    __slots__ = ("_now", "_sent", "reports", "resend_s")

    def __init__(self, member: Any, store: ShardStore, *, resend_s: float = RESEND_S, now: float = 0.0) -> None:
        super().__init__(member, store)
        self.resend_s = resend_s
        self._now = now
        self._sent: dict[tuple[int, int, int], float] = {}
        """(seq, source, target) -> when this member last reported it."""
        self.reports = 0

    def step(self, sender: Any, message: Any, now: float) -> None:
        self._now = max(self._now, now)
        super().step(sender, message, now)

    def tick(self, now: float) -> None:
        self._now = max(self._now, now)
        super().tick(now)

    def propose(self, command: bytes, now: float) -> Any:
        self._now = max(self._now, now)
        return super().propose(command, now)

    def has_ready(self) -> bool:
        return super().has_ready() or bool(self._due())

    def wake_at(self) -> float | None:
        wake = super().wake_at()
        handoff = self._store.handoff
        if handoff is None or not handoff.ready:
            return wake
        times = [self._sent.get((seq, s, t), self._now - self.resend_s) + self.resend_s
                 for (s, t), (seq, _, _) in handoff.ready.items()]
        earliest = min(times)
        return earliest if wake is None else min(wake, earliest)

    def _due(self) -> list[tuple[tuple[int, int], tuple[int, int, bytes]]]:
        handoff = self._store.handoff
        if handoff is None:
            return []
        due = []
        for route, (seq, version, state) in sorted(handoff.ready.items()):
            sent = self._sent.get((seq, *route))
            if sent is None or self._now >= sent + self.resend_s:
                due.append((route, (seq, version, state)))
        return due

    def take_outbound(self) -> list[GroupMessage]:
        out = super().take_outbound()
        due = self._due()
        if not due:
            return out
        signer = getattr(self.member, "signer", None) or self.member.inner.signer
        reports = []
        for (source, target), (seq, version, state) in due:
            unsigned = HandoffReport(seq, version, int(self.id), source, target, state, b"")
            reports.append(
                HandoffReport(seq, version, int(self.id), source, target, state, signer.sign(handoff_bytes(unsigned)))
            )
            self._sent[(seq, source, target)] = self._now
        self.reports += len(reports)
        live = {(seq, *route) for route, (seq, _, _) in self._store.handoff.ready.items()}
        self._sent = {k: v for k, v in self._sent.items() if k in live}
        return out + route_to_core(reports, self._store)  # type: ignore[arg-type]


class ReshardingPartitionMember(Reconciling, ReshardingShardMember):
    """``ReshardingShardMember`` that reconciles after a partition (see the module docstring)."""

    __slots__ = ("reconciliation",)

    def __init__(
        self, member: Any, store: ShardStore, view: ShardView, *, resend_s: float = RESEND_S, now: float = 0.0
    ) -> None:
        super().__init__(member, store, resend_s=resend_s, now=now)
        self.reconciliation = Reconciliation(view)
