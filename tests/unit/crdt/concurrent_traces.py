"""Concurrent editing traces for tests, in the editing-traces concurrent format.

``random_concurrent_trace`` makes one by real collaboration: every agent edits
its own ``Text`` replica and now and then merges another agent's, and each
transaction's parents are the frontier of what the agent had seen. The trace's
``endContent`` is the merge of all replicas, so any replay must reproduce what
replicas exchanging deltas computed -- including concurrent inserts at the
same place, which the published traces leave out.
"""

from __future__ import annotations

import random
from typing import Any

from quorate.crdt import Text


def with_children(txns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill in ``numChildren`` (and a ``time``) of hand-written transactions."""
    counts = [0] * len(txns)
    for txn in txns:
        for parent in txn.get("parents", ()):
            if type(parent) is int and 0 <= parent < len(txns):
                counts[parent] += 1
    return [
        {"time": "2024-01-01T00:00:00Z", **txn, "numChildren": n} for txn, n in zip(txns, counts)
    ]


def concurrent_trace(end: str, agents: int, txns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "concurrent",
        "endContent": end,
        "numAgents": agents,
        "txns": with_children(txns),
    }


def random_concurrent_trace(
    rng: random.Random,
    agents: int = 3,
    transactions: int = 60,
    merge_probability: float = 0.3,
    alphabet: str = "abcdefgh",
) -> dict[str, Any]:
    replicas = [Text(a) for a in range(agents)]
    heads: list[set[int]] = [set() for _ in range(agents)]
    versions: list[dict[int, int]] = []

    def frontier(candidates: set[int]) -> set[int]:
        def below(i: int, j: int) -> bool:
            vi, vj = versions[i], versions[j]
            return i != j and all(vj.get(r, 0) >= c for r, c in vi.items())

        return {i for i in candidates if not any(below(i, j) for j in candidates)}

    typing_at = [-1] * agents  # where each agent's last insert ended (typing on)
    txns: list[dict[str, Any]] = []
    for _ in range(transactions):
        agent = rng.randrange(agents)
        doc = replicas[agent]
        if agents > 1 and rng.random() < merge_probability:
            others = [a for a in range(agents) if a != agent]
            for other in rng.sample(others, rng.randint(1, len(others))):
                doc.merge(replicas[other])
                heads[agent] = frontier(heads[agent] | heads[other])
        patches: list[list[Any]] = []
        for _ in range(rng.randint(1, 3)):
            length = len(doc)
            if length and rng.random() < 0.35:
                pos = rng.randrange(length)
                n = rng.randint(1, min(4, length - pos))
                doc.delete(pos, n)
                patches.append([pos, n, ""])
            else:
                if 0 <= typing_at[agent] <= length and rng.random() < 0.5:
                    pos = typing_at[agent]
                else:
                    pos = rng.randint(0, length)
                word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
                doc.insert(pos, word)
                patches.append([pos, 0, word])
                typing_at[agent] = pos + len(word)
        txns.append({"agent": agent, "parents": sorted(heads[agent]), "patches": patches})
        versions.append(dict(doc.version))
        heads[agent] = {len(txns) - 1}
    final = Text(agents)
    for doc in replicas:
        final.merge(doc)
    return concurrent_trace(str(final), agents, txns)


def random_sequential_trace(rng: random.Random, edits: int = 2000) -> dict[str, Any]:
    """A typist's history in the sequential format: words typed at a cursor that
    jumps now and then, some backspacing and some selections deleted."""
    doc: list[str] = list("start\n")
    cursor = len(doc)
    txns: list[dict[str, Any]] = []
    start = "".join(doc)
    for _ in range(edits):
        roll = rng.random()
        if roll < 0.05:
            cursor = rng.randint(0, len(doc))
            continue
        if roll < 0.2 and cursor > 0:
            doc.pop(cursor - 1)
            cursor -= 1
            txns.append({"time": "", "patches": [[cursor, 1, ""]]})
        elif roll < 0.23 and len(doc) > 3:
            pos = rng.randrange(len(doc) - 2)
            n = rng.randint(1, min(8, len(doc) - pos))
            word = rng.choice(["", "new", "X"])
            doc[pos : pos + n] = list(word)
            cursor = pos + len(word)
            txns.append({"time": "", "patches": [[pos, n, word]]})
        else:
            ch = rng.choice("abcdefghij  \n")
            doc.insert(cursor, ch)
            txns.append({"time": "", "patches": [[cursor, 0, ch]]})
            cursor += 1
    return {"startContent": start, "endContent": "".join(doc), "txns": txns}
