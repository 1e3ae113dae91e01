"""Which protocol core a real node runs, chosen by name.

Theory of operation: the asyncio runtime is generic over
``quorate.core.ProtocolCore``. What it needs to know about a protocol fits in
a ``ProtocolBinding``: the wire message types its peers exchange (for the
codec), the msgspec types of its hard state and snapshot (for the storage),
and how to build a core from what the disk holds after a restart. A binding is
produced by a loader registered under a name; loaders import the protocol
lazily so that a missing or optional protocol only fails when it is chosen,
with a message that says so.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from quorate.core.protocol import ProtocolCore
from quorate.core.wire import WireMessage
from quorate.errors import ConfigError
from quorate.ids import NodeId
from quorate.storage.base import Recovered

CoreBuilder = Callable[
    [NodeId, tuple[NodeId, ...], random.Random, float, Recovered | None, Mapping[str, Any]],
    ProtocolCore,
]
"""``build(node_id, voters, rng, now, recovered, options) -> core``; ``recovered``
is ``None`` on a fresh disk."""


@dataclass(frozen=True, slots=True)
class ProtocolBinding:
    """What the runtime needs from one protocol."""

    name: str
    message_types: tuple[type[WireMessage], ...]
    hard_state_type: type[Any] | None
    snapshot_type: type[Any] | None
    build: CoreBuilder


_LOADERS: dict[str, Callable[[], ProtocolBinding]] = {}


def register_protocol(name: str, loader: Callable[[], ProtocolBinding]) -> None:
    """Make ``name`` available to ``protocol_binding`` (a later call replaces it)."""
    _LOADERS[name] = loader


def protocol_names() -> list[str]:
    return sorted(_LOADERS)


def protocol_binding(name: str) -> ProtocolBinding:
    """The binding registered as ``name``; ``ConfigError`` if unknown or not installed."""
    loader = _LOADERS.get(name)
    if loader is None:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(protocol_names())}")
    try:
        return loader()
    except ImportError as exc:
        raise ConfigError(
            f"protocol {name!r} is not available in this installation: {exc}"
        ) from None


def _load_raft() -> ProtocolBinding:
    from quorate.raft import RAFT_MESSAGE_TYPES, RaftConfig, RaftNode
    from quorate.raft.messages import HardState, Snapshot

    def build(
        node_id: NodeId,
        voters: tuple[NodeId, ...],
        rng: random.Random,
        now: float,
        recovered: Recovered | None,
        options: Mapping[str, Any],
    ) -> ProtocolCore:
        config = RaftConfig(**dict(options))
        core: ProtocolCore = RaftNode(
            node_id, voters, config=config, rng=rng, now=now, recovered=recovered
        )
        return core

    return ProtocolBinding("raft", tuple(RAFT_MESSAGE_TYPES), HardState, Snapshot, build)


register_protocol("raft", _load_raft)
