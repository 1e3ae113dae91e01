"""The node config format is described completely and in one place
(``quorate.runtime.aio.config_reference``): every field the loader accepts,
every protocol option with its default, the template ``quorate node
--print-config`` prints and the tables of ``docs/node-config.md``."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from quorate.runtime.aio import config as node_config
from quorate.runtime.aio.config_reference import (
    NODE_FIELDS,
    config_reference_markdown,
    config_template,
    protocol_option_docs,
)

ROOT = Path(__file__).resolve().parents[3]
PROTOCOLS = ("raft", "pbft", "hotstuff", "casper", "hrb")


def test_every_field_the_loader_accepts_is_described() -> None:
    described = {doc.name.strip("[]") for doc in NODE_FIELDS}
    assert described == set(node_config._KNOWN_FIELDS)
    assert all(doc.meaning for doc in NODE_FIELDS)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_option_is_described_with_its_default(protocol: str) -> None:
    docs = {doc.name: doc for doc in protocol_option_docs(protocol)}
    config_class = {
        "raft": "quorate.raft.config.RaftConfig",
        "pbft": "quorate.pbft.config.PbftConfig",
        "hotstuff": "quorate.hotstuff.config.HotStuffConfig",
        "casper": "quorate.casper.config.CasperConfig",
        "hrb": "quorate.hrb.node.HrbSettings",
    }[protocol]
    module, _, name = config_class.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    for field in dataclasses.fields(cls):
        assert field.name in docs, field.name
        assert docs[field.name].meaning, f"{field.name} has no docstring"
        default = field.default
        expected = "true" if default is True else "false" if default is False else (
            f'"{default}"' if isinstance(default, str) else repr(default)
        )
        assert docs[field.name].default == expected


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_printed_template_is_a_config_that_loads(protocol: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quorate", "node", "--print-config", "--protocol", protocol],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == config_template(protocol)
    raw = tomllib.loads(result.stdout)
    assert raw["protocol"] == protocol
    for doc in NODE_FIELDS:  # every field is there, set or commented out with its default
        assert re.search(rf"^#? ?{re.escape(doc.name)}", result.stdout, re.MULTILINE), doc.name
    for doc in protocol_option_docs(protocol):
        assert f"# {doc.name} = " in result.stdout
    # With TLS and keys swapped for plain TCP it validates as it is.
    raw.pop("tls_dir")
    raw.pop("keys_dir", None)
    loaded = node_config.node_config_from_mapping({**raw, "insecure": True}, base_dir=tmp_path)
    assert loaded.protocol == protocol and len(loaded.peers) == (3 if protocol != "raft" else 2)


def test_print_config_refuses_an_unknown_protocol_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quorate", "node", "--print-config", "--protocol", "paxos"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("quorate: error: unknown protocol 'paxos'; choose one of ")
    assert "raft, pbft, hotstuff" in line and "raft" in line


def test_the_reference_document_holds_the_generated_tables() -> None:
    document = (ROOT / "docs" / "node-config.md").read_text(encoding="utf-8")
    assert config_reference_markdown() in document, (
        "docs/node-config.md is out of date: paste config_reference_markdown() under '## Reference'"
    )
