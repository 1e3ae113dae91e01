"""Replay a real editing trace through ``quorate.crdt.Text`` (and pycrdt).

Theory of operation: a trace in the editing-traces format holds ``startContent``,
``endContent`` and ``txns``, each with ``patches`` ``[position, deleted,
inserted]`` (positions are code-point offsets in the document just before the
patch). Sequential traces are replayed on one replica, one local CRDT operation
per patch part (a delete and/or an insert), timing process CPU time. Concurrent
traces (``"kind": "concurrent"``) name an ``agent`` and ``parents`` per
transaction (earlier transactions whose merged state the edit was made on): each
agent has its own replica, brought to exactly the parents' merged version by
deltas from a replica that has seen every transaction so far, and its new
operations flow back into that replica. Both replays check the final text
against ``endContent``.

Figures: CPU seconds of the replay, encoded size of the final document, time
to load that encoding, peak traced Python memory (``tracemalloc``, measured in a
separate untimed replay because tracing slows allocation), and two merge
figures: (1) decoding the full document and merging it into an empty replica,
(2) two replicas that forked half way through the trace and each typed the
second half concurrently, merged both ways.
"""

from __future__ import annotations

import gc
import gzip
import json
import pathlib
import random
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

from quorate.crdt import Text, TextDelta
from quorate.errors import ConfigError

Patch = tuple[int, int, str]

UNIVERSE_REPLICA = 1 << 30
"""Replica id of the replay's all-seeing replica in concurrent traces (never edits)."""


@dataclass
class Transaction:
    patches: list[Patch]
    agent: int = 0
    parents: list[int] = field(default_factory=list)


@dataclass
class Trace:
    start: str
    end: str
    transactions: list[Transaction]
    concurrent: bool = False
    agents: int = 1

    @property
    def edits(self) -> int:
        return sum(len(t.patches) for t in self.transactions)


def parse_trace(raw: Any) -> Trace:
    """Validate a decoded trace; ``ConfigError`` names the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("trace must be a JSON object with startContent, endContent and txns")
    try:
        start, end, txns = raw["startContent"], raw["endContent"], raw["txns"]
    except KeyError as exc:
        raise ConfigError(f"trace lacks the field {exc.args[0]!r}") from None
    if not (isinstance(start, str) and isinstance(end, str) and isinstance(txns, list)):
        raise ConfigError("trace fields startContent/endContent must be strings, txns a list")
    concurrent = raw.get("kind") == "concurrent"
    agents = raw.get("numAgents", 1)
    if not isinstance(agents, int) or agents < 1:
        raise ConfigError("numAgents must be a positive integer")
    out: list[Transaction] = []
    for i, txn in enumerate(txns):
        if not isinstance(txn, dict) or not isinstance(txn.get("patches"), list):
            raise ConfigError(f"transaction {i} has no patches list")
        patches: list[Patch] = []
        for patch in txn["patches"]:
            if (
                not isinstance(patch, list)
                or len(patch) != 3
                or type(patch[0]) is not int
                or type(patch[1]) is not int
                or not isinstance(patch[2], str)
                or patch[0] < 0
                or patch[1] < 0
            ):
                raise ConfigError(f"transaction {i}: bad patch {patch!r}")
            patches.append((patch[0], patch[1], patch[2]))
        agent: Any = 0
        parents: Any = []
        if concurrent:
            agent, parents = txn.get("agent"), txn.get("parents", [])
            if type(agent) is not int or not 0 <= agent < agents:
                raise ConfigError(f"transaction {i}: agent must be an int in 0..{agents - 1}")
            if not isinstance(parents, list) or not all(
                type(p) is int and 0 <= p < i for p in parents
            ):
                raise ConfigError(f"transaction {i}: parents must index earlier transactions")
        out.append(Transaction(patches, agent, list(parents)))
    return Trace(start, end, out, concurrent, agents)


def load_trace(path: pathlib.Path) -> Trace:
    """Read a ``.json`` or ``.json.gz`` trace file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        raw = json.loads(data)
    except (OSError, EOFError, ValueError) as exc:
        raise ConfigError(f"{path} is not a JSON (or gzipped JSON) trace: {exc}") from None
    return parse_trace(raw)


# ------------------------------------------------------------------ ours
def _apply_patches(doc: Text, patches: list[Patch], sink: TextDelta | None) -> None:
    insert, delete = doc.insert, doc.delete
    for pos, deleted, inserted in patches:
        if deleted:
            d = delete(pos, deleted)
            if sink is not None:
                sink.deletes.extend(d.deletes)
        if inserted:
            d = insert(pos, inserted)
            if sink is not None:
                sink.inserts.extend(d.inserts)


