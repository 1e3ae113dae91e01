"""quorate without its ``crypto`` extra (PyNaCl, blspy): the CLI and the Raft
runtime must load; only the BFT pieces ask for the extra."""

from __future__ import annotations

import subprocess
import sys

BLOCK_CRYPTO = """
import sys
for name in ("nacl", "blspy"):
    sys.modules[name] = None  # import fails as if not installed
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_CRYPTO + code], capture_output=True, text=True, timeout=120
    )


def test_the_cli_and_raft_runtime_load_without_the_crypto_extra() -> None:
    result = _run(
        "from quorate.cli.main import _register\n"
        "_register()\n"
        "import quorate.runtime.aio.node, quorate.client.bft, quorate.bench.real\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_keys_commands_name_the_missing_extra() -> None:
    result = _run(
        "import sys\n"
        "from quorate.cli.main import main\n"
        "sys.argv = ['quorate', 'keys', 'init', '--dir', '/nonexistent-quorate-keys']\n"
        "main()\n"
    )
    assert result.returncode == 2
    assert "pip install pynacl" in result.stderr
