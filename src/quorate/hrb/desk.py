"""A shard member's service for agents (tier 3 of ``docs/hrb.md``).

Theory of operation. Agents send their transactions to members of their
home shard. The member that receives one proposes it to its shard replica
(the leader appends it; a follower forwards it and watches that it is
appended within the inclusion bound) and remembers which agent sent it.
When the member applies the transaction's outcome for this shard's agents
(an intra-shard commit, or a cross-shard commit or abort once the core's
certified decision reaches the shard), the outcome goes back to that agent.
An agent usually sends a transaction to every member of its home shard, so
it is answered by each honest member that applied it: one answer is enough
for a shard with an honest majority, f+1 matching answers are the agent's
proof in ``quorum = "byzantine"`` shards.

The desk is the ``state`` role a ``quorate.core.host.HostedGroup`` carries,
so both runtimes serve agents through the same object.
"""

from __future__ import annotations

from typing import Any

from quorate.core.ready import Entry, ReadState
from quorate.hrb.messages import Transaction
from quorate.hrb.shard.state import ClientTxn, encode_command
from quorate.hrb.system import ShardMember
from quorate.ids import NodeId

__all__ = ["AgentDesk"]


class AgentDesk:
    """Proposes agents' transactions to ``member`` and answers them with the
    outcomes the member applies."""

    def __init__(self, member: ShardMember) -> None:
        self.member = member
        self.waiting: dict[bytes, NodeId] = {}
        self.replies: list[tuple[NodeId, Any]] = []

    def on_client_request(self, src: NodeId, message: Any, now: float) -> None:
        if isinstance(message, Transaction):
            self.waiting[message.txn_id] = src
            self.member.propose(encode_command(ClientTxn(message)), now)

    def apply_all(self, entries: list[Entry]) -> None:
        self._collect()

    def _collect(self) -> None:
        for outcome in self.member.take_results():
            client = self.waiting.pop(outcome.txn_id, None)
            if client is not None:
                self.replies.append((client, outcome))

    def has_replies(self) -> bool:
        self._collect()
        return bool(self.replies)

    def take_replies(self) -> list[tuple[NodeId, Any]]:
        out, self.replies = self.replies, []
        return out

    def restore(self, snapshot: Any) -> None:
        return None

    def read_ready(self, read: ReadState) -> None:
        return None
