"""Periodic erasure-coded checkpoints of a shard and the reconstruction of
a failed or new member from them (paper section 3.4).

Theory of operation. Every ``CheckpointConfig.interval_entries`` applied
entries (``checkpoint_due``) a member cuts the encoded image with
``quorate.crypto.erasure`` into k data + m parity fragments and signs the
checkpoint root (``checkpoint_shard``); members holding the same state
co-sign it (``countersign``). Fragment i goes to the i-th member
(``distribute``), so each keeps 1/k of the state and any k give it back.

``CheckpointRecovery`` (sans-IO) is the rebuilding member: ask every peer
for its newest manifest; accept the first whose root carries enough member
signatures; fetch fragment i from member i for k indexes at once (data
fragments first: they decode cheapest); a fragment that fails its checksum
is rejected (counted, with its sender) and another index asked for, as is
one whose holder does not answer within ``request_timeout_s`` (a late
answer still counts); decode from k good ones and check the signed state
digest; then fetch the committed log after the checkpoint index (it must
continue the shard's hash chain from the checkpoint's signed log digest,
else another member is asked) and hand both to the caller, who restores the
store and replays the entries. A live shard member (``fetch_log=False``,
``keeper.ShardCheckpointer``) skips the last step: its Raft log catches up.
``CheckpointHolder`` is a member's side: it answers those requests.
"""


from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from quorate.core.ready import ChainedEntry, Entry, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.core.wire import WireMessage
from quorate.crypto.erasure import (
    CheckpointFragment,
    CheckpointManifest,
    ErasureCodec,
    cosign,
    encode_checkpoint,
    fragment_refusal,
    manifest_refusal,
    rebuild_state,
)
from quorate.errors import ConfigError, LocalProtocolError
from quorate.hrb.checkpoint.delta import as_chained
from quorate.hrb.checkpoint.image import encode_image, shard_image
from quorate.hrb.shard.chain import entry_digest
from quorate.hrb.shard.state import (
    ShardStore,
)
from quorate.ids import NodeId

DEFAULT_REQUEST_TIMEOUT_S = 2.0


# ---------------------------------------------------------------- checkpoints
@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """How often a shard checkpoints and how it codes the checkpoint."""

    interval_entries: int = 10_000
    k: int = 4
    m: int = 2
    required_signatures: int = 1
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.interval_entries < 1:
            raise ConfigError(f"checkpoint interval_entries must be >= 1, got {self.interval_entries}")
        if self.k < 1 or self.m < 1:
            raise ConfigError(f"a checkpoint needs k >= 1 and m >= 1, got k={self.k}, m={self.m}")
        if self.required_signatures < 1:
            raise ConfigError("a checkpoint needs at least one signature")
        if self.request_timeout_s <= 0:
            raise ConfigError("request_timeout_s must be > 0")


def checkpoint_due(applied_index: int, last_checkpoint_index: int, config: CheckpointConfig) -> bool:
    """True when ``interval_entries`` entries were applied since the last checkpoint."""
    return applied_index - last_checkpoint_index >= config.interval_entries


def checkpoint_shard(
    store: ShardStore,
    *,
    signer: Signer,
    codec: ErasureCodec,
    log_term: int = 0,
    log_digest: bytes = b"",
) -> tuple[CheckpointManifest, list[CheckpointFragment]]:
    """Cut ``store``'s image at its applied index into signed fragments."""
    return encode_checkpoint(
        encode_image(shard_image(store)),
        shard=store.rules.shard,
        log_index=store.applied_index,
        signer=signer,
        codec=codec,
        log_term=log_term,
        log_digest=log_digest,
    )


def countersign(manifest: CheckpointManifest, store: ShardStore, signer: Signer) -> CheckpointManifest | None:
    """A member adds its signature only if its own state at the checkpoint
    index encodes to the signed state digest (``None`` otherwise)."""
    if store.applied_index != manifest.log_index or store.rules.shard != manifest.shard:
        return None
    digest = hashlib.sha256(encode_image(shard_image(store))).digest()
    return cosign(manifest, signer) if digest == manifest.state_digest else None


