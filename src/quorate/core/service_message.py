"""Messages between the services of groups on different nodes.

Theory of operation. A node host routes a peer's message to a group's
*core* (``NodeHost.step``). Some groups also talk service to service: a
multi-Raft range's leader asks the meta group's service for a split, a
range leader tells a replica it moved away from that it is retired. Such a
message is not a protocol message and must not reach a core; it travels as
``ServiceMessage(group, message)``, and a runtime hands ``message`` to the
state (service) of ``group`` on the receiving node, whatever group sent it.
A node that does not host ``group`` drops it and counts it, as it does an
unknown group's protocol message.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from quorate.ids import NodeId

__all__ = ["PeerService", "ServiceMessage"]


class ServiceMessage(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """``message`` for the service of group ``group`` on the receiving node."""

    group: int
    message: Any


@runtime_checkable
class PeerService(Protocol):
    """A group's service that takes messages from other nodes' services."""

    def on_service_message(self, sender: NodeId, message: Any, now: float) -> None:
        """``sender``'s service sent ``message`` (any bad input is dropped here)."""
        ...
