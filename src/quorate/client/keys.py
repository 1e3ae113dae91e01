"""Operating the key registry of a running cluster: rotate, retire, revoke,
admit, approve (what ``quorate keys`` and ``quorate certs rotate`` call).

Theory of operation. Every command is an ``Extension("keys", ...)``
operation sent through an ``AsyncClient`` (so it gets the client's retries
under one session number, applied once), signed here with the keys the
caller holds in a key directory (``quorate keys``'s layout). Nothing here
decides anything: the replicated ``KeyRegistry`` checks each signature and
proof and answers ``ok`` or its reason, which a refusal raises as
``ClientError``.

A rotation is run where the node's key directory is (its own machine):
the new seed is written next to the node's key (``n1.key.next``, mode
0600) *before* the announcement, so the node finds it when the registry
activates the new key; the node then switches to it and retires the old key
itself (``quorate.runtime.aio.security``). ``rotate_signing_key`` returns
once the registry shows the new key active.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorate.client.aio import AsyncClient
from quorate.client.contact import ClientError
from quorate.crypto.ed25519 import SEED_SIZE_BYTES, ed25519_generate
from quorate.crypto.keyfiles import issue_node_key, key_file
from quorate.errors import ConfigError
from quorate.ids import NodeId, node_name
from quorate.security.keyregistry import (
    KIND_SIGNING,
    KIND_TLS,
    MACHINE_NAME,
    Describe,
    RegistryCommand,
    encode_registry_command,
    make_admission_request,
    make_announcement,
    make_approval,
    make_revocation,
)
from quorate.security.registry_keyring import NEXT_SUFFIX
from quorate.state.kv import Extension, Result

POLL_INTERVAL_S = 0.2
DEFAULT_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Decided:
    """A registry item's outcome: the subject approvals named, and the log
    index at which it took effect (None: still waiting)."""

    subject: str
    index: int | None
    command: bytes = b""
    """The registry command that opened the item, as committed."""


async def submit(client: AsyncClient, command: RegistryCommand) -> Result:
    """Send one registry command; ``ClientError`` with the registry's reason if refused."""
    result = await client.execute(Extension(MACHINE_NAME, encode_registry_command(command)))
    if not result.ok:
        raise ClientError(f"the key registry refused it: {result.error}")
    return result


async def describe(client: AsyncClient) -> dict[str, Any]:
    """The registry's state (through the log, so as of a committed index)."""
    result = await submit(client, Describe())
    state: dict[str, Any] = json.loads(result.value or "{}")
    return state


def read_seed(path: Path) -> bytes:
    try:
        seed = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing (the key must be where the command runs)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the key {path}: {exc}") from None
    if len(seed) != SEED_SIZE_BYTES:
        raise ConfigError(f"{path} does not hold a {SEED_SIZE_BYTES}-byte seed")
    return seed


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def _node_state(state: dict[str, Any], node: NodeId) -> dict[str, Any]:
    entry = state.get("nodes", {}).get(node_name(node))
    if entry is None:
        raise ConfigError(f"{node_name(node)} is not in the cluster's key registry")
    return dict(entry)


def _newest(entry: dict[str, Any], kind: str) -> str:
    live = [r["key"] for r in entry[kind] if r["retired_at"] is None]
    return str(live[-1]) if live else ""


