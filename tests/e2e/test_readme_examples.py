"""Every code block of the README (and of docs/node-config.md) runs as written.

Each fenced block is preceded by an HTML comment that says how it is tested,
invisible on the rendered page:

- ``<!-- example -->``: run in the default suite;
- ``<!-- example: slow -->``: run with ``-m slow`` (long simulations, benchmarks);
- ``session=NAME``: the blocks of one session run in order, in one directory
  (a cluster started by the first is used by the next);
- ``needs=pycrdt|bench|data|etcd``: skipped, with the reason, when that is missing;
- ``setup``: the README's set-up commands, run in a fresh venv on a copy of
  this tree (``-m slow``: it runs the whole default suite inside).

Shell blocks run with ``bash -e`` (a failing command fails the block) with
this venv's ``quorate`` and ``python`` first on the PATH and
``QUORATE_BASE_PORT`` pointing at free ports, so ``quorate cluster up`` does
not collide with anything else on the machine. Python blocks run as scripts,
JSON history blocks go through ``quorate check``, TOML blocks through the node
config validation. A block without a marker fails
``test_every_block_is_marked``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.e2e.conftest import listen_base_port

from quorate.runtime.aio.cluster import CLUSTER_FILE, LocalCluster
from quorate.runtime.aio.config import node_config_from_mapping

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/node-config.md")
BLOCK_TIMEOUT_S = 600.0
SLOW_BLOCK_TIMEOUT_S = 4 * 3600.0
"""Bounds on one block (the slow ones run whole benchmarks on a shared machine)."""
LANGUAGES = ("sh", "python", "json", "toml")
MARKER = re.compile(r"^<!-- example(?::\s*(?P<options>.*?))?\s*-->$")
FENCE = re.compile(r"^```(?P<language>[\w-]*)\s*$")
GOSSIP_PORTS = (7101, 7102)


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    language: str
    code: str
    options: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def slow(self) -> bool:
        return "slow" in self.options or "setup" in self.options

    @property
    def session(self) -> str | None:
        return next((o.split("=", 1)[1] for o in self.options if o.startswith("session=")), None)

    @property
    def needs(self) -> list[str]:
        return [o.split("=", 1)[1] for o in self.options if o.startswith("needs=")]


@dataclass
class Parsed:
    blocks: list[Block] = field(default_factory=list)
    unmarked: list[str] = field(default_factory=list)


def parse(document: str) -> Parsed:
    lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
    out = Parsed()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        marker = MARKER.match(lines[start - 1].strip()) if start > 0 else None
        if marker is None:
            out.unmarked.append(f"{document}:{start + 1} ({fence['language'] or 'no language'})")
            continue
        options = tuple(
            o.strip() for o in (marker["options"] or "").split(",") if o.strip()
        )
        out.blocks.append(
            Block(document, start + 1, fence["language"], "\n".join(body) + "\n", options)
        )
    return out


def all_blocks() -> list[Block]:
    return [b for d in DOCUMENTS for b in parse(d).blocks]


def test_every_block_is_marked_with_how_it_is_tested() -> None:
    unmarked = [u for d in DOCUMENTS for u in parse(d).unmarked]
    assert not unmarked, f"code blocks without an <!-- example --> marker: {unmarked}"
    blocks = all_blocks()
    assert len(blocks) >= 15
    for block in blocks:
        assert block.language in LANGUAGES, f"{block.where}: cannot run a {block.language!r} block"
        known = {"slow", "setup"}
        for option in block.options:
            assert option in known or option.startswith(("session=", "needs=")), (
                f"{block.where}: unknown option {option!r}"
            )
    setups = [b for b in blocks if "setup" in b.options]
    assert len(setups) == 1 and setups[0].document == "README.md"


# ------------------------------------------------------------------ running
def _environment(base_port: int) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "QUORATE_BASE_PORT": str(base_port),
        "COLUMNS": "100",
    }


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _stop_clusters(directory: Path) -> None:
    for description in directory.rglob(CLUSTER_FILE):
        with contextlib.suppress(Exception):  # cleanup must not hide the test's own failure
            LocalCluster.open(description.parent).kill_all()


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> None:
    timeout = SLOW_BLOCK_TIMEOUT_S if block.slow else BLOCK_TIMEOUT_S
    if block.language == "sh":
        command = ["bash", "-e", "-c", block.code]
    elif block.language == "python":
        script = cwd / f"example_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        command = [sys.executable, str(script)]
    elif block.language == "json":
        history = cwd / f"history_{block.line}.jsonl"
        history.write_text(block.code, encoding="utf-8")
        command = [sys.executable, "-m", "quorate", "check", str(history)]
    else:  # toml: a node config
        import tomllib

        node_config_from_mapping(tomllib.loads(block.code), base_dir=cwd)
        return
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # background jobs of the block die with it
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        _kill_group(process)
    assert process.returncode == 0, (
        f"{block.where} exited {process.returncode}\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}"
    )


def _skip_reasons(blocks: list[Block]) -> list[str]:
    reasons = []
    for need in {n for b in blocks for n in b.needs}:
        if need == "pycrdt" and importlib.util.find_spec("pycrdt") is None:
            reasons.append("pycrdt is not installed (pip install '.[bench]')")
        elif need == "bench" and any(importlib.util.find_spec(m) is None for m in ("hdrh", "psutil", "matplotlib")):
            reasons.append("the bench extra is not installed (pip install '.[bench]')")
        elif need == "data" and not (ROOT.parent / "shared" / "data").is_dir():
            reasons.append("the shared data (../shared/data) is absent")
        elif need == "etcd" and shutil.which("etcd") is None:
            reasons.append("etcd is not installed (the benchmark installs it with apt)")
    return reasons


def _ports_free(ports: tuple[int, ...]) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _cases() -> Iterator[object]:
    sessions: dict[str, list[Block]] = {}
    for block in all_blocks():
        if "setup" in block.options:
            continue
        if block.session is not None:
            sessions.setdefault(block.session, []).append(block)
            continue
        marks = [pytest.mark.slow] if block.slow else []
        yield pytest.param([block], id=block.where, marks=marks)
    for name, blocks in sessions.items():
        marks = [pytest.mark.slow] if any(b.slow for b in blocks) else []
        yield pytest.param(blocks, id=f"session={name}", marks=marks)


@pytest.mark.timeout(SLOW_BLOCK_TIMEOUT_S)
@pytest.mark.parametrize("blocks", list(_cases()))
def test_example_runs_as_written(blocks: list[Block], tmp_path: Path) -> None:
    reasons = _skip_reasons(blocks)
    if reasons:
        pytest.skip("; ".join(reasons))
    if any("gossip" in b.code for b in blocks) and not _ports_free(GOSSIP_PORTS):
        pytest.skip(f"ports {GOSSIP_PORTS} the gossip example names are in use")
    cwd = ROOT if any("data" in b.needs for b in blocks) else tmp_path
    env = _environment(listen_base_port(4))
    try:
        for block in blocks:
            run_block(block, cwd, env)
    finally:
        _stop_clusters(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(SLOW_BLOCK_TIMEOUT_S)
def test_setup_commands_in_a_fresh_venv(tmp_path: Path) -> None:
    """The two set-up commands, as written, on a copy of this tree in a new venv."""
    [block] = [b for b in all_blocks() if "setup" in b.options]
    tree = tmp_path / "quorate"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache",
            "quorate-cluster", "build",
        ),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = _environment(listen_base_port(4))
    env["PATH"] = str(venv / "bin") + os.pathsep + os.environ.get("PATH", "")
    env.pop("PYTHONPATH", None)
    env["VIRTUAL_ENV"] = str(venv)
    for line in block.code.strip().splitlines():
        result = subprocess.run(
            ["bash", "-e", "-c", line], cwd=tree, env=env, capture_output=True, text=True,
            timeout=SLOW_BLOCK_TIMEOUT_S,
        )
        assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
