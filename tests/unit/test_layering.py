"""DESIGN.md's dependency rules, checked on the source tree so the house cannot drift.

- Protocol cores, ``core``, ``crdt`` and ``check`` import no I/O, clock or thread
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
PURE = ["core", "raft", "pbft", "hotstuff", "casper", "swim", "crdt", "check", "multiraft"]
CORES = ["raft", "pbft", "hotstuff", "casper", "swim", "crdt"]
BANNED = {"asyncio", "socket", "selectors", "threading", "time", "trio", "anyio", "subprocess"}
ALLOWED_FOR = {
    # package -> quorate subpackages it may import (besides itself)
    **{c: {"core", "errors", "ids", "codec"} for c in CORES},
    "core": {"errors", "ids"},
    "check": {"core", "errors", "ids"},
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