def replay_sequential(trace: Trace, replica_id: int = 1) -> Text:
    """One replica applies every patch as a local operation."""
    doc = Text(replica_id)
    if trace.start:
        doc.insert(0, trace.start)
    insert, delete = doc.insert, doc.delete
    for txn in trace.transactions:
        for pos, deleted, inserted in txn.patches:
            if deleted:
                delete(pos, deleted)
            if inserted:
                insert(pos, inserted)
    return doc


def replay_concurrent(trace: Trace) -> tuple[Text, list[Text]]:
    """Replay a concurrent trace; return the all-seeing replica and the agents'."""
    universe = Text(UNIVERSE_REPLICA)
    agents = [Text(a) for a in range(trace.agents)]
    if trace.start:
        # The start content is one run typed by a replica nobody else uses.
        seed = Text(UNIVERSE_REPLICA + 1)
        universe.apply(seed.insert(0, trace.start))
    start_version = dict(universe.version)
    versions: list[dict[int, int]] = []
    for txn in trace.transactions:
        target = dict(start_version)
        for parent in txn.parents:
            for replica, count in versions[parent].items():
                if count > target.get(replica, 0):
                    target[replica] = count
        doc = agents[txn.agent]
        have = doc.version
        if any(count > target.get(r, 0) for r, count in have.items()):
            # The agent saw more than this edit's parents: rebuild it at the target.
            doc = agents[txn.agent] = Text(txn.agent)
            have = doc.version
        doc.apply(universe.delta_since(have, until=target))
        ops = TextDelta()
        _apply_patches(doc, txn.patches, ops)
        universe.apply(ops)
        versions.append(dict(doc.version))
    return universe, agents


# ----------------------------------------------------------------- pycrdt
def replay_pycrdt(trace: Trace) -> tuple[Any, Any]:
    """Replay a sequential trace through pycrdt; returns (doc, text)."""
    try:
        import pycrdt
    except ImportError:
        raise ConfigError(
            "--compare pycrdt needs pycrdt: pip install 'quorate[bench]' (or pip install pycrdt)"
        ) from None
    doc: Any = pycrdt.Doc()
    text = doc.get("text", type=pycrdt.Text)
    if trace.start:
        text.insert(0, trace.start)
    insert = text.insert
    for txn in trace.transactions:
        for pos, deleted, inserted in txn.patches:
            if deleted:
                del text[pos : pos + deleted]
            if inserted:
                insert(pos, inserted)
    return doc, text


# ----------------------------------------------------------------- figures
def _cpu(fn: Any, *args: Any) -> tuple[Any, float]:
    gc.collect()
    started = time.process_time()
    result = fn(*args)
    return result, time.process_time() - started


def _half_split(trace: Trace) -> tuple[Trace, Trace]:
    middle = len(trace.transactions) // 2
    first = Trace(trace.start, "", trace.transactions[:middle])
    second = Trace("", "", trace.transactions[middle:])
    return first, second


def merge_figures(trace: Trace, doc: Text) -> dict[str, Any]:
    """Time (1) loading + merging the whole document into an empty replica and
    (2) merging two replicas that typed the trace's second half concurrently."""
    encoded = doc.encode()
    gc.collect()
    started = time.process_time()
    empty = Text(2)
    empty.merge(Text.decode(encoded, 3))
    full_s = time.process_time() - started
    full_ok = str(empty) == str(doc)

    first, second = _half_split(trace)
    a = replay_sequential(first, replica_id=1)
    b = a.fork(2)
    for replica in (a, b):
        for txn in second.transactions:
            _apply_patches(replica, txn.patches, None)
    b_copy = b.fork(4)
    gc.collect()
    started = time.process_time()
    a.merge(b)
    b_copy.merge(a)
    concurrent_s = time.process_time() - started
    return {
        "full_state_into_empty_seconds": round(full_s, 4),
        "full_state_matches": full_ok,
        "concurrent_halves_seconds": round(concurrent_s, 4),
        "concurrent_halves_ops_each": second.edits,
        "concurrent_halves_converged": str(a) == str(b_copy),
        "concurrent_halves_length": len(a),
    }


