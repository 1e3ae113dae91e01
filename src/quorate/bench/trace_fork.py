"""Fork a sequential editing trace into a concurrent one (seeded).

Theory of operation
-------------------
No concurrent trace ships with the project, and the published ones are short
two-user sessions, so the concurrent benchmark forks a real sequential trace
(the automerge-paper trace by default) into several users with branches and
merges. The result is written in the editing-traces concurrent format and
merges to the **same final text** as the sequential trace, which checks every
replay that reads it.

1. **Replay once.** The sequential trace is replayed on one ``Text``; this
   names every character ever typed and, from the final document (tombstones
   included), gives each one a *rank*: its place in the order of all characters.
   An edit is then "insert these ranks" or "delete these ranks".
2. **Hand the edits out.** The sequential edits are cut into *segments*
   (lengths drawn with mean ``segment_edits``), each typed by a random user.
   A user sees its own edits and the other users' transactions up to a
   *watermark*: at the start of each transaction it moves to at most
   ``lag_transactions`` behind the newest one (a random lag per segment, like
   network latency), except in segments typed *offline* (probability
   ``offline_probability``), where it does not move at all: a long branch that
   is merged when the user comes back.
3. **Translate positions.** Each user's view is a Fenwick tree over ranks
   (1 = visible to that user). An edit's position in the user's view is the
   number of ranks visible to it before the edit's first rank. Following the
   published traces' rule that no two users insert concurrently at the same
   place, an insert whose gap in the view (between the neighbouring visible
   ranks) holds a character the user has not seen, or a delete of such a
   character, first makes the user catch up with everything (a sync, which
   ends the transaction). Deletes whose characters are no longer adjacent in
   the view become several patches.
4. **Transactions.** A user's consecutive edits are grouped into transactions
   of 1..``max_patches`` patches. Parents are the frontier of what the user has
   seen (its own last transaction and the others' last seen ones, minus any
   that another of them already includes), so merges of three or more parents
   appear when three or more users' work comes together. A last transaction
   without patches merges every head, so the trace ends in one version.

The view translation keeps each character's neighbours as the sequential
author had them, so every merge order gives the sequential ``endContent``.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from typing import Any

from quorate.crdt import Text
from quorate.errors import ConfigError

SOURCE_REPLICA = 1
"""Replica id of the one-replica replay that names the characters."""


@dataclass(frozen=True, slots=True)
class ForkSettings:
    """How a sequential trace is forked (see the module docstring)."""

    agents: int = 3
    segment_edits: int = 300
    """Mean number of edits one user types before another takes over."""
    lag_transactions: int = 40
    """A user sees the others' work at most this many transactions late."""
    offline_probability: float = 0.15
    """Chance that a segment is typed without seeing anyone else's edits."""
    max_patches: int = 4
    """Patches per transaction: 1 up to this many."""
    seed: int = 0

    def validate(self) -> ForkSettings:
        if self.agents < 2:
            raise ConfigError(f"--fork needs at least 2 users, got {self.agents}")
        if self.segment_edits < 1:
            raise ConfigError(f"segment_edits must be >= 1, got {self.segment_edits}")
        if self.lag_transactions < 0:
            raise ConfigError(f"lag_transactions must be >= 0, got {self.lag_transactions}")
        if not 0.0 <= self.offline_probability <= 1.0:
            raise ConfigError(
                f"offline_probability must be in [0, 1], got {self.offline_probability}"
            )
        if self.max_patches < 1:
            raise ConfigError(f"max_patches must be >= 1, got {self.max_patches}")
        return self


class _Fenwick:
    """Counts over ranks ``0..n-1``: point updates, prefix sums, k-th one."""

    __slots__ = ("size", "top", "tree")

    def __init__(self, size: int) -> None:
        self.size = size
        self.tree = array("l", bytes(8 * (size + 1)))
        top = 1
        while top * 2 <= size:
            top *= 2
        self.top = top

    def add(self, index: int, delta: int) -> None:
        tree, n = self.tree, self.size
        i = index + 1
        while i <= n:
            tree[i] += delta
            i += i & -i

    def prefix(self, index: int) -> int:
        """The sum over ranks ``0..index-1``."""
        tree = self.tree
        total = 0
        i = index
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def kth(self, k: int) -> int:
        """The rank holding the ``k``-th one (k >= 1), or ``size`` if none."""
        tree, n = self.tree, self.size
        pos = 0
        step = self.top
        while step:
            nxt = pos + step
            if nxt <= n and tree[nxt] < k:
                pos = nxt
                k -= tree[nxt]
            step >>= 1
        return pos


@dataclass(slots=True)
class _Edit:
    """One sequential patch as ranks: deleted (in document order), then inserted."""

    deleted: list[int]
    inserted: list[int]
    text: str
    time: str | None


