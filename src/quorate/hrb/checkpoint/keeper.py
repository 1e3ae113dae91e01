"""A live shard member's checkpoints: cut them as the shard applies its log,
have them co-signed, keep one fragment durably, serve it, and rebuild the
member's state from its peers' fragments after it lost its disk.

Theory of operation
-------------------
``ShardCheckpointer`` is the sans-IO core of one more group a real node
hosts beside its shard (group id ``CHECKPOINT_GROUP_BASE + shard``, so its
messages travel between the shard's members like every other HRB message).
It holds the node's ``ShardReplica`` and sets two of its fields:

- **Cutting.** ``replica.checkpoint_every`` = ``interval_entries``: right
  after the store applied index C (a multiple of it) the replica calls
  ``checkpoint_cut``, with the store at exactly C. Every honest member
  applies the same entries, so every member encodes the same image, cuts
  the same Reed-Solomon fragments (``fragment_shape``: k data + m parity,
  k + m = the shard's members) and computes the same checkpoint root. The
  member signs the root, keeps fragment i (its place among the sorted
  members) and sends its signature to the others (``CheckpointCosign``).
- **Co-signing.** A member adds a peer's signature only if it is over the
  root it computed itself at that index and verifies. Once the root carries
  ``required_signatures`` (f + 1 in a ``byzantine`` shard: one honest member
  at least) the checkpoint becomes the member's newest: its manifest and
  fragment go to durable storage (the group's hard state, written with an
  fsync) and replace the older one.
- **Serving.** ``ManifestRequest`` is answered with the newest manifest (or
  ``NoCheckpoint``), ``FragmentRequest`` with the member's own fragment.
- **Rebuilding.** A member whose shard log came back empty (a fresh or
  deleted data directory) holds its replica's applying (``apply_held``) and
  runs ``CheckpointRecovery`` (without its log step): manifests from the
  peers, the first whose root has enough valid member signatures is taken
  (one whose signatures do not verify is refused, counted and logged),
  fragments fetched k at a time, each checked against its hash in the
  signed manifest (a corrupt one is refused, counted and logged, and
  another member's fragment asked for), decoded, checked against the signed
  state digest and restored into the replica's store. Applying resumes
  after the checkpoint index; Raft brings the log (a shard's log is not
  compacted, so the member receives it whole, but it only applies what
  follows the checkpoint). The member then re-cuts its own fragment from
  the rebuilt state, so the shard's redundancy is whole again. If f + 1
  peers answer that they hold no checkpoint, or nothing usable arrives
  within ``rebuild_timeout_s``, the hold is lifted and the member replays
  the whole log, which is always correct: the checkpoint saves work, safety
  never rests on it.
- **Waking.** The cut happens during the shard group's turn; the node's
  ``CheckpointedMember`` then hands the host a local ``CheckpointWake`` for
  this group, so its output leaves without a timer.

Counters (``counters``, shown in the shard's status as
``hrb.checkpoint.<name>``): ``taken``, ``stored``, ``signatures_rejected``,
``manifests_rejected``, ``fragments_rejected``, ``fragments_served``,
``rebuilds``, ``rebuild_restarts`` (the peers cut a newer checkpoint while
an older one's fragments were being fetched: a holder keeps only its newest,
and answers a request for an older fragment with its newest manifest),
``rebuild_fallbacks``, ``rebuilds_not_needed``, ``fault_flips``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import msgspec

from quorate.core.protocol import ProposeOutcome, Refused
from quorate.core.ready import Entry, Ready, Rejection
from quorate.core.signing import Signer, Verifier
from quorate.core.wire import WireMessage
from quorate.crypto.erasure import (
    CheckpointFragment,
    CheckpointManifest,
    CheckpointSignature,
    encode_checkpoint,
    fragment_digest,
    make_codec,
    manifest_refusal,
)
from quorate.errors import ConfigError
from quorate.hrb.checkpoint.image import (
    decode_image,
    encode_image,
    restore_shard_store,
    shard_image,
)
from quorate.hrb.checkpoint.recovery import (
    CheckpointConfig,
    CheckpointRecovery,
    FragmentRequest,
    ManifestRequest,
    Recovered,
)
from quorate.hrb.shard.state import ShardStore
from quorate.ids import NodeId

__all__ = [
    "CHECKPOINT_GROUP_BASE",
    "CheckpointCosign",
    "CheckpointWake",
    "NoCheckpoint",
    "ShardCheckpointer",
    "StoredCheckpoint",
    "adopt_store",
    "fragment_shape",
]

CHECKPOINT_GROUP_BASE = 1 << 24
"""A shard's checkpoint group is ``CHECKPOINT_GROUP_BASE + shard`` (between
the shards' ids and the core's)."""
MAX_PENDING_CUTS = 4
"""Own cuts still gathering signatures (older ones are dropped)."""
MAX_EARLY_INDEXES = 8
"""Checkpoint indexes whose peers' signatures are held until this member cuts them."""


