"""Replay a real editing trace through ``quorate.crdt`` (and pycrdt).

Theory of operation
-------------------
Traces are read in the two formats of the editing-traces collection, gzipped
or not (the gzip magic bytes decide, a ``.gz`` name without them is refused):

- **sequential**: ``startContent``, ``endContent`` and ``txns``, each with
  ``patches`` ``[position, deleted, inserted]`` (code-point offsets in the
  document just before the patch) and an optional ``time``. Replayed on one
  replica, one local CRDT operation per patch part.
- **concurrent** (``"kind": "concurrent"``): ``endContent``, ``numAgents`` and
  ``txns``, each with ``parents`` (indexes of earlier transactions; ``[]`` is
  the empty document), ``numChildren``, ``agent``, ``patches`` and an optional
  ``time``/``timestamp``. There is no ``startContent``: a concurrent history
  starts empty. Replayed by ``quorate.crdt.history.TextHistory``: one document,
  a version cursor moved to each transaction's parents (eg-walker's method),
  each agent's edits made as that agent's replica.

Both replays must end at ``endContent``. A file that breaks the format is
refused with one line naming the field, or the transaction (by index) with the
bad parent, agent or patch.

Figures: process CPU seconds of the replay (median of ``repeat`` runs), edits
per second, encoded size of the final document, time to load it, peak traced
Python memory (``tracemalloc``, in a separate untimed replay, since tracing
slows allocation); for sequential traces two merge figures (a full state into
an empty replica; two replicas that typed the second half concurrently). With
``fork``, a sequential trace is also forked into a concurrent one
(``quorate.bench.trace_fork``) and both are replayed in the same run, so the
concurrent replay's speed is reported against the sequential one's. With
``compare="pycrdt"`` the same trace goes through pycrdt (Yrs): one document for
a sequential trace; for a concurrent one a document per agent, brought to each
transaction's parents by applying the updates of the transactions it lacks,
as peers exchanging updates would.
"""

from __future__ import annotations

import gc
import gzip
import json
import pathlib
import statistics
import time
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from quorate.bench.trace_fork import ForkSettings, fork_trace
from quorate.crdt import Text
from quorate.crdt.history import EventGraph, TextHistory
from quorate.errors import ConfigError, LocalProtocolError

Patch = tuple[int, int, str]

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_REPEAT = 3
"""Timed replays per implementation; the median is reported."""


class Transaction(NamedTuple):
    """One transaction; unpacks as ``(agent, parents, patches)``."""

    agent: int
    parents: tuple[int, ...]
    patches: list[Patch]


@dataclass
class Trace:
    start: str
    end: str
    transactions: list[Transaction]
    concurrent: bool = False
    agents: int = 1
    times: list[str | None] = field(default_factory=list)

    @property
    def edits(self) -> int:
        return sum(len(t.patches) for t in self.transactions)


# ------------------------------------------------------------------ reading
def _field(raw: dict[str, Any], name: str, where: str) -> Any:
    if name not in raw:
        raise ConfigError(f"{where} lacks the field {name!r}")
    return raw[name]


def _patches(raw: Any, i: int) -> list[Patch]:
    if not isinstance(raw, list):
        raise ConfigError(f"transaction {i}: 'patches' must be a list")
    out: list[Patch] = []
    for patch in raw:
        if (
            not isinstance(patch, list)
            or len(patch) != 3
            or type(patch[0]) is not int
            or type(patch[1]) is not int
            or not isinstance(patch[2], str)
            or patch[0] < 0
            or patch[1] < 0
        ):
            raise ConfigError(
                f"transaction {i}: bad patch {json.dumps(patch)[:60]} "
                "(want [position, deleted, inserted] with non-negative integers)"
            )
        out.append((patch[0], patch[1], patch[2]))
    return out


def _time(raw: dict[str, Any], i: int) -> str | None:
    for name in ("time", "timestamp"):
        value = raw.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise ConfigError(f"transaction {i}: {name!r} must be a string")
            return value
    return None