def _peak_memory_mb(trace: Trace) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        doc = replay_sequential(trace) if not trace.concurrent else replay_concurrent(trace)[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del doc
    return round(peak / 1e6, 2)


def run(path: pathlib.Path, compare: str | None = None, memory: bool = True) -> dict[str, Any]:
    """Every figure of ``quorate bench crdt-trace`` as a JSON-ready dict."""
    if compare not in (None, "pycrdt"):
        raise ConfigError(f"--compare supports only 'pycrdt', not {compare!r}")
    trace = load_trace(path)
    inserts = sum(1 for t in trace.transactions for p in t.patches if p[2])
    deletes = sum(1 for t in trace.transactions for p in t.patches if p[1])
    report: dict[str, Any] = {
        "benchmark": "crdt-trace",
        "file": str(path),
        "kind": "concurrent" if trace.concurrent else "sequential",
        "edits": trace.edits,
        "inserts": inserts,
        "deletes": deletes,
    }
    if trace.concurrent:
        (universe, agents), cpu_s = _cpu(replay_concurrent, trace)
        doc = universe
        for agent in agents:
            agent.merge(universe)
        report["agents"] = trace.agents
        report["agents_converged"] = all(str(a) == str(universe) for a in agents)
    else:
        doc, cpu_s = _cpu(replay_sequential, trace)
    text = str(doc)
    encoded = doc.encode()
    gc.collect()
    started = time.process_time()
    loaded = Text.decode(encoded, 9)
    load_s = time.process_time() - started
    report.update(
        {
            "cpu_seconds": round(cpu_s, 4),
            "edits_per_second": round(trace.edits / cpu_s) if cpu_s > 0 else None,
            "encoded_bytes": len(encoded),
            "load_seconds": round(load_s, 4),
            "load_matches": str(loaded) == text,
            "runs": doc.run_count(),
            "final_length": len(text),
            "final_text_matches": text == trace.end,
        }
    )
    if memory:
        report["peak_memory_mb"] = _peak_memory_mb(trace)
        report["peak_memory_method"] = "tracemalloc peak of a separate untimed replay"
    if not trace.concurrent:
        report["merge"] = merge_figures(trace, doc)
    if compare == "pycrdt":
        if trace.concurrent:
            raise ConfigError("--compare pycrdt replays sequential traces only")
        (ydoc, ytext), y_cpu = _cpu(replay_pycrdt, trace)
        update = ydoc.get_update()
        import pycrdt

        gc.collect()
        started = time.process_time()
        fresh: Any = pycrdt.Doc()
        fresh.apply_update(update)
        y_load = time.process_time() - started
        report["pycrdt"] = {
            "version": getattr(pycrdt, "__version__", "unknown"),
            "cpu_seconds": round(y_cpu, 4),
            "edits_per_second": round(trace.edits / y_cpu) if y_cpu > 0 else None,
            "encoded_bytes": len(update),
            "load_seconds": round(y_load, 4),
            "final_text_matches": str(ytext) == trace.end,
        }
        report["ratio"] = round(cpu_s / y_cpu, 4) if y_cpu > 0 else None
    return report


# ------------------------------------------------------------- generator
def generate_concurrent_trace(
    rng: random.Random,
    agents: int = 3,
    transactions: int = 60,
    merge_probability: float = 0.3,
    alphabet: str = "abcdefgh",
) -> dict[str, Any]:
    """A random concurrent trace in the editing-traces format.

    Each transaction picks an agent, which first merges another agent's replica
    with probability ``merge_probability``, then makes one to three random
    edits. ``parents`` are the agent's causal frontier (maximal transactions it
    has seen); ``endContent`` is the text once every replica merged.
    """
    replicas = [Text(a) for a in range(agents)]
    heads: list[set[int]] = [set() for _ in range(agents)]
    versions: list[dict[int, int]] = []

    def frontier(candidates: set[int]) -> set[int]:
        def below(i: int, j: int) -> bool:
            vi, vj = versions[i], versions[j]
            return i != j and all(vj.get(r, 0) >= c for r, c in vi.items())

        return {i for i in candidates if not any(below(i, j) for j in candidates)}

    txns: list[dict[str, Any]] = []
    for _ in range(transactions):
        agent = rng.randrange(agents)
        doc = replicas[agent]
        if agents > 1 and rng.random() < merge_probability:
            other = rng.choice([a for a in range(agents) if a != agent])
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
                pos = rng.randint(0, length)
                word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
                doc.insert(pos, word)
                patches.append([pos, 0, word])
        txns.append({"agent": agent, "parents": sorted(heads[agent]), "patches": patches})
        versions.append(dict(doc.version))
        heads[agent] = {len(txns) - 1}
    final = Text(agents)
    for doc in replicas:
        final.merge(doc)
    return {
        "kind": "concurrent",
        "numAgents": agents,
        "startContent": "",
        "endContent": str(final),
        "txns": txns,
    }
