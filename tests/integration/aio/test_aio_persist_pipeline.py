"""The node's persist pipeline: fsync on a worker thread, one Ready at a time,
a leader's AppendEntries sent before its own fsync, commit-only hard states
deferred. The safety claims of ``quorate.runtime.aio.node`` are checked
against what actually crosses the node's edges."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aio_harness import make_nodes, open_client, put, wait_until

from quorate.runtime.aio import AioNode
from quorate.runtime.aio.protocols import protocol_binding
from quorate.state.service import STATUS_OK

pytest.importorskip("quorate.raft")

from quorate.raft.messages import AppendEntries

PUTS = 40


def _watch_leader_edges(node: AioNode) -> dict[str, Any]:
    """Record, at every send and client reply of ``node``, how far its log was
    durable, and every violation of the durability rule."""
    storage = node.storage
    transport = node.transport
    assert storage is not None and transport is not None
    # Called between drives, with no fsync in flight: the disk is current.
    seen: dict[str, Any] = {"durable": storage.last_index(), "violations": [], "early": 0}
    persist_many, send, send_to_client = storage.persist_many, transport.send, transport.send_to_client

    def recording_persist(writes: list[Any], **kw: Any) -> None:
        persist_many(writes, **kw)
        for write in writes:
            if write.group == 0 and write.entries and kw.get("durable", True):
                seen["durable"] = write.entries[-1].index

    def checking_send(to: Any, message: Any, group: int = 0) -> None:
        if isinstance(message, AppendEntries):
            if message.leader_commit > seen["durable"]:
                seen["violations"].append(f"commit {message.leader_commit} left before fsync")
            if message.entries and message.entries[-1].index > seen["durable"]:
                seen["early"] += 1
        send(to, message, group)

    def checking_reply(connection_id: int, message: Any, group: int = 0) -> None:
        applied = node.service.applied if node.service is not None else 0
        if applied > seen["durable"]:
            seen["violations"].append(f"reply after applying {applied} > durable")
        send_to_client(connection_id, message, group)

    storage.persist_many = recording_persist  # type: ignore[method-assign]
    transport.send = checking_send  # type: ignore[method-assign]
    transport.send_to_client = checking_reply  # type: ignore[method-assign]
    return seen


def test_leader_sends_entries_before_its_fsync_but_never_a_commit(tmp_path: Path) -> None:
    """Thesis §10.2.1: the leader's own write runs in parallel with replication;
    what depends on it (a commit index, a client's acknowledgement) waits."""

    async def main() -> None:
        nodes = make_nodes(tmp_path, 3, protocol_binding("raft"))
        for n in nodes:
            await n.start()
        try:
            await wait_until(lambda: any(n.core.is_leader for n in nodes), "a leader")
            leader = next(n for n in nodes if n.core.is_leader)
            await wait_until(
                lambda: leader.core.commit_index >= 1 and not leader._driver.persisting,
                "the leader's no-op entry committed",
            )
            seen = _watch_leader_edges(leader)
            client = await open_client(leader)
            for seq in range(1, PUTS + 1):
                reply = await put(client, seq, f"k{seq}", "v")
                assert reply.status == STATUS_OK
            await client.close()
            assert seen["violations"] == []
            metrics = leader.metrics
            assert metrics["sent_before_persist"] > 0
            assert seen["early"] > 0
            # Each acknowledged put was committed with no fsync of its own.
            assert metrics["deferred_hard_states"] >= PUTS
            # One fsync per sequential put (its entry), not two.
            assert metrics["persists"] <= metrics["entries_persisted"] + 2
        finally:
            for n in nodes:
                await n.close()

    asyncio.run(main())


def test_concurrent_puts_share_fsyncs_and_survive_restart(tmp_path: Path) -> None:
    """While one fsync runs, arriving proposals wait for the next Ready: many
    proposals, fewer fsyncs; and every acknowledged put is on disk."""
    clients_n, per_client = 16, 10

    async def main() -> None:
        binding = protocol_binding("raft")
        nodes = make_nodes(tmp_path, 3, binding)
        for n in nodes:
            await n.start()
        await wait_until(lambda: any(n.core.is_leader for n in nodes), "a leader")
        leader = next(n for n in nodes if n.core.is_leader)

        async def session(client_id: int) -> None:
            client = await open_client(leader, client_id=client_id)
            for seq in range(1, per_client + 1):
                reply = await put(client, seq, f"c{client_id}/{seq}", "v")
                assert reply.status == STATUS_OK
            await client.close()

        await asyncio.gather(*(session(100 + i) for i in range(clients_n)))
        acknowledged = leader.service.applied if leader.service is not None else 0
        persists = leader.metrics["persists"]
        for n in nodes:
            await n.close()
        assert persists < clients_n * per_client
        # Reopened from disk, a majority holds every applied entry.
        from quorate.storage.sqlite import SqliteStorage

        holding = 0
        for i in range(3):
            with SqliteStorage(
                tmp_path / f"n{i + 1}",
                hard_state_type=binding.hard_state_type,
                snapshot_type=binding.snapshot_type,
            ) as storage:
                if storage.last_index() >= acknowledged:
                    holding += 1
        assert holding >= 2

    asyncio.run(main())
