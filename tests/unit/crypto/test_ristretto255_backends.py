"""Which Ristretto255 backend runs: the system libsodium when it loads, else
PyNaCl's Ed25519 operations, else pure Python; ``QUORATE_RISTRETTO255``
forces one. The zero-knowledge and private-vote suites pass without the
system library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quorate.crypto import ristretto255 as group
from quorate.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
VARIABLE = group.BACKEND_ENVIRONMENT_VARIABLE

HIDE_SYSTEM_LIBSODIUM = """
import ctypes
_real_cdll = ctypes.CDLL
SODIUM_ASKED = []
class _NoSodium(_real_cdll):
    def __init__(self, name, *args, **kwargs):
        if name and "sodium" in str(name):
            SODIUM_ASKED.append(name)
            raise OSError("hidden for this test")
        super().__init__(name, *args, **kwargs)
ctypes.CDLL = _NoSodium
"""
BLOCK_PYNACL = """
import sys
sys.modules["nacl"] = None
"""


def _python(code: str, backend: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    if backend is not None:
        env[VARIABLE] = backend
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )


SHOW_BACKEND = "from quorate.crypto import ristretto255 as g; print(g.backend_name())"


@pytest.mark.parametrize("name", group.available_backends())
def test_the_environment_variable_forces_a_backend(name: str) -> None:
    result = _python(SHOW_BACKEND, backend=name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name


def test_auto_prefers_the_system_library_then_pynacl_then_python() -> None:
    found = group.available_backends()
    result = _python(SHOW_BACKEND, backend="auto")
    assert result.stdout.strip() == found[0], result.stderr
    hidden = _python(HIDE_SYSTEM_LIBSODIUM + SHOW_BACKEND + "; print(len(SODIUM_ASKED) > 0)")
    assert hidden.stdout.split() == ["pynacl", "True"], hidden.stderr
    nothing = _python(HIDE_SYSTEM_LIBSODIUM + BLOCK_PYNACL + SHOW_BACKEND)
    assert nothing.stdout.strip() == "python", nothing.stderr


def test_a_forced_backend_that_cannot_load_says_what_to_install() -> None:
    result = _python(HIDE_SYSTEM_LIBSODIUM + SHOW_BACKEND, backend="libsodium")
    assert result.returncode != 0
    assert "apt-get install libsodium23" in result.stderr
    result = _python(BLOCK_PYNACL + SHOW_BACKEND, backend="pynacl")
    assert result.returncode != 0
    assert "quorate[crypto]" in result.stderr


def test_an_unknown_backend_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="libsodium, pynacl, python"):
        group.load_backend("openssl")
    result = _python(SHOW_BACKEND, backend="openssl")
    assert result.returncode != 0
    assert f"{VARIABLE} must be one of auto, libsodium, pynacl, python" in result.stderr


@pytest.mark.parametrize("name", ["pynacl", "python"])
def test_votes_work_without_ever_asking_for_the_system_library(name: str) -> None:
    code = HIDE_SYSTEM_LIBSODIUM + (
        "import secrets\n"
        "from quorate.crypto import ristretto255 as g\n"
        "from quorate.crypto.zk import Tallier, VoteVerifier, cast_ballot\n"
        "tallier = Tallier.generate()\n"
        "b = cast_ballot('p', 1, secrets.token_bytes(32), tallier.tally_key)\n"
        "fault = VoteVerifier().ballot_fault(b.proposal_id, b.voter, b.commitment, b.proof,"
        " b.sealed_opening, b.signature)\n"
        "print(g.backend_name(), fault, len(SODIUM_ASKED))\n"
    )
    result = _python(code, backend=name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [name, "None", "0"]


def _run_vote_suites(backend: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "0",
        "tests/unit/crypto/test_crypto_zk.py",
        "tests/unit/state/test_private_votes.py",
    ]
    env = {**os.environ, VARIABLE: backend}
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)


def test_zk_and_private_vote_suites_pass_on_the_pynacl_backend() -> None:
    result = _run_vote_suites("pynacl")
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.mark.slow
def test_zk_and_private_vote_suites_pass_on_the_python_backend() -> None:
    result = _run_vote_suites("python")
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
