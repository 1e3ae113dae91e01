"""quorate without its ``crypto`` extra (PyNaCl, blspy): the CLI and the Raft
runtime must load; only the BFT pieces ask for the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import free_base_port

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


def test_a_bft_node_without_pynacl_is_one_line_naming_the_package(tmp_path: Path) -> None:
    config = tmp_path / "n1.toml"
    port = free_base_port(1)
    config.write_text(
        f'id = "n1"\nlisten = "127.0.0.1:{port}"\ndata_dir = "n1"\ninsecure = true\nprotocol = "pbft"\n'
        '[peers]\nn2 = "127.0.0.1:1"\nn3 = "127.0.0.1:2"\nn4 = "127.0.0.1:3"\n'
    )
    result = _run(
        "import sys\n"
        "from quorate.cli.main import main\n"
        f"sys.argv = ['quorate', 'node', '--config', {str(config)!r}]\n"
        "main()\n"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "quorate: error: n1 cannot start: pynacl is not installed: pip install pynacl"
    ]
