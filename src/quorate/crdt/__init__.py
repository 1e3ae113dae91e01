"""CRDTs: delta-state counters, registers, sets, maps, text and lists, causality
and delta synchronisation; replay of concurrent editing histories. Sans-IO;
re-exports only."""

from quorate.crdt.broadcast import CausalBatch, CausalBroadcast, CausalMessage, pack_batches
from quorate.crdt.causal import CausalContext, Dot, Ordering, VersionVector
from quorate.crdt.counters import GCounter, PNCounter
from quorate.crdt.encoding import FORMAT_VERSION, FormatTag
from quorate.crdt.history import EventGraph, TextHistory
from quorate.crdt.opbased import OpKind, OpReplica
from quorate.crdt.ormap import (
    MV_REGISTER_VALUES,
    OR_SET_VALUES,
    ORMap,
    ValueSpec,
    or_map_values,
)
from quorate.crdt.orset import ORSet
from quorate.crdt.registers import HLC, HLCTimestamp, LWWRegister, MVRegister
from quorate.crdt.sequence import ListDelta, ReplicatedList
from quorate.crdt.sync import DeltaAck, DeltaBuffer, DeltaGroup, DeltaSync
from quorate.crdt.text import DeleteRun, InsertRun, Text, TextDelta

__all__ = [
    "FORMAT_VERSION",
    "HLC",
    "MV_REGISTER_VALUES",
    "OR_SET_VALUES",
    "CausalBatch",
    "CausalBroadcast",
    "CausalContext",
    "CausalMessage",
    "DeleteRun",
    "DeltaAck",
    "DeltaBuffer",
    "DeltaGroup",
    "DeltaSync",
    "Dot",
    "EventGraph",
    "FormatTag",
    "GCounter",
    "HLCTimestamp",
    "InsertRun",
    "LWWRegister",
    "ListDelta",
    "MVRegister",
    "ORMap",
    "ORSet",
    "OpKind",
    "OpReplica",
    "Ordering",
    "PNCounter",
    "ReplicatedList",
    "Text",
    "TextDelta",
    "TextHistory",
    "ValueSpec",
    "VersionVector",
    "or_map_values",
    "pack_batches",
]