def _source_edits(
    start: str, patches: list[tuple[int, int, str, str | None]]
) -> tuple[list[_Edit], int]:
    """Replay ``patches`` on one replica; return them as ranks and the rank count."""
    doc = Text(SOURCE_REPLICA)
    raw: list[tuple[list[tuple[int, int]], int, int, str, str | None]] = []
    if start:
        patches = [(0, 0, start, None), *patches]
    for pos, deleted, inserted, time in patches:
        ranges: list[tuple[int, int]] = []
        if deleted:
            for run in doc.delete(pos, deleted).deletes:
                ranges.append((run.target_counter, run.target_counter + run.length))
        low = doc.version.get(SOURCE_REPLICA, 0)
        if inserted:
            doc.insert(pos, inserted)
        raw.append((ranges, low, len(inserted), inserted, time))
    rank_of = array("l", [-1]) * doc.version.get(SOURCE_REPLICA, 0)
    rank = 0
    for _, counter, length, _ in doc.id_runs():
        for c in range(counter, counter + length):
            rank_of[c] = rank
            rank += 1
    edits = [
        _Edit(
            [rank_of[c] for low, high in ranges for c in range(low, high)],
            [rank_of[c] for c in range(low, low + length)],
            text,
            time,
        )
        for ranges, low, length, text, time in raw
    ]
    return edits, rank


class _User:
    __slots__ = ("offline", "seen", "txns", "unknown", "vector", "view")

    def __init__(self, agents: int, ranks: int) -> None:
        self.view = _Fenwick(ranks)
        self.unknown: list[int] = []
        """Sorted ranks inserted by transactions this user has not seen."""
        self.seen = 0
        """Watermark: every other user's transaction below it is seen."""
        self.vector = [0] * agents
        """Transactions of each user in this user's version."""
        self.txns: list[int] = []
        """Indexes of this user's transactions."""
        self.offline = False