def fragment_shape(members: int) -> tuple[int, int] | None:
    """(k, m) for a shard of ``members``: m = ⌊n / 2⌋ parity fragments, so a
    rebuilder that lost its own fragment still decodes with one more
    missing or corrupt when n >= 4; None for a shard of one (no peer to
    rebuild from)."""
    if members < 2:
        return None
    m = max(1, members // 2)
    return members - m, m


# ---------------------------------------------------------------- messages and storage
class CheckpointCosign(WireMessage, tag="hrb.CheckpointCosign", frozen=True):
    """A member's signature over the root of its checkpoint at ``log_index``."""

    shard: int
    log_index: int
    root: bytes
    signature: bytes


class NoCheckpoint(WireMessage, tag="hrb.NoCheckpoint", frozen=True):
    """The answer to ``ManifestRequest`` of a member that holds no checkpoint."""

    shard: int


class CheckpointWake(WireMessage, tag="hrb.CheckpointWake", frozen=True):
    """Local only: the shard group cut a checkpoint (or was asked to change
    the stored fragment); the checkpoint group has output."""


class StoredCheckpoint(msgspec.Struct, frozen=True):
    """What the checkpoint group keeps durably (as its hard state)."""

    index: int
    term: int
    manifest: CheckpointManifest
    fragment: CheckpointFragment


_STORE_FIELDS = (
    "data", "locks", "prepared", "decided", "requested", "sessions", "evicted",
    "applied_index", "refused", "violations", "_epochs", "_epoch",
)


def adopt_store(store: ShardStore, image: dict[str, bytes]) -> None:
    """Make ``store`` hold what ``image`` describes, keeping the object (the
    replica, its member and its desk all hold it). ``ValueError`` on an image
    that is not one."""
    rebuilt = restore_shard_store(
        image, rules=store.rules, check_certificate=store.check_certificate, genesis=store.genesis
    )
    for name in _STORE_FIELDS:
        setattr(store, name, getattr(rebuilt, name))


# ---------------------------------------------------------------- the core
class ShardCheckpointer:
    """The checkpoint group's core on one member (see the module docstring).

    ``replica`` is the member's honest ``ShardReplica``; ``stored`` what the
    group's storage held (None on a fresh disk); ``rebuild``: the shard's log
    came back empty, so try to rebuild from the peers' fragments."""

    def __init__(
        self,
        node: NodeId,
        shard: int,
        members: Sequence[int],
        *,
        replica: Any,
        signer: Signer,
        verifier: Verifier,
        config: CheckpointConfig,
        codec_name: str,
        now: float,
        stored: StoredCheckpoint | None = None,
        rebuild: bool = False,
        rebuild_timeout_s: float = 10.0,
    ) -> None:
        self._id = node
        self.shard = shard
        self.members = tuple(sorted(int(m) for m in members))
        if int(node) not in self.members:
            raise ConfigError(f"node {node} is not a member of shard {shard}")
        shape = fragment_shape(len(self.members))
        if shape is None or (config.k, config.m) != shape:
            raise ConfigError(f"a shard of {len(self.members)} members cuts {shape} fragments, not {(config.k, config.m)}")
        if rebuild_timeout_s <= 0:
            raise ConfigError("rebuild_timeout_s must be > 0")
        self.position = self.members.index(int(node))
        self._replica = replica
        self._signer, self._verifier = signer, verifier
        self._config = config
        try:
            self._codec = make_codec(codec_name, config.k, config.m)
        except ImportError:
            raise ConfigError(
                f"checkpoints use {codec_name}, which is not installed here: pip install 'quorate[erasure]'"
            ) from None
        self.manifest: CheckpointManifest | None = stored.manifest if stored is not None else None
        self.fragment: CheckpointFragment | None = stored.fragment if stored is not None else None
        self._cuts: dict[int, tuple[CheckpointManifest, CheckpointFragment]] = {}
        self._early: dict[int, dict[int, CheckpointCosign]] = {}
        self._msgs: list[tuple[NodeId, Any]] = []
        self._rejected: list[Rejection] = []
        self._to_store: StoredCheckpoint | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "taken", "stored", "signatures_rejected", "manifests_rejected", "fragments_rejected",
                "fragments_served", "rebuilds", "rebuild_restarts", "rebuild_fallbacks", "rebuilds_not_needed",
                "fault_flips",
            ),
            0,
        )
        self.rebuilt_index = 0
        replica.checkpoint_every = config.interval_entries
        replica.checkpoint_cut = self._on_cut
        self._recovery: CheckpointRecovery | None = None
        self._none: set[int] = set()
        self._rejected_before = 0
        self._give_up_at = 0.0
        if rebuild:
            replica.apply_held = True
            self._recovery = CheckpointRecovery(
                node, shard, self.members, verifier, config, self._codec, fetch_log=False
            )
            self._recovery.start(now)
            self._give_up_at = now + rebuild_timeout_s
            self._drain_recovery()

    # ------------------------------------------------------------ views
    @property
    def id(self) -> NodeId:
        return self._id

    @property
    def rebuilding(self) -> bool:
        return self._recovery is not None

    def has_output(self) -> bool:
        """Something to send or store (the node then wakes this group)."""
        return bool(self._msgs or self._rejected or self._to_store is not None)

    def status_metrics(self) -> dict[str, int]:
        out = {f"hrb.checkpoint.{name}": value for name, value in self.counters.items()}
        out["hrb.checkpoint.index"] = self.manifest.log_index if self.manifest is not None else 0
        out["hrb.checkpoint.signatures"] = len(self.manifest.signatures) if self.manifest is not None else 0
        out["hrb.checkpoint.fragment_bytes"] = len(self.fragment.data) if self.fragment is not None else 0
        out["hrb.checkpoint.rebuilt_index"] = self.rebuilt_index
        out["hrb.checkpoint.rebuilding"] = int(self.rebuilding)
        return out

    # ------------------------------------------------------------ the core contract
    def step(self, sender: NodeId, message: Any, now: float) -> None:
        kind = type(message)
        if kind is CheckpointWake:
            if sender != self._id:
                self._reject(sender, message, "a wake-up from another node")
            return
        if int(sender) not in self.members or sender == self._id:
            self._reject(sender, message, f"node {sender} is not a peer in shard {self.shard}")
            return
        if kind is ManifestRequest:
            answer: Any = self.manifest if self.manifest is not None else NoCheckpoint(self.shard)
            self._msgs.append((sender, answer))
        elif kind is FragmentRequest:
            self._serve_fragment(sender, message)
        elif kind is CheckpointCosign:
            self._on_cosign(sender, message)
        elif kind is NoCheckpoint:
            self._on_no_checkpoint(sender, now)
        elif kind in (CheckpointManifest, CheckpointFragment):
            if self._recovery is not None:
                if kind is CheckpointManifest and self._newer_than_wanted(message):
                    self._restart_recovery(now)
                assert self._recovery is not None
                self._recovery.step(sender, message, now)
                self._drain_recovery()
        else:
            self._reject(sender, message, "not a checkpoint message")

    def tick(self, now: float) -> None:
        recovery = self._recovery
        if recovery is None:
            return
        if now >= self._give_up_at:
            self._end_rebuild("rebuild_fallbacks", now)
            return
        recovery.tick(now)
        self._drain_recovery()

    def propose(self, command: bytes, now: float) -> ProposeOutcome:
        return Refused("a checkpoint group takes no proposals")

    def has_ready(self) -> bool:
        return self.has_output()

    def ready(self) -> Ready:
        stored, self._to_store = self._to_store, None
        ready = Ready(
            messages=self._msgs,
            hard_state=stored,
            rejected=self._rejected,
            wake_at=self.wake_at(),
            must_sync=stored is not None,
        )
        self._msgs, self._rejected = [], []
        return ready

    def advance(self, ready: Ready) -> None:
        return None

    def wake_at(self) -> float | None:
        recovery = self._recovery
        if recovery is None:
            return None
        wake = recovery.wake_at()
        return self._give_up_at if wake is None else min(wake, self._give_up_at)

    # ------------------------------------------------------------ fault injection
    def corrupt_fragment(self) -> str | None:
        """Flip one byte of the stored fragment (memory and disk); the reason it
        cannot, or None."""
        fragment = self.fragment
        if fragment is None or self.manifest is None:
            return "this member holds no checkpoint fragment yet"
        data = bytearray(fragment.data)
        data[len(data) // 2] ^= 0xFF
        self.fragment = msgspec.structs.replace(fragment, data=bytes(data))
        self.counters["fault_flips"] += 1
        self._store_newest()
        return None

    # ------------------------------------------------------------ cutting and co-signing
    def _on_cut(self, store: ShardStore, entry: Entry) -> None:
        index = store.applied_index
        manifest, fragments = encode_checkpoint(
            encode_image(shard_image(store)),
            shard=self.shard,
            log_index=index,
            signer=self._signer,
            codec=self._codec,
            log_term=entry.term,
            log_digest=getattr(entry, "digest", b""),
        )
        self._cuts[index] = (manifest, fragments[self.position])
        while len(self._cuts) > MAX_PENDING_CUTS:
            del self._cuts[min(self._cuts)]
        self.counters["taken"] += 1
        signature = manifest.signatures[0].signature
        cosign = CheckpointCosign(self.shard, index, manifest.root, signature)
        self._msgs.extend((NodeId(m), cosign) for m in self.members if m != int(self._id))
        for sender, early in sorted(self._early.pop(index, {}).items()):
            self._on_cosign(NodeId(sender), early)
        self._promote(index)

    def _on_cosign(self, sender: NodeId, m: CheckpointCosign) -> None:
        if m.shard != self.shard:
            self._reject(sender, m, f"a co-signature for shard {m.shard}")
            return
        cut = self._cuts.get(m.log_index)
        if cut is None:
            newest = self.manifest.log_index if self.manifest is not None else 0
            if m.log_index > newest and m.log_index > self._replica.store.applied_index:
                held = self._early.setdefault(m.log_index, {})
                held[int(sender)] = m
                while len(self._early) > MAX_EARLY_INDEXES:
                    del self._early[min(self._early)]
            return  # an old checkpoint's: nothing to add
        manifest, fragment = cut
        if m.root != manifest.root:
            self.counters["signatures_rejected"] += 1
            self._reject(sender, m, f"a co-signature of another root at checkpoint index {m.log_index}")
            return
        if not self._verifier.verify(sender, m.root, m.signature):
            self.counters["signatures_rejected"] += 1
            self._reject(sender, m, f"a checkpoint co-signature that does not verify (index {m.log_index})")
            return
        if any(s.node == int(sender) for s in manifest.signatures):
            return
        signed = msgspec.structs.replace(
            manifest, signatures=(*manifest.signatures, CheckpointSignature(int(sender), m.signature))
        )
        self._cuts[m.log_index] = (signed, fragment)
        self._promote(m.log_index)

    def _promote(self, index: int) -> None:
        """The cut at ``index`` becomes the newest checkpoint once signed enough."""
        manifest, fragment = self._cuts[index]
        if len(manifest.signatures) < self._config.required_signatures:
            return
        current = self.manifest
        if current is not None and (current.log_index, len(current.signatures)) >= (index, len(manifest.signatures)):
            return
        self.manifest, self.fragment = manifest, fragment
        for older in [i for i in self._cuts if i < index]:
            del self._cuts[older]
        self._store_newest()

    def _store_newest(self) -> None:
        manifest, fragment = self.manifest, self.fragment
        assert manifest is not None and fragment is not None
        self._to_store = StoredCheckpoint(manifest.log_index, manifest.log_term, manifest, fragment)
        self.counters["stored"] += 1

    def _serve_fragment(self, sender: NodeId, m: FragmentRequest) -> None:
        fragment = self.fragment
        if fragment is None or m.shard != self.shard or m.index != fragment.index:
            return  # the asker times out and asks another member
        if fragment.log_index != m.log_index:
            if fragment.log_index > m.log_index and self.manifest is not None:
                # A checkpoint was cut since the asker chose one: offer it.
                self._msgs.append((sender, self.manifest))
            return
        self.counters["fragments_served"] += 1
        self._msgs.append((sender, fragment))

    # ------------------------------------------------------------ rebuilding
    def _on_no_checkpoint(self, sender: NodeId, now: float) -> None:
        recovery = self._recovery
        if recovery is None or recovery.phase != "manifest":
            return
        self._none.add(int(sender))
        if len(self._none) >= self._config.required_signatures:
            self._end_rebuild("rebuilds_not_needed", now)

    def _newer_than_wanted(self, manifest: CheckpointManifest) -> bool:
        recovery = self._recovery
        wanted = recovery.manifest if recovery is not None else None
        if wanted is None or manifest.shard != self.shard or manifest.log_index <= wanted.log_index:
            return False
        # Only a checkpoint the members signed may interrupt the rebuild.
        return manifest_refusal(manifest, self._verifier, self.members, self._config.required_signatures) is None

    def _restart_recovery(self, now: float) -> None:
        """The peers moved to a newer checkpoint while fragments of an older
        one were being fetched (they keep only their newest): start over."""
        old = self._recovery
        assert old is not None
        self._rejected_before += old.fragments_rejected
        self.counters["rebuild_restarts"] += 1
        self._recovery = CheckpointRecovery(
            self._id, self.shard, self.members, self._verifier, self._config, self._codec, fetch_log=False
        )
        self._recovery.start(now)

    def _drain_recovery(self) -> None:
        recovery = self._recovery
        assert recovery is not None
        out = recovery.ready()
        self._msgs.extend(out.messages)
        for rejection in out.rejected:
            if rejection.message_type == "CheckpointManifest":
                self.counters["manifests_rejected"] += 1
            self._rejected.append(rejection)
        self.counters["fragments_rejected"] = self._rejected_before + recovery.fragments_rejected
        if out.recovered is not None:
            self._restore(out.recovered)

    def _restore(self, recovered: Recovered) -> None:
        manifest = recovered.manifest
        store = self._replica.store
        try:
            adopt_store(store, decode_image(recovered.state))
        except (ValueError, msgspec.DecodeError) as exc:
            self._rejected.append(Rejection(self._id, "CheckpointManifest", f"a checkpoint image that does not restore: {exc}"))
            self._end_rebuild("rebuild_fallbacks", 0.0)
            return
        pieces = self._codec.encode(recovered.state)
        mine = CheckpointFragment(self.shard, manifest.log_index, self.position, pieces[self.position])
        if fragment_digest(mine.data) == manifest.fragment_hashes[self.position]:
            self.manifest, self.fragment = manifest, mine
            self._store_newest()
        self.rebuilt_index = manifest.log_index
        self.counters["rebuilds"] += 1
        self._recovery = None
        self._replica.apply_held = False

    def _end_rebuild(self, outcome: str, now: float) -> None:
        """No rebuild: the member replays its log from the start."""
        self.counters[outcome] += 1
        self._recovery = None
        self._replica.apply_held = False

    def _reject(self, sender: NodeId, message: Any, reason: str) -> None:
        self._rejected.append(Rejection(sender, type(message).__name__, reason))


def checkpoint_config(members: int, interval_entries: int, required_signatures: int, request_timeout_s: float) -> CheckpointConfig | None:
    """The ``CheckpointConfig`` of a shard of ``members`` (None: it cannot checkpoint)."""
    shape = fragment_shape(members)
    if shape is None or interval_entries <= 0:
        return None
    k, m = shape
    return dataclasses.replace(
        CheckpointConfig(),
        interval_entries=interval_entries,
        k=k,
        m=m,
        required_signatures=min(required_signatures, members),
        request_timeout_s=request_timeout_s,
    )