def parse_trace(raw: Any) -> Trace:
    """Validate a decoded trace; ``ConfigError`` names the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("a trace must be a JSON object in the editing-traces format")
    kind = raw.get("kind")
    if kind is not None and kind != "concurrent":
        raise ConfigError(
            f"trace field 'kind' must be \"concurrent\" (or absent for a sequential "
            f"trace), got {json.dumps(kind)[:40]}"
        )
    if kind == "concurrent":
        return _parse_concurrent(raw)
    start = _field(raw, "startContent", "trace")
    end = _field(raw, "endContent", "trace")
    txns = _field(raw, "txns", "trace")
    if not isinstance(start, str) or not isinstance(end, str):
        raise ConfigError("trace fields 'startContent' and 'endContent' must be strings")
    if not isinstance(txns, list):
        raise ConfigError("trace field 'txns' must be a list")
    out: list[Transaction] = []
    times: list[str | None] = []
    for i, txn in enumerate(txns):
        if not isinstance(txn, dict):
            raise ConfigError(f"transaction {i} must be an object")
        patches = _patches(_field(txn, "patches", f"transaction {i}"), i)
        out.append(Transaction(0, (i - 1,) if i else (), patches))
        times.append(_time(txn, i))
    return Trace(start, end, out, concurrent=False, agents=1, times=times)


def _parse_concurrent(raw: dict[str, Any]) -> Trace:
    end = _field(raw, "endContent", "concurrent trace")
    agents = _field(raw, "numAgents", "concurrent trace")
    txns = _field(raw, "txns", "concurrent trace")
    if not isinstance(end, str):
        raise ConfigError("trace field 'endContent' must be a string")
    if type(agents) is not int or agents < 1:
        raise ConfigError(f"trace field 'numAgents' must be an integer >= 1, got {agents!r}")
    if not isinstance(txns, list):
        raise ConfigError("trace field 'txns' must be a list")
    if raw.get("startContent", "") != "":
        raise ConfigError(
            "a concurrent trace starts from the empty document: 'startContent' must be "
            "absent or empty"
        )
    graph = EventGraph()
    out: list[Transaction] = []
    times: list[str | None] = []
    claimed: list[int] = []
    for i, txn in enumerate(txns):
        where = f"transaction {i}"
        if not isinstance(txn, dict):
            raise ConfigError(f"{where} must be an object")
        parents = _field(txn, "parents", where)
        agent = _field(txn, "agent", where)
        children = _field(txn, "numChildren", where)
        patches = _patches(_field(txn, "patches", where), i)
        if not isinstance(parents, list):
            raise ConfigError(f"{where}: 'parents' must be a list of earlier transactions")
        for parent in parents:
            if type(parent) is not int or not 0 <= parent < len(txns):
                raise ConfigError(
                    f"{where}: parent {json.dumps(parent)[:20]} is out of range "
                    f"(the trace has transactions 0..{len(txns) - 1})"
                )
            if parent >= i:
                raise ConfigError(
                    f"{where}: parent {parent} is not an earlier transaction "
                    "(parents must come before their children)"
                )
        if type(agent) is not int or not 0 <= agent < agents:
            raise ConfigError(f"{where}: 'agent' must be an integer in 0..{agents - 1}")
        if type(children) is not int or children < 0:
            raise ConfigError(f"{where}: 'numChildren' must be an integer >= 0")
        try:
            graph.add(agent, parents)
        except LocalProtocolError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out.append(Transaction(agent, tuple(parents), patches))
        times.append(_time(txn, i))
        claimed.append(children)
    counted = [0] * len(out)
    for txn in out:
        for parent in txn.parents:
            counted[parent] += 1
    for i, (claim, count) in enumerate(zip(claimed, counted)):
        if claim != count:
            raise ConfigError(
                f"transaction {i}: 'numChildren' is {claim} but {count} later "
                f"transaction(s) name it as a parent"
            )
    return Trace("", end, out, concurrent=True, agents=agents, times=times)


def load_trace(path: pathlib.Path) -> Trace:
    """Read a trace file, gzipped or not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ConfigError(f"{path} is not a valid gzip file: {exc}") from None
    elif path.suffix == ".gz":
        raise ConfigError(f"{path} is not a gzip file (it lacks the gzip header)")
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    return parse_trace(raw)


def trace_to_json(raw: dict[str, Any], path: pathlib.Path) -> None:
    """Write a trace (a format dict), gzipped when ``path`` ends in ``.gz``."""
    data = json.dumps(raw, ensure_ascii=False).encode()
    try:
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    except OSError as exc:
        raise ConfigError(f"cannot write trace {path}: {exc.strerror or exc}") from None