def distribute(
    fragments: Sequence[CheckpointFragment], members: Sequence[int]
) -> list[tuple[int, CheckpointFragment]]:
    """Fragment i to the i-th member (members sorted)."""
    ordered = sorted(members)
    if len(ordered) != len(fragments):
        raise ConfigError(
            f"{len(fragments)} fragments for {len(ordered)} members: choose k + m = the shard's size"
        )
    return [(member, fragment) for member, fragment in zip(ordered, fragments, strict=True)]


# ---------------------------------------------------------------- messages
class ManifestRequest(WireMessage, tag="hrb.ManifestRequest", frozen=True):
    shard: int


class FragmentRequest(WireMessage, tag="hrb.FragmentRequest", frozen=True):
    shard: int
    log_index: int
    index: int


class LogSuffixRequest(WireMessage, tag="hrb.LogSuffixRequest", frozen=True):
    shard: int
    from_index: int


class LogSuffix(WireMessage, tag="hrb.LogSuffix", frozen=True):
    """Committed entries ``from_index``, ``from_index + 1``, ... of ``shard``."""

    shard: int
    from_index: int
    entries: tuple[ChainedEntry, ...]


# ---------------------------------------------------------------- a member's side
@dataclass
class CheckpointHolder:
    """What one member keeps for others: the newest manifest, its own fragment
    of it, and the committed log since (``log``, oldest first)."""

    node: int
    shard: int
    manifest: CheckpointManifest | None = None
    fragment: CheckpointFragment | None = None
    log: list[Entry] = field(default_factory=list)

    def store(self, manifest: CheckpointManifest, fragment: CheckpointFragment) -> None:
        """Keep a newer checkpoint (and drop the log it covers)."""
        if self.manifest is not None and manifest.log_index <= self.manifest.log_index:
            return
        self.manifest, self.fragment = manifest, fragment
        self.log = [e for e in self.log if e.index > manifest.log_index]

    def answer(self, message: WireMessage) -> WireMessage | None:
        """The reply to a recovering member's request (``None``: nothing to give)."""
        if isinstance(message, ManifestRequest):
            return self.manifest if message.shard == self.shard else None
        if isinstance(message, FragmentRequest):
            f = self.fragment
            if f is None or message.shard != self.shard:
                return None
            return f if (f.log_index, f.index) == (message.log_index, message.index) else None
        if isinstance(message, LogSuffixRequest):
            if message.shard != self.shard:
                return None
            entries = tuple(as_chained(e) for e in self.log if e.index >= message.from_index)
            return LogSuffix(self.shard, message.from_index, entries)
        return None


def _chain_refusal(start_digest: bytes, entries: Sequence[ChainedEntry]) -> str | None:
    """Why ``entries`` do not continue the shard's hash chain from the signed
    checkpoint's ``log_digest``, or ``None`` (also when the checkpoint names no
    digest: an unchained log). The chain proves the entries follow the
    checkpoint, not that they were committed: the shard's replica still
    checks the commit certificates it is shown."""
    if not start_digest:
        return None
    digest = start_digest
    for entry in entries:
        try:
            digest = entry_digest(digest, entry.term, entry.index, entry.kind, entry.data)
        except ValueError as exc:
            return f"a log suffix that does not encode: {exc}"
        if entry.digest != digest:
            return f"log entry {entry.index} breaks the hash chain from the checkpoint"
    return None


# ---------------------------------------------------------------- reconstruction
@dataclass(frozen=True, slots=True)
class Recovered:
    """The checkpointed state (encoded image) and the log after it."""

    manifest: CheckpointManifest
    state: bytes
    entries: tuple[ChainedEntry, ...]


