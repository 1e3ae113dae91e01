"""The one security message between member nodes: a command for the leader.

Kept apart from ``quorate.runtime.aio.security`` (which needs PyNaCl) so that
importing the runtime does not load the cryptography until a node starts.
"""

from __future__ import annotations

from quorate.core.wire import WireMessage


class SecurityRelay(WireMessage, tag="security.Relay", frozen=True):
    """A member's signed registry (or DKG) command for the leader to propose."""

    machine: str
    data: bytes