# ------------------------------------------------------------------ ours
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


def replay_concurrent(trace: Trace) -> tuple[Text, TextHistory]:
    """Replay a concurrent trace on one document with a version cursor."""
    history = TextHistory()
    try:
        history.extend(trace.transactions)
    except LocalProtocolError as exc:
        raise ConfigError(str(exc)) from None
    return history.document(), history


def _apply_patches(doc: Text, patches: list[Patch]) -> None:
    for pos, deleted, inserted in patches:
        if deleted:
            doc.delete(pos, deleted)
        if inserted:
            doc.insert(pos, inserted)


# ----------------------------------------------------------------- pycrdt
def _pycrdt() -> Any:
    try:
        import pycrdt
    except ImportError:
        raise ConfigError(
            "--compare pycrdt needs pycrdt: pip install 'quorate[bench]' (or pip install pycrdt)"
        ) from None
    return pycrdt


def replay_pycrdt(trace: Trace) -> tuple[Any, Any]:
    """Replay a sequential trace through pycrdt; returns (doc, text)."""
    pycrdt = _pycrdt()
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


def replay_pycrdt_concurrent(trace: Trace) -> tuple[Any, Any]:
    """Replay a concurrent trace through pycrdt: a document per agent; before
    each transaction the agent's document applies the updates of the
    transactions its parents have and it lacks. Returns (doc, text) of the
    merge of everything."""
    pycrdt = _pycrdt()
    graph = EventGraph()
    updates: list[bytes | None] = []
    sink: list[bytes] = []
    replicas: dict[int, tuple[Any, Any, tuple[int, ...]]] = {}

    def replica(agent: int) -> tuple[Any, Any, tuple[int, ...]]:
        doc: Any = pycrdt.Doc(client_id=agent + 1)
        doc.observe(lambda event: sink.append(event.update))
        return doc, doc.get("text", type=pycrdt.Text), ()

    def catch_up(doc: Any, have: tuple[int, ...], want: list[int]) -> None:
        for j in graph.missing(have, want):
            update = updates[j]
            if update is not None:
                doc.apply_update(update)

    for txn in trace.transactions:
        index = graph.add(txn.agent, txn.parents)
        entry = replicas.get(txn.agent)
        if entry is None:
            entry = replica(txn.agent)
        doc, text, have = entry
        want = list(graph.vectors[index])
        want[graph.slot_of[txn.agent]] -= 1
        catch_up(doc, have, want)
        sink.clear()
        with doc.transaction():
            for pos, deleted, inserted in txn.patches:
                if deleted:
                    del text[pos : pos + deleted]
                if inserted:
                    text.insert(pos, inserted)
        updates.append(sink[-1] if sink else None)
        replicas[txn.agent] = (doc, text, graph.vectors[index])
    if not trace.transactions:
        doc, text, _ = replica(0)
        return doc, text
    heads = graph.heads()
    doc, text, have = replicas[graph.agents[heads[-1]]]
    catch_up(doc, have, graph.version(heads))
    return doc, text


