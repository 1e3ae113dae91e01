"""The meta group's service: clients and range leaders ↔ Raft ↔ the range table.

Theory of operation. ``MetaService`` is the replica service
(``quorate.state.service.ReplicaService``) with the range table
(``quorate.multiraft.table``) as its state machine: writes (splits, replica
changes) are ordered by the meta group's log, lookups are served by
ReadIndex. It answers two kinds of callers:

- clients (a range cache refreshing itself) send ``ClientRequest``s and get
  ``ClientReply``s, as from any replica service;
- range leaders on other nodes send ``MetaCall``s inside
  ``ServiceMessage``; the answer goes back as a ``MetaAnswer`` to the
  calling node's service of the range that asked.

Commands carry no client session: every command of the table is idempotent
by itself (the table records each split and replica change by what the
request saw), so a request repeated after a lost answer, or by the next
leader of the range, gets the first answer again.
"""

from __future__ import annotations

from typing import Any

from quorate.core.protocol import ProtocolCore
from quorate.core.service_message import ServiceMessage
from quorate.ids import NodeId
from quorate.multiraft.messages import MetaAnswer, MetaCall
from quorate.multiraft.table import (
    LookupKey,
    LookupRange,
    RangeTable,
    decode_meta_op,
    encode_meta_op,
)
from quorate.state.service import ClientReply, ReplicaService

__all__ = ["MetaService"]


class MetaService(ReplicaService):
    """A replica service whose state machine is the range table."""

    __slots__ = ("_callers", "service_messages_dropped", "table")

    def __init__(self, core: ProtocolCore, table: RangeTable, **options: Any) -> None:
        super().__init__(core, table, **options)  # type: ignore[arg-type]  # the table has the store interface the service uses
        self.table = table
        self._callers: dict[tuple[NodeId, int, int], int] = {}
        """(calling node, client, seq) -> the group its answer goes to."""
        self.service_messages_dropped = 0

    def decode_op(self, data: bytes) -> Any:
        return decode_meta_op(data)

    def is_read(self, op: Any) -> bool:
        return isinstance(op, LookupKey | LookupRange)

    def encode_command(self, client: int, seq: int, op: Any, time_s: float) -> bytes:
        return encode_meta_op(op)

    def on_service_message(self, sender: NodeId, message: Any, now: float) -> None:
        """A range leader's ``MetaCall``; anything else is dropped and counted."""
        if type(message) is not MetaCall:
            self.service_messages_dropped += 1
            return
        request = message.request
        self._callers[(sender, request.client, request.seq)] = message.reply_group
        self.on_client_request(sender, request, now)

    def take_replies(self) -> list[tuple[NodeId, Any]]:
        replies: list[tuple[NodeId, Any]] = super().take_replies()
        callers = self._callers
        if not callers:
            return replies
        out: list[tuple[NodeId, Any]] = []
        for to, reply in replies:
            group = callers.pop((to, reply.client, reply.seq), None) if type(reply) is ClientReply else None
            if group is None:
                out.append((to, reply))
            else:
                out.append((to, ServiceMessage(group, MetaAnswer(reply))))
        return out