async def wait_until_newest(
    client: AsyncClient, node: NodeId, kind: str, key_hex: str, timeout_s: float = DEFAULT_WAIT_S
) -> int:
    """Poll until ``key_hex`` is ``node``'s newest key of ``kind``; its activation index."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        entry = _node_state(await describe(client), node)
        for record in entry[kind]:
            if record["key"] == key_hex and record["retired_at"] is None:
                return int(record["activated_at"])
        if entry.get("revoked_at") is not None:
            raise ClientError(f"{node_name(node)} was revoked at log index {entry['revoked_at']}")
        if loop.time() > deadline:
            raise TimeoutError(f"{node_name(node)}'s new {kind} key was not approved within {timeout_s:g} s")
        await asyncio.sleep(POLL_INTERVAL_S)


async def rotate_signing_key(
    client: AsyncClient, keys_dir: Path, node: NodeId, *, timeout_s: float = DEFAULT_WAIT_S
) -> Decided:
    """Announce a new signing key for ``node`` (signed by its current key,
    with a proof of the new one) and wait for the quorum to activate it."""
    current = key_file(keys_dir, node)
    seed = read_seed(current)
    pending = current.with_name(current.name + NEXT_SUFFIX)
    state = await describe(client)
    cluster = bytes.fromhex(state["cluster"])
    entry = _node_state(state, node)
    fresh = ed25519_generate()
    _write_private(pending, fresh.signing_key.hex() + "\n")
    announcement = make_announcement(
        cluster, int(node), KIND_SIGNING, fresh.public_key, int(entry["serial"]) + 1, seed, fresh.signing_key
    )
    try:
        result = await submit(client, announcement)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    index = await wait_until_newest(client, node, KIND_SIGNING, fresh.public_key.hex(), timeout_s)
    return Decided(str(result.value), index, encode_registry_command(announcement))


async def announce_certificate(
    client: AsyncClient, keys_dir: Path, node: NodeId, fingerprint: bytes, *, timeout_s: float = DEFAULT_WAIT_S
) -> Decided:
    """Pin ``node``'s new certificate (its SHA-256 fingerprint), signed by its
    signing key; wait for the quorum to activate it."""
    seed = read_seed(key_file(keys_dir, node))
    state = await describe(client)
    cluster = bytes.fromhex(state["cluster"])
    entry = _node_state(state, node)
    announcement = make_announcement(cluster, int(node), KIND_TLS, fingerprint, int(entry["serial"]) + 1, seed)
    result = await submit(client, announcement)
    index = await wait_until_newest(client, node, KIND_TLS, fingerprint.hex(), timeout_s)
    return Decided(str(result.value), index)


async def wait_until_retired(
    client: AsyncClient, node: NodeId, kind: str, timeout_s: float = DEFAULT_WAIT_S
) -> int:
    """Poll until ``node`` has one valid key of ``kind`` left (the overlap is
    over); the index at which the last older key retired."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        entry = _node_state(await describe(client), node)
        live = [r for r in entry[kind] if r["retired_at"] is None]
        if len(live) == 1:
            retired = [int(r["retired_at"]) for r in entry[kind] if r["retired_at"] is not None]
            return max(retired, default=0)
        if loop.time() > deadline:
            raise TimeoutError(f"{node_name(node)}'s old {kind} key did not retire within {timeout_s:g} s")
        await asyncio.sleep(POLL_INTERVAL_S)


async def revoke(
    client: AsyncClient, keys_dir: Path, node: NodeId, signers: list[NodeId], reason: str = ""
) -> Decided:
    """Propose ``node``'s revocation and add the approvals of ``signers``
    (members whose keys are in ``keys_dir``); the index it took effect, if it did."""
    if not signers:
        raise ConfigError("a revocation needs at least one member to sign it (--as)")
    cluster = bytes.fromhex((await describe(client))["cluster"])
    result: Result | None = None
    for signer in signers:
        seed = read_seed(key_file(keys_dir, signer))
        result = await submit(client, make_revocation(cluster, int(node), int(signer), reason, seed))
    entry = _node_state(await describe(client), node)
    revoked = entry.get("revoked_at")
    return Decided(str(result.value if result else ""), None if revoked is None else int(revoked))


async def request_admission(client: AsyncClient, keys_dir: Path, node: NodeId) -> str:
    """Ask the cluster to admit ``node`` (its key is created in ``keys_dir`` if
    missing); returns the subject members approve."""
    path = key_file(keys_dir, node)
    if not path.exists():
        issue_node_key(keys_dir, node, listed=False)  # public-keys.toml is the genesis: untouched
    cluster = bytes.fromhex((await describe(client))["cluster"])
    result = await submit(client, make_admission_request(cluster, int(node), read_seed(path)))
    return str(result.value)