@dataclass
class RecoveryReady:
    messages: list[tuple[NodeId, WireMessage]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    recovered: Recovered | None = None
    wake_at: float | None = None


class CheckpointRecovery:
    """A failed or new member's rebuild from its peers (see the module docstring).

    ``members`` are the shard's members, sorted: fragment i lives on
    ``members[i]``. Inputs: ``start``, ``step``, ``tick``; output: ``ready``."""

    def __init__(
        self,
        node: int,
        shard: int,
        members: Sequence[int],
        verifier: Verifier,
        config: CheckpointConfig,
        codec: ErasureCodec | None = None,
        *,
        fetch_log: bool = True,
    ) -> None:
        self.node, self.shard = node, shard
        self._fetch_log = fetch_log
        """False: the caller catches up the log itself (a live shard member
        does, through Raft); recovery ends with the decoded state."""
        self.members = tuple(sorted(members))
        if len(set(self.members)) != len(self.members) or not self.members:
            raise ConfigError("recovery needs the shard's members, each once")
        self._verifier = verifier
        self._config = config
        self._codec = codec
        self.phase = "idle"
        self.manifest: CheckpointManifest | None = None
        self._state: bytes | None = None
        self._good: dict[int, CheckpointFragment] = {}
        self._asked: dict[int, float] = {}
        """Fragment index -> deadline of the outstanding request."""
        self._failed: set[int] = set()
        self._log_peers: list[int] = []
        self._deadline = 0.0
        self._out = RecoveryReady()
        self.rejected_count = 0
        self.fragments_rejected = 0

    # ------------------------------------------------------------ inputs
    def start(self, now: float) -> None:
        if self.phase != "idle":
            raise LocalProtocolError("recovery already started")
        self.phase = "manifest"
        self._deadline = now + self._config.request_timeout_s
        for member in self.members:
            if member != self.node:
                self._send(member, ManifestRequest(self.shard))

    def step(self, sender: int, message: WireMessage, now: float) -> None:
        """A peer's reply; bad ones are dropped and counted, never raised."""
        if isinstance(message, CheckpointManifest):
            self._on_manifest(sender, message, now)
        elif isinstance(message, CheckpointFragment):
            self._on_fragment(sender, message, now)
        elif isinstance(message, LogSuffix):
            self._on_log(sender, message, now)
        else:
            self._reject(sender, message, "not a recovery reply")

    def tick(self, now: float) -> None:
        if self.phase == "fragments":
            for index, deadline in list(self._asked.items()):
                if now >= deadline:
                    del self._asked[index]
                    self._failed.add(index)
            if self._asked or now >= self._deadline:
                self._ask_fragments(now)
        elif self.phase == "log" and now >= self._deadline:
            self._ask_log(now)
        elif self.phase == "manifest" and now >= self._deadline:
            self._deadline = now + self._config.request_timeout_s
            for member in self.members:
                if member != self.node:
                    self._send(member, ManifestRequest(self.shard))

    def wake_at(self) -> float | None:
        """The next deadline (as ``ready().wake_at`` reports it)."""
        return self._wake_at()

    def ready(self) -> RecoveryReady:
        out, self._out = self._out, RecoveryReady()
        out.wake_at = self._wake_at()
        return out

    # ------------------------------------------------------------ handlers
    def _on_manifest(self, sender: int, manifest: CheckpointManifest, now: float) -> None:
        if self.phase != "manifest":
            return  # a later offer: the log suffix covers what it would add
        if manifest.shard != self.shard:
            self._reject(sender, manifest, f"a manifest of shard {manifest.shard}")
            return
        if len(manifest.fragment_hashes) != len(self.members):
            self._reject(sender, manifest, f"{len(manifest.fragment_hashes)} fragments for {len(self.members)} members")
            return
        reason = manifest_refusal(manifest, self._verifier, self.members, self._config.required_signatures)
        if reason is not None:
            self._reject(sender, manifest, f"checkpoint refused: {reason}")
            return
        self.manifest = manifest
        self.phase = "fragments"
        self._failed = self._own_index()
        self._ask_fragments(now)

    def _on_fragment(self, sender: int, fragment: CheckpointFragment, now: float) -> None:
        manifest = self.manifest
        if self.phase != "fragments" or manifest is None:
            return
        index = fragment.index
        if not 0 <= index < len(self.members) or self.members[index] != sender:
            self._reject(sender, fragment, f"fragment {index} is not node {sender}'s to give")
            return
        if index in self._good:
            return  # a late copy of one already taken
        # A late answer to a request that timed out is as good as a prompt one:
        # its checksum decides.
        self._asked.pop(index, None)
        reason = fragment_refusal(manifest, fragment)
        if reason is not None:
            self.fragments_rejected += 1
            self._failed.add(index)
            self._reject(sender, fragment, reason)
            self._ask_fragments(now)
            return
        self._good[index] = fragment
        if len(self._good) < manifest.k:
            return
        rebuilt = rebuild_state(manifest, self._good.values(), self._codec)
        if rebuilt.state is None:
            # Fragments that hash right but do not decode to the signed state:
            # the checkpoint's signer encoded them wrongly. Nothing more to try.
            self._reject(sender, fragment, f"checkpoint unusable: {rebuilt.reason}")
            self.phase = "manifest"
            self.manifest = None
            self._good.clear()
            self._asked.clear()
            self._failed.clear()
            return
        self._state = rebuilt.state
        if not self._fetch_log:
            self.phase = "done"
            self._out.recovered = Recovered(manifest, rebuilt.state, ())
            return
        self.phase = "log"
        self._log_peers = [m for m in self.members if m != self.node]
        self._ask_log(now)

    def _on_log(self, sender: int, suffix: LogSuffix, now: float) -> None:
        manifest = self.manifest
        if self.phase != "log" or manifest is None or self._state is None:
            return
        expected = manifest.log_index + 1
        if suffix.shard != self.shard or suffix.from_index != expected:
            self._reject(sender, suffix, f"a log suffix from {suffix.from_index}, expected {expected}")
            return
        if any(e.index != expected + i for i, e in enumerate(suffix.entries)):
            self._reject(sender, suffix, "a log suffix with a gap")
            self._ask_log(now)
            return
        broken = _chain_refusal(manifest.log_digest, suffix.entries)
        if broken is not None:
            self._reject(sender, suffix, broken)
            self._ask_log(now)
            return
        self.phase = "done"
        self._out.recovered = Recovered(manifest, self._state, suffix.entries)

    # ------------------------------------------------------------ requests
    def _ask_fragments(self, now: float) -> None:
        manifest = self.manifest
        assert manifest is not None
        need = manifest.k - len(self._good) - len(self._asked)
        for index in range(len(self.members)):
            if need <= 0:
                break
            if index in self._good or index in self._asked or index in self._failed:
                continue
            self._asked[index] = now + self._config.request_timeout_s
            self._send(self.members[index], FragmentRequest(self.shard, manifest.log_index, index))
            need -= 1
        if need > 0 and not self._asked:
            # Every index tried once and too few were good: forget the
            # failures and ask again after a timeout (a holder may have been
            # restarting).
            self._failed = self._own_index()
            self._deadline = now + self._config.request_timeout_s

    def _own_index(self) -> set[int]:
        """This member's own fragment index, if it is a member: it lost that one."""
        return {self.members.index(self.node)} if self.node in self.members else set()

    def _ask_log(self, now: float) -> None:
        manifest = self.manifest
        assert manifest is not None
        if not self._log_peers:
            self._log_peers = [m for m in self.members if m != self.node]
        peer = self._log_peers.pop(0)
        self._deadline = now + self._config.request_timeout_s
        self._send(peer, LogSuffixRequest(self.shard, manifest.log_index + 1))

    def _wake_at(self) -> float | None:
        if self.phase == "fragments":
            return min(self._asked.values()) if self._asked else self._deadline
        if self.phase in ("log", "manifest"):
            return self._deadline
        return None

    def _send(self, to: int, message: WireMessage) -> None:
        self._out.messages.append((NodeId(to), message))

    def _reject(self, sender: int, message: object, reason: str) -> None:
        self.rejected_count += 1
        self._out.rejected.append(Rejection(NodeId(sender), type(message).__name__, reason))