class _Forker:
    def __init__(self, edits: list[_Edit], ranks: int, settings: ForkSettings) -> None:
        self.edits = edits
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.users = [_User(settings.agents, ranks) for _ in range(settings.agents)]
        self.txns: list[dict[str, Any]] = []
        self.txn_agent: list[int] = []
        self.txn_vector: list[tuple[int, ...]] = []
        self.txn_edits: list[list[_Edit]] = []
        self.syncs_forced = 0

    # -------------------------------------------------------------- views
    def _see(self, user: _User, agent: int, upto: int) -> None:
        """Let ``user`` (number ``agent``) see every other transaction below ``upto``."""
        view, unknown = user.view, user.unknown
        for t in range(user.seen, upto):
            if self.txn_agent[t] == agent:
                continue
            user.vector[self.txn_agent[t]] += 1
            for edit in self.txn_edits[t]:
                for r in edit.inserted:
                    view.add(r, 1)
                    del unknown[bisect_left(unknown, r)]
                for r in edit.deleted:
                    view.add(r, -1)
        user.seen = max(user.seen, upto)

    def _knows(self, user: _User, rank: int) -> bool:
        unknown = user.unknown
        i = bisect_left(unknown, rank)
        return i == len(unknown) or unknown[i] != rank

    def _translate(self, user: _User, edit: _Edit) -> list[list[Any]] | None:
        """The edit as patches in ``user``'s view, or None when it needs a sync."""
        view = user.view
        patches: list[list[Any]] = []
        if edit.deleted:
            positions = []
            for r in edit.deleted:
                if not self._knows(user, r):
                    return None
                positions.append(view.prefix(r))
            groups: list[list[int]] = []
            for v in positions:
                if groups and v == groups[-1][0] + groups[-1][1]:
                    groups[-1][1] += 1
                else:
                    groups.append([v, 1])
            # Right to left, so each patch's position holds after the previous ones.
            patches += [[start, length, ""] for start, length in reversed(groups)]
        if edit.inserted:
            # The insert sees the view after this edit's own deletes.
            for r in edit.deleted:
                view.add(r, -1)
            try:
                insert = self._insert_patch(user, edit)
            finally:
                for r in edit.deleted:
                    view.add(r, 1)
            if insert is None:
                return None
            patches.append(insert)
        return patches

    def _insert_patch(self, user: _User, edit: _Edit) -> list[Any] | None:
        view = user.view
        before = view.prefix(edit.inserted[0])
        left = view.kth(before) if before else -1
        right = view.kth(before + 1)
        unknown = user.unknown
        i = bisect_right(unknown, left)
        if i < len(unknown) and unknown[i] < right:
            return None  # a character this user has not seen shares the gap
        return [before, 0, edit.text]

    def _apply_own(self, user: _User, agent: int, edit: _Edit) -> None:
        view = user.view
        for r in edit.deleted:
            view.add(r, -1)
        for r in edit.inserted:
            view.add(r, 1)
        for other, peer in enumerate(self.users):
            if other != agent:
                for r in edit.inserted:
                    insort(peer.unknown, r)

    # -------------------------------------------------------- transactions
    def _parents(self, user: _User) -> list[int]:
        candidates = []
        for agent, count in enumerate(user.vector):
            if count:
                candidates.append((agent, self.users[agent].txns[count - 1]))
        out = []
        for agent, txn in candidates:
            dominated = any(
                other != txn and self.txn_vector[other][agent] >= user.vector[agent]
                for _, other in candidates
            )
            if not dominated:
                out.append(txn)
        return sorted(out)

    def _open(self, agent: int, lag: int) -> None:
        """Start a transaction of ``agent``: move its watermark, name its parents."""
        user = self.users[agent]
        upto = len(self.txns) if lag < 0 else max(len(self.txns) - lag, min(1, len(self.txns)))
        if not user.offline or lag < 0 or user.seen == 0:
            self._see(user, agent, max(upto, user.seen))
        parents = self._parents(user)
        user.vector[agent] += 1
        index = len(self.txns)
        user.txns.append(index)
        self.txn_agent.append(agent)
        self.txn_vector.append(tuple(user.vector))
        self.txn_edits.append([])
        self.txns.append({"parents": parents, "numChildren": 0, "agent": agent, "patches": []})

    def run(self) -> dict[str, Any]:
        settings, rng, edits = self.settings, self.rng, self.edits
        agent = rng.randrange(settings.agents)
        i = 0
        txn_room = 0
        while i < len(edits):
            # A new segment: someone else takes over.
            if self.txns:
                agent = (agent + rng.randrange(1, settings.agents)) % settings.agents
            user = self.users[agent]
            user.offline = rng.random() < settings.offline_probability
            lag = rng.randint(0, settings.lag_transactions)
            segment = max(1, int(rng.expovariate(1.0 / settings.segment_edits)))
            txn_room = 0
            for edit in edits[i : i + segment]:
                if txn_room == 0:
                    self._open(agent, lag)
                    txn_room = rng.randint(1, settings.max_patches)
                patches = self._translate(user, edit)
                if patches is None:
                    if self.txns[-1]["patches"]:
                        self._open(agent, -1)
                        txn_room = rng.randint(1, settings.max_patches)
                    else:
                        self._see(user, agent, len(self.txns) - 1)
                        self._reparent(agent)
                    self.syncs_forced += 1
                    patches = self._translate(user, edit)
                    if patches is None:
                        raise AssertionError("a user who has seen everything must see the gap")
                txn = self.txns[-1]
                if not txn["patches"] and edit.time is not None:
                    txn["time"] = edit.time
                txn["patches"] += patches
                self.txn_edits[-1].append(edit)
                self._apply_own(user, agent, edit)
                txn_room -= 1
            i += segment
        self._close()
        return self._result()

    def _reparent(self, agent: int) -> None:
        """Recompute the parents of ``agent``'s open (still empty) transaction."""
        user = self.users[agent]
        user.vector[agent] -= 1
        self.txns[-1]["parents"] = self._parents(user)
        user.vector[agent] += 1
        self.txn_vector[-1] = tuple(user.vector)

    def _close(self) -> None:
        children = [0] * len(self.txns)
        for txn in self.txns:
            for parent in txn["parents"]:
                children[parent] += 1
        heads = [i for i, n in enumerate(children) if n == 0]
        if len(heads) > 1:
            agent = self.txn_agent[-1]
            self._open(agent, -1)
            children.append(0)
            for parent in self.txns[-1]["parents"]:
                children[parent] += 1
        for txn, n in zip(self.txns, children):
            txn["numChildren"] = n

    def _result(self) -> dict[str, Any]:
        return {
            "kind": "concurrent",
            "endContent": "",
            "numAgents": self.settings.agents,
            "txns": self.txns,
        }


def fork_trace(
    start: str,
    end: str,
    patches: list[tuple[int, int, str, str | None]],
    settings: ForkSettings,
) -> tuple[dict[str, Any], dict[str, int]]:
    """Fork sequential ``patches`` (position, deleted, inserted, time) into a
    concurrent trace in the editing-traces format; return it and a few counts
    describing its shape."""
    settings.validate()
    edits, ranks = _source_edits(start, patches)
    forker = _Forker(edits, ranks, settings)
    raw = forker.run()
    raw["endContent"] = end
    txns = raw["txns"]
    shape = {
        "transactions": len(txns),
        "merges": sum(1 for t in txns if len(t["parents"]) > 1),
        "max_parents": max((len(t["parents"]) for t in txns), default=0),
        "forks": sum(1 for t in txns if t["numChildren"] > 1),
        "multi_patch_transactions": sum(1 for t in txns if len(t["patches"]) > 1),
        "forced_syncs": forker.syncs_forced,
    }
    return raw, shape
