"""Replicated state machines (what clients of every protocol write to) and the
sans-IO replica service that connects clients to a protocol core."""

from quorate.state.kv import (
    Cas,
    Command,
    Delete,
    Get,
    KVStore,
    List,
    Op,
    Put,
    Result,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
)

__all__ = [
    "Cas",
    "Command",
    "Delete",
    "Get",
    "KVStore",
    "List",
    "Op",
    "Put",
    "Result",
    "decode_command",
    "decode_result",
    "encode_command",
    "encode_result",
]
