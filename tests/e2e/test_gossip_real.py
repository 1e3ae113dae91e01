"""Five real ``quorate gossip node`` processes on loopback gossip a PN-Counter
and an OR-Set while one is killed with SIGKILL and restarted; every replica
converges to the same value, which counts every acknowledged operation.

The killed member's state is durable (``runtime.aio.gossip``: written
atomically before the reply), so what it acknowledged before the kill is
still there after the restart, and what it missed comes back by anti-entropy.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import free_base_port

import quorate
from quorate.cli.gossip import request
from quorate.ids import NodeId
from quorate.runtime.aio.gossip import GossipReply, GossipRequest

MEMBERS = 5
MEMBER_IDS = list(range(1, MEMBERS + 1))
"""Members are numbered from 1, as the nodes of every cluster."""
VICTIM = 3
PROTOCOL_PERIOD_S = 0.2
START_LIMIT_S = 20.0
CONVERGE_LIMIT_S = 40.0
"""Generous bounds for a shared machine; reaching one fails the test."""
POLL_S = 0.2
SOURCE_ROOT = Path(quorate.__file__).resolve().parents[1]
"""The member processes run the same code as this test."""


class Group:
    """The member processes of one test; every one is killed at the end."""

    def __init__(self, root: Path, base_port: int) -> None:
        self.root = root
        self.ports = {i: base_port + i - 1 for i in MEMBER_IDS}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def peers_of(self, member: int) -> str:
        return ",".join(f"{i}=127.0.0.1:{p}" for i, p in self.ports.items() if i != member)

    def start(self, member: int) -> None:
        command = [
            sys.executable,
            "-m",
            "quorate",
            "gossip",
            "node",
            "--id",
            str(member),
            "--listen",
            f"127.0.0.1:{self.ports[member]}",
            "--peers",
            self.peers_of(member),
            "--data-dir",
            str(self.root / f"m{member}"),
            "--insecure",
            "--protocol-period",
            str(PROTOCOL_PERIOD_S),
        ]
        log = open(self.root / f"m{member}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")])
                ),
            },
        )
        log.close()
        self.processes[member] = process
        self._await_listening(member, process)

    def _await_listening(self, member: int, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + START_LIMIT_S
            while time.monotonic() < deadline:
                if selector.select(timeout=POLL_S):
                    line = process.stdout.readline()
                    if line.startswith(b"listening"):
                        return
                    if not line:
                        break
        log = (self.root / f"m{member}.log").read_text(errors="replace")
        raise AssertionError(f"member {member} did not start:\n{log}")

    def kill(self, member: int) -> None:
        process = self.processes.pop(member)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def kill_all(self) -> None:
        for member in list(self.processes):
            self.kill(member)

    async def op(self, member: int, op: str, element: str = "", amount: int = 0) -> GossipReply:
        reply = await request(
            ("127.0.0.1", self.ports[member]),
            NodeId(member),
            GossipRequest(op, element=element, amount=amount, request_id=1),
            insecure=True,
        )
        assert reply.ok, reply.error
        return reply


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    g = Group(tmp_path, free_base_port(MEMBERS))
    yield g
    g.kill_all()


async def _workload(
    group: Group, members: list[int], rounds: int, tag: str
) -> tuple[int, set[str]]:
    """Increments and adds spread over ``members``; returns what was acknowledged."""
    total = 0
    added: set[str] = set()
    for r in range(rounds):
        member = members[r % len(members)]
        amount = (r % 3) + 1
        await group.op(member, "increment", amount=amount)
        total += amount
        element = f"{tag}{r}"
        await group.op(member, "add", element=element)
        added.add(element)
    return total, added


async def _converged(group: Group, counter: int, elements: set[str]) -> list[GossipReply]:
    deadline = time.monotonic() + CONVERGE_LIMIT_S
    replies: list[GossipReply] = []
    while time.monotonic() < deadline:
        replies = [await group.op(m, "read") for m in MEMBER_IDS]
        if all(r.counter == counter and set(r.elements) == elements for r in replies) and all(
            len(r.members_up) == MEMBERS for r in replies
        ):
            return replies
        await asyncio.sleep(POLL_S)
    return replies


def test_five_members_converge_through_a_sigkill_and_restart(group: Group) -> None:
    for member in MEMBER_IDS:
        group.start(member)

    async def scenario() -> None:
        total, added = await _workload(group, MEMBER_IDS, 15, "a")
        # The victim acknowledges operations of its own, then dies mid-stream.
        await group.op(VICTIM, "increment", amount=100)
        await group.op(VICTIM, "add", element="victim-only")
        total += 100
        added.add("victim-only")
        group.kill(VICTIM)
        survivors = [m for m in MEMBER_IDS if m != VICTIM]
        more, more_added = await _workload(group, survivors, 10, "b")
        total += more
        added |= more_added
        await group.op(survivors[0], "remove", element="a0")
        added.discard("a0")
        # Survivors notice the crash (SWIM): the victim drops out of their view.
        deadline = time.monotonic() + CONVERGE_LIMIT_S
        while time.monotonic() < deadline:
            views = [await group.op(m, "read") for m in survivors]
            if all(VICTIM not in r.members_up for r in views):
                break
            await asyncio.sleep(POLL_S)
        else:
            pytest.fail("the survivors never declared the killed member down")
        group.start(VICTIM)
        after = await group.op(VICTIM, "read")
        # Its acknowledged operations survived the SIGKILL (read from its disk).
        assert after.counter >= 100 and "victim-only" in after.elements
        await group.op(VICTIM, "increment", amount=7)
        total += 7
        replies = await _converged(group, total, added)
        summary = [(r.counter, sorted(r.elements), r.members_up) for r in replies]
        assert all(r.counter == total for r in replies), summary
        assert all(set(r.elements) == added for r in replies), summary
        assert all(len(r.members_up) == MEMBERS for r in replies), summary

    asyncio.run(scenario())
