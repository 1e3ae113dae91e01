"""Fixtures for the asyncio runtime tests: certificates of a cluster CA and of a
foreign one."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorate.cli.certs import create_ca, issue_certificate


@pytest.fixture(scope="session")
def cluster_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster CA with certificates n1..n3 and client-a."""
    directory = tmp_path_factory.mktemp("certs")
    create_ca(directory)
    for name in ("n1", "n2", "n3", "client-a"):
        issue_certificate(directory, name)
    return directory


@pytest.fixture(scope="session")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA that also issued an ``n2``: right name, wrong cluster."""
    directory = tmp_path_factory.mktemp("foreign")
    create_ca(directory, name="someone else's CA")
    issue_certificate(directory, "n2")
    return directory
