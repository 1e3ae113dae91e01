"""The replica service with a minimal stand-in core: proposals answered on
apply, overwritten entries answered with retry, ReadIndex reads served only
once applied, redirects."""

from __future__ import annotations

from typing import Any

from quorate.core import Accepted, Entry, Queued, ReadState, Ready, Redirect
from quorate.core.protocol import ProposeOutcome
from quorate.ids import NodeId
from quorate.state.kv import Get, KVStore, Put, decode_command, decode_result, encode_op
from quorate.state.service import ClientReply, ClientRequest, ReplicaService


class StandInCore:
    """Appends proposals to a list; the test decides what commits."""

    def __init__(self, leader: bool = True) -> None:
        self.leader = leader
        self.log: list[Entry] = []
        self.term = 1
        self.reads: list[bytes] = []

    @property
    def id(self) -> NodeId:
        return NodeId(1)

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        if not self.leader:
            return Redirect(NodeId(2))
        self.log.append(Entry(self.term, len(self.log) + 1, 0, command))
        return Accepted(len(self.log), self.term)

    def read_index(self, context: bytes, now: float) -> ProposeOutcome:
        if not self.leader:
            return Redirect(NodeId(2))
        self.reads.append(context)
        return Accepted(len(self.log), self.term)

    def step(self, sender: NodeId, message: Any, now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def has_ready(self) -> bool:
        return False

    def ready(self) -> Ready:
        return Ready()

    def advance(self, ready: Ready) -> None: ...


def request(seq: int, op: Any) -> ClientRequest:
    return ClientRequest(client=9, seq=seq, op=encode_op(op))


def test_write_is_answered_when_its_entry_applies() -> None:
    core = StandInCore()
    service = ReplicaService(core, KVStore())
    service.on_client_request(NodeId(100), request(1, Put("k", "v")), now=1.0)
    assert service.take_replies() == []
    service.apply(core.log[0])
    [(to, reply)] = service.take_replies()
    assert to == 100 and reply.status == "ok" and decode_result(reply.result).ok
    assert service.kv.get("k") == "v"


def test_overwritten_entry_is_answered_with_retry() -> None:
    core = StandInCore()
    service = ReplicaService(core, KVStore())
    service.on_client_request(NodeId(100), request(1, Put("k", "v")), now=1.0)
    other = Entry(term=2, index=1, kind=0, data=core.log[0].data)
    service.apply(other)
    [(_, reply)] = service.take_replies()
    assert reply.status == "retry"


def test_follower_redirects() -> None:
    service = ReplicaService(StandInCore(leader=False), KVStore())
    service.on_client_request(NodeId(100), request(1, Put("k", "v")), now=1.0)
    service.on_client_request(NodeId(100), request(2, Get("k")), now=1.0)
    replies = [r for _, r in service.take_replies()]
    assert [r.status for r in replies] == ["redirect", "redirect"]
    assert all(r.leader == 2 for r in replies)


def test_read_index_waits_until_applied() -> None:
    core = StandInCore()
    service = ReplicaService(core, KVStore())
    service.on_client_request(NodeId(100), request(1, Put("k", "v")), now=1.0)
    service.on_client_request(NodeId(101), request(1, Get("k")), now=1.0)
    service.read_ready(ReadState(index=1, context=core.reads[0]))
    assert service.take_replies() == []  # index 1 is not applied yet
    service.apply(core.log[0])
    replies = dict(service.take_replies())
    read: ClientReply = replies[NodeId(101)]
    assert decode_result(read.result).value == "v"


def test_malformed_operation_is_an_error_not_an_exception() -> None:
    service = ReplicaService(StandInCore(), KVStore())
    service.on_client_request(NodeId(100), ClientRequest(1, 1, b"\xc1"), now=0.0)
    [(_, reply)] = service.take_replies()
    assert reply.status == "error"


def test_log_read_mode_puts_reads_through_the_log() -> None:
    core = StandInCore()
    service = ReplicaService(core, KVStore(), read_mode="log")
    service.on_client_request(NodeId(100), request(1, Get("k")), now=0.0)
    assert len(core.log) == 1 and core.reads == []


class QueuingCore(StandInCore):
    """A BFT-like core: every replica queues; the test orders commands."""

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        self.log.append(Entry(self.term, len(self.log) + 1, 0, command))
        return Queued(view=self.term)


def test_bft_replica_answers_when_the_session_command_executes() -> None:
    core = QueuingCore()
    service = ReplicaService(core, KVStore(), read_mode="log")
    service.on_client_request(NodeId(100), request(1, Put("k", "v")), now=0.0)
    assert service.take_replies() == []
    # Another replica's primary ordered the same command at a different index.
    service.apply(Entry(term=3, index=7, kind=0, data=core.log[0].data))
    [(to, reply)] = service.take_replies()
    assert to == 100 and reply.status == "ok" and reply.seq == 1


def test_commands_carry_the_stamp_clock_when_given() -> None:
    core = StandInCore()
    service = ReplicaService(core, KVStore(), stamp_clock=lambda: 1_700_000_000.0, local_clock=lambda: 3.0)
    service.on_client_request(NodeId(100), request(1, Put("k", "v", ttl_s=5.0)), now=3.0)
    command = decode_command(core.log[0].data)
    assert command.time_s == 1_700_000_000.0
    plain = ReplicaService(StandInCore(), KVStore())
    plain.on_client_request(NodeId(100), request(1, Put("k", "v")), now=3.0)
    assert decode_command(plain.core.log[0].data).time_s == 3.0  # type: ignore[attr-defined]