# ----------------------------------------------------------------- figures
def _cpu(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
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
            _apply_patches(replica, txn.patches)
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


def _replay(trace: Trace) -> Text:
    return replay_concurrent(trace)[0] if trace.concurrent else replay_sequential(trace)


def _peak_memory_mb(trace: Trace) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        doc = _replay(trace)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del doc
    return round(peak / 1e6, 2)


def _timed(runs: list[float], edits: int) -> dict[str, Any]:
    cpu_s = statistics.median(runs)
    return {
        "cpu_seconds": round(cpu_s, 4),
        "edits_per_second": round(edits / cpu_s) if cpu_s > 0 else None,
        "cpu_seconds_runs": [round(r, 4) for r in runs],
    }


def _shape(trace: Trace) -> dict[str, Any]:
    txns = trace.transactions
    return {
        "edits": trace.edits,
        "inserts": sum(1 for t in txns for p in t.patches if p[2]),
        "deletes": sum(1 for t in txns for p in t.patches if p[1]),
        "transactions": len(txns),
    }


def _pycrdt_figures(trace: Trace, repeat: int) -> dict[str, Any]:
    pycrdt = _pycrdt()
    replay = replay_pycrdt_concurrent if trace.concurrent else replay_pycrdt
    runs: list[float] = []
    ytext: Any = None
    ydoc: Any = None
    for _ in range(repeat):
        ydoc = ytext = None
        (ydoc, ytext), cpu_s = _cpu(replay, trace)
        runs.append(cpu_s)
    update = ydoc.get_update()
    gc.collect()
    started = time.process_time()
    fresh: Any = pycrdt.Doc()
    fresh.apply_update(update)
    load_s = time.process_time() - started
    return {
        "version": getattr(pycrdt, "__version__", "unknown"),
        **_timed(runs, trace.edits),
        "encoded_bytes": len(update),
        "load_seconds": round(load_s, 4),
        "final_text_matches": str(ytext) == trace.end,
    }


def run(
    path: pathlib.Path,
    compare: str | None = None,
    memory: bool = True,
    fork: ForkSettings | None = None,
    write_trace: pathlib.Path | None = None,
    repeat: int = DEFAULT_REPEAT,
) -> dict[str, Any]:
    """Every figure of ``quorate bench crdt-trace`` as a JSON-ready dict."""
    if compare not in (None, "pycrdt"):
        raise ConfigError(f"--compare supports only 'pycrdt', not {compare!r}")
    if repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {repeat}")
    if write_trace is not None and fork is None:
        raise ConfigError("--write-trace writes the forked trace: give --fork too")
    source = load_trace(path)
    trace = source
    report: dict[str, Any] = {"benchmark": "crdt-trace", "file": str(path)}
    if fork is not None:
        if source.concurrent:
            raise ConfigError("--fork forks a sequential trace; this one is already concurrent")
        patches = [
            (pos, deleted, inserted, source.times[i] if i < len(source.times) else None)
            for i, txn in enumerate(source.transactions)
            for pos, deleted, inserted in txn.patches
        ]
        raw, shape = fork_trace(source.start, source.end, patches, fork)
        if write_trace is not None:
            trace_to_json(raw, write_trace)
        trace = parse_trace(raw)
        report["fork"] = {**asdict(fork), **shape, "written_to": str(write_trace or "")}
    report["kind"] = "concurrent" if trace.concurrent else "sequential"
    report.update(_shape(trace))
    if trace.concurrent:
        report["agents"] = trace.agents
        report["merges"] = sum(1 for t in trace.transactions if len(t.parents) > 1)
        report["max_parents"] = max((len(t.parents) for t in trace.transactions), default=0)

    runs: list[float] = []
    source_runs: list[float] = []
    doc: Text | None = None
    history: TextHistory | None = None
    for _ in range(repeat):
        if fork is not None:
            _, cpu_s = _cpu(replay_sequential, source)
            source_runs.append(cpu_s)
        doc = history = None
        if trace.concurrent:
            (doc, history), cpu_s = _cpu(replay_concurrent, trace)
        else:
            doc, cpu_s = _cpu(replay_sequential, trace)
        runs.append(cpu_s)
    assert doc is not None
    text = str(doc)
    encoded = doc.encode()
    gc.collect()
    started = time.process_time()
    loaded = Text.decode(encoded, 1 << 30)
    load_s = time.process_time() - started
    report.update(_timed(runs, trace.edits))
    if history is not None:
        report["cursor_moves"] = history.moves
    report.update(
        {
            "encoded_bytes": len(encoded),
            "load_seconds": round(load_s, 4),
            "load_matches": str(loaded) == text,
            "runs": doc.run_count(),
            "final_length": len(text),
            "final_text_matches": text == trace.end,
        }
    )
    if fork is not None:
        sequential = {"edits": source.edits, **_timed(source_runs, source.edits)}
        report["sequential"] = sequential
        if sequential["edits_per_second"] and report["edits_per_second"]:
            report["concurrent_vs_sequential"] = round(
                report["edits_per_second"] / sequential["edits_per_second"], 3
            )
    if memory:
        report["peak_memory_mb"] = _peak_memory_mb(trace)
        report["peak_memory_method"] = "tracemalloc peak of a separate untimed replay"
    if not trace.concurrent:
        report["merge"] = merge_figures(trace, doc)
    if compare == "pycrdt":
        theirs = _pycrdt_figures(trace, repeat)
        report["pycrdt"] = theirs
        report["ratio"] = (
            round(report["cpu_seconds"] / theirs["cpu_seconds"], 4)
            if theirs["cpu_seconds"] > 0
            else None
        )
    return report
