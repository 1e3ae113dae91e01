"""DESIGN.md's dependency rules, checked on the source tree so the house cannot drift.

- Protocol cores, ``core``, ``crdt``, ``check`` and ``quorum`` import no I/O, clock or thread
  modules and never call ``random``'s module-level functions (randomness is a
  ``random.Random`` passed in).
- ``runtime.sim`` and ``runtime.aio`` never import each other.
- Protocol cores never import each other or the runtimes.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "src" / "quorate"
PURE = ["core", "raft", "pbft", "hotstuff", "casper", "swim", "crdt", "check", "hrb", "multiraft", "quorum", "sharding"]
CORES = ["raft", "pbft", "hotstuff", "casper", "swim", "crdt"]
BANNED = {"asyncio", "socket", "selectors", "threading", "time", "trio", "anyio", "subprocess"}
ALLOWED_FOR = {
    # package -> quorate subpackages it may import (besides itself)
    **{c: {"core", "errors", "ids", "codec"} for c in CORES},
    "core": {"errors", "ids"},
    "check": {"core", "errors", "ids"},
    "quorum": {"core", "errors", "ids"},
    # HRB composes cores (docs/hrb.md): it is the one package that may import them.
    # HRB watches for partitions with SWIM (hrb/partition.py, issue 13).
    "hrb": {"core", "errors", "ids", "codec", "raft", "pbft", "hotstuff", "crypto", "sharding", "state", "swim"},
    "crypto": {"core", "errors", "ids"},
    "security": {"core", "errors", "ids", "crypto"},
    "sharding": {"core", "errors", "ids"},
    "state": {"core", "errors", "ids"},
    "storage": {"core", "errors", "ids"},
    "codec": {"core", "errors", "ids"},
    "multiraft": {"core", "errors", "ids", "raft", "state"},
}


def _python_files(part: str) -> list[pathlib.Path]:
    d = ROOT / part
    return sorted(d.rglob("*.py")) if d.exists() else []


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "random":
                out += [(node.lineno, f"random.{a.name}") for a in node.names]
    return out


def _random_calls(path: pathlib.Path) -> list[int]:
    """Lines calling module-level random functions, e.g. ``random.random()``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr not in {"Random"}
        ):
            bad.append(node.lineno)
    return bad


@pytest.mark.parametrize("part", PURE)
def test_pure_packages_do_no_io(part: str) -> None:
    problems = []
    for f in _python_files(part):
        for line, name in _imports(f):
            if name.split(".")[0] in BANNED:
                problems.append(f"{f.relative_to(ROOT)}:{line} imports {name}")
            if name.startswith("random.") and name != "random.Random":
                problems.append(f"{f.relative_to(ROOT)}:{line} imports {name}")
            if name.startswith("quorate.runtime"):
                problems.append(f"{f.relative_to(ROOT)}:{line} imports the runtime {name}")
        problems += [f"{f.relative_to(ROOT)}:{ln} uses module-level random" for ln in _random_calls(f)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("part", sorted(ALLOWED_FOR))
def test_packages_import_only_what_they_may(part: str) -> None:
    allowed = ALLOWED_FOR[part] | {part}
    problems = []
    for f in _python_files(part):
        for line, name in _imports(f):
            if name.startswith("quorate."):
                sub = name.split(".")[1]
                if sub not in allowed:
                    problems.append(f"{f.relative_to(ROOT)}:{line} imports {name}")
    assert not problems, "\n".join(problems)


def test_sim_and_aio_never_import_each_other() -> None:
    problems = []
    for a, b in (("runtime/sim", "quorate.runtime.aio"), ("runtime/aio", "quorate.runtime.sim")):
        for f in _python_files(a):
            problems += [f"{f}:{ln} imports {n}" for ln, n in _imports(f) if n.startswith(b)]
    assert not problems, "\n".join(problems)


def test_the_check_itself_catches_a_violation(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nimport random\nx = random.random()\n")
    assert any(n == "time" for _, n in _imports(bad))
    assert _random_calls(bad) == [3]


PROTOCOL_PACKAGES = ("raft", "pbft", "hotstuff", "casper", "hrb", "swim")
"""Packages the runtimes reach only through their bindings (``quorate.protocols``)."""
PROTOCOL_SPECIFIC_RUNTIME_MODULES = {
    # SWIM's own experiment harnesses: the simulated membership experiment
    # and the real gossip member run SWIM itself, not a protocol chosen by name.
    "runtime/sim/membership.py": {"swim"},
    "runtime/aio/gossip.py": {"swim"},
}


def test_runtimes_name_no_protocol_outside_the_bindings() -> None:
    """The runtimes ask bindings (``quorate.protocols``); they never import a
    protocol package, so a new protocol needs no runtime change."""
    problems = []
    for part in ("runtime/sim", "runtime/aio", "runtime"):
        files = _python_files(part) if part != "runtime" else [ROOT / "runtime" / "driver.py"]
        for f in files:
            rel = str(f.relative_to(ROOT))
            allowed = PROTOCOL_SPECIFIC_RUNTIME_MODULES.get(rel, set())
            for line, name in _imports_anywhere(f):
                parts = name.split(".")
                if parts[0] == "quorate" and len(parts) > 1 and parts[1] in PROTOCOL_PACKAGES and parts[1] not in allowed:
                    problems.append(f"{rel}:{line} imports {name}")
    assert not problems, "\n".join(problems)


def _imports_anywhere(path: pathlib.Path, *, typing_only: bool = True) -> list[tuple[int, str]]:
    """Every import of ``path``, at module level or inside functions (lazy
    imports hide cycles too); with ``typing_only`` false, those under ``if
    TYPE_CHECKING:`` are left out (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if not typing_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out: list[tuple[int, str]] = []
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return out


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """quorate module -> the quorate modules it imports when it runs
    (module-level and lazy imports; not ``TYPE_CHECKING`` ones, and not its
    own ancestor packages, which Python initialises first anyway)."""
    files = {_module_name(f): f for f in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        targets: set[str] = set()
        for _, imported in _imports_anywhere(f, typing_only=False):
            module = imported
            while module and module not in files:
                module = module.rpartition(".")[0]
            if module and module != name and not name.startswith(module + "."):
                targets.add(module)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_not_even_lazy_ones() -> None:
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_lazy_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
