"""Where the multi-host suite cannot run, it says why (default suite: no
namespace is made here)."""

from __future__ import annotations

import pytest
from tests.netns import topology


def test_without_root_the_reason_is_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topology.os, "geteuid", lambda: 1000)
    assert topology.netns_problem() == "needs root to create network namespaces (ip netns add)"


def test_without_iproute2_the_reason_is_the_ip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topology.os, "geteuid", lambda: 0)
    monkeypatch.setattr(topology.shutil, "which", lambda name: None)
    assert topology.netns_problem() == "needs iproute2's ip command"


def test_a_refused_namespace_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: str) -> None:
        raise OSError("Operation not permitted")

    monkeypatch.setattr(topology.os, "geteuid", lambda: 0)
    monkeypatch.setattr(topology.shutil, "which", lambda name: "/usr/sbin/ip")
    monkeypatch.setattr(topology, "run", refuse)
    problem = topology.netns_problem()
    assert problem is not None and problem.startswith("cannot create a network namespace")