async def approve(client: AsyncClient, keys_dir: Path, node: NodeId, signers: list[NodeId]) -> Decided:
    """Approve the item pending for ``node`` (an admission or a rotation) as
    each of ``signers``."""
    state = await describe(client)
    cluster = bytes.fromhex(state["cluster"])
    waiting = [p for p in state.get("pending", []) if p["node"] == node_name(node)]
    if not waiting:
        raise ClientError(f"nothing is waiting for approval for {node_name(node)}")
    subject = bytes.fromhex(waiting[0]["subject"])
    for signer in signers:
        seed = read_seed(key_file(keys_dir, signer))
        await submit(client, make_approval(cluster, int(signer), subject, seed))
    entry = (await describe(client)).get("nodes", {}).get(node_name(node), {})
    admitted = entry.get("admitted_at") if entry else None
    return Decided(subject.hex(), None if admitted is None else int(admitted))


# ---------------------------------------------------------------- DKG sessions
DKG_STATES = {0: "running", 1: "done", 2: "failed", 3: "not a participant"}
"""The values of a node's ``dkg.session.<name>.state`` metric."""
DKG_SESSION_PREFIX = "dkg.session."


async def start_dkg(
    client: AsyncClient, keys_dir: Path, starter: NodeId, session: str, threshold: int,
    members: list[NodeId] | None = None,
) -> str:
    """Start a distributed key generation among ``members`` (default: every
    member of the key registry) with ``threshold``, signed by ``starter``'s
    key; the nodes run it through the log by themselves."""
    from quorate.security.dkg_log import MACHINE_NAME as DKG_MACHINE
    from quorate.security.dkg_log import encode_dkg_command, make_start

    seed = read_seed(key_file(keys_dir, starter))
    state = await describe(client)
    cluster = bytes.fromhex(state["cluster"])
    chosen = tuple(sorted(int(m) for m in members)) if members else tuple(
        sorted(int(name.removeprefix("n")) for name in state["members"])
    )
    if not 1 <= threshold <= len(chosen):
        raise ConfigError(f"--threshold must be between 1 and the {len(chosen)} members, got {threshold}")
    start = make_start(cluster, session, chosen, threshold, int(starter), seed)
    result = await client.execute(Extension(DKG_MACHINE, encode_dkg_command(start)))
    if not result.ok:
        raise ClientError(f"the DKG record refused it: {result.error}")
    return session


async def dkg_status(client: AsyncClient) -> dict[str, Any]:
    """Every session as the nodes report it: per node its state and a digest
    of the group key it computed; ``agreed`` when every node that finished
    shows the same digest."""
    statuses = await client.cluster_status()
    sessions: dict[str, dict[str, Any]] = {}
    answered = 0
    for status in statuses:
        if status is None:
            continue
        answered += 1
        for key, value in status.metrics.items():
            if not key.startswith(DKG_SESSION_PREFIX) or not key.endswith(".state"):
                continue
            name = key[len(DKG_SESSION_PREFIX) : -len(".state")]
            entry = sessions.setdefault(name, {"nodes": {}})
            digest = status.metrics.get(f"{DKG_SESSION_PREFIX}{name}.key")
            entry["nodes"][node_name(NodeId(status.node))] = {
                "state": DKG_STATES.get(int(value), str(value)),
                "key_digest": None if digest is None else f"{int(digest):012x}",
            }
    for entry in sessions.values():
        digests = {n["key_digest"] for n in entry["nodes"].values() if n["state"] == "done"}
        states = [n["state"] for n in entry["nodes"].values() if n["state"] != "not a participant"]
        entry["done"] = bool(states) and all(s == "done" for s in states)
        entry["failed"] = any(s == "failed" for s in states)
        entry["agreed"] = entry["done"] and len(digests) == 1
        entry["key_digest"] = next(iter(digests)) if len(digests) == 1 else None
    return {"nodes_answered": answered, "nodes": len(statuses), "sessions": dict(sorted(sessions.items()))}


async def wait_for_dkg(client: AsyncClient, session: str, timeout_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
    """``dkg_status`` once ``session`` is done (or failed) on every node that
    answers; ``TimeoutError`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        state = await dkg_status(client)
        entry = state["sessions"].get(session)
        if entry is not None and (entry["done"] or entry["failed"]):
            return state
        if loop.time() > deadline:
            raise TimeoutError(f"DKG session {session!r} did not finish within {timeout_s:g} s")
        await asyncio.sleep(POLL_INTERVAL_S)
