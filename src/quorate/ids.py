"""Identifiers shared by every layer.

Nodes are small integers: they index arrays in the simulator (1000+ nodes) and
encode in one or two bytes on the wire. Human-facing names ("n1") are mapped to
ids at the configuration edge.
"""

from __future__ import annotations

from typing import NewType

NodeId = NewType("NodeId", int)
"""A node (replica) in a cluster."""

ClientId = NewType("ClientId", int)
"""A client session; with a sequence number it makes commands exactly-once."""

GroupId = NewType("GroupId", int)
"""A protocol group hosted by nodes (a Raft range, a BFT cluster); 0 is the
group of a node that hosts one."""

MAX_GROUP_ID = (1 << 63) - 1
"""Group ids are non-negative and fit a signed 64-bit integer (on the wire,
in storage)."""


def valid_group_id(group: object) -> bool:
    """True for an int (not a bool) within ``0..MAX_GROUP_ID``."""
    return type(group) is int and 0 <= group <= MAX_GROUP_ID


def node_name(node: NodeId) -> str:
    """The display name of a node: ``n<id>``."""
    return f"n{node}"


def parse_node_name(text: str) -> NodeId:
    """Parse ``n3`` or ``3`` into a ``NodeId``; raise ``ValueError`` otherwise."""
    raw = text[1:] if text[:1] in ("n", "N") else text
    if not raw.isdigit():
        raise ValueError(f"not a node id: {text!r} (expected e.g. 'n3' or '3')")
    return NodeId(int(raw))
