"""The README's deployment commands run as written (output directories moved
to a temporary place): the certificates and keys for N hosts, and the
compose and Kubernetes files, which equal the ones in the repository."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quorate.cli.main import _register, app

_register()
ROOT = Path(__file__).resolve().parents[2]
SECTION = "### Deployment on many hosts"


def _commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) : text.index("\n## ", text.index(SECTION))]
    lines: list[list[str]] = []
    for block in section.split("```sh\n")[1:]:
        for line in block.split("```", 1)[0].splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("for i in 1 2 3; do "):
                body = line.removeprefix("for i in 1 2 3; do ").removesuffix("; done")
                lines += [shlex.split(body.replace("$i", str(i))) for i in (1, 2, 3)]
            elif line.startswith("quorate "):
                lines.append(shlex.split(line))
    return lines


def test_the_readme_deployment_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = _commands()
    assert any(c[:2] == ["quorate", "deploy"] for c in commands) and any(c[:3] == ["quorate", "certs", "init"] for c in commands)
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        result = CliRunner().invoke(app, argv[1:])
        assert result.exit_code == 0, (argv, result.output)
    for name in ("ca.crt", "n1.crt", "n3.key", "client.crt"):
        assert (tmp_path / "tls" / name).is_file()
    assert (tmp_path / "keys" / "public-keys.toml").is_file()
    for rendered in (tmp_path / "deploy").rglob("*"):
        if rendered.is_file():
            assert rendered.read_text() == (ROOT / rendered.relative_to(tmp_path)).read_text(), rendered
