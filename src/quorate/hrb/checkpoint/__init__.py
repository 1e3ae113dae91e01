"""A shard's erasure-coded checkpoints, state reconstruction and delta
synchronization (the paper's section 3.4).

Theory of operation
-------------------
**The image.** A shard's state is its ``ShardStore``. ``shard_image`` writes
it as a map of short keys to bytes (one item per data key, lock, prepare
record, decision, pending request, client session, evicted node and epoch,
plus one item of counters), and ``restore_shard_store`` reads it back:
``restore(image(s))`` holds what ``s`` holds (``fingerprint`` equal) and
applies later entries exactly as ``s`` would. ``encode_image`` is canonical
(items sorted by key), so members at one index encode the same bytes.

**Periodic checkpoints.** Every ``CheckpointConfig.interval_entries`` applied
entries (``checkpoint_due``) a member cuts the encoded image with
``quorate.crypto.erasure`` into k data + m parity fragments and signs the
checkpoint root (``checkpoint_shard``); other members co-sign it after
computing the same root. Fragment i goes to the i-th member of the shard
(``distribute``), so each member stores 1/k of the state instead of all of
it and any k members can give it back.

**Reconstruction** (``CheckpointRecovery``, a sans-IO state machine of a
failed or new member): ask every peer for its newest manifest; accept the
first one whose root carries enough member signatures; fetch fragment i from
member i for k indexes at once (data fragments first: they decode cheapest);
a fragment that fails its checksum is rejected (counted, with its sender)
and another index is asked for, as is one whose holder does not answer
within ``request_timeout_s``; decode from k good ones and check the signed
state digest; then fetch the committed log after the checkpoint index and
hand both to the caller, who restores the store and replays the entries.
``CheckpointHolder`` is a member's side: it answers those requests.

**Delta synchronization.** A member that was down briefly still holds a
stale image. Both sides hash the image into ``buckets`` (a power of two; a
key's bucket is a prefix of its SHA-256) and build a Merkle tree over the
bucket digests. The stale member sends its applied index and its bucket
digests, truncated to ``LEAF_DIGEST_BYTES`` (``DeltaRequest``); the serving
member prices, by their encoded size, the items of the buckets that differ
(the Merkle diff), the committed entries after the stale index (the log
suffix, when it still has them) and the whole image, and sends the
smallest (``answer_delta``). The stale member patches its store or replays
the entries, and checks the Merkle root of the result against the root the
server announced (``apply_delta``); the caller compares that root with one
it trusts (a signed checkpoint, or the digest of a later committed state).

Modules: ``image`` (the image), ``recovery`` (checkpoints, the messages of
reconstruction, ``CheckpointHolder`` and ``CheckpointRecovery``), ``delta``
(delta sync). Pure functions and one state machine: no clock (``now`` is
passed in), no I/O, no randomness.
"""

from quorate.hrb.checkpoint.delta import (
    DeltaPlan,
    DeltaReply,
    DeltaRequest,
    DeltaSession,
    answer_delta,
    apply_delta,
    bucket_count,
    bucket_digests,
    delta_refusal,
    image_root,
    start_delta,
)
from quorate.hrb.checkpoint.image import (
    decode_image,
    encode_image,
    restore_shard_store,
    shard_image,
)
from quorate.hrb.checkpoint.recovery import (
    CheckpointConfig,
    CheckpointHolder,
    CheckpointRecovery,
    FragmentRequest,
    LogSuffix,
    LogSuffixRequest,
    ManifestRequest,
    Recovered,
    RecoveryReady,
    checkpoint_due,
    checkpoint_shard,
    countersign,
    distribute,
)

__all__ = [
    "CheckpointConfig",
    "CheckpointHolder",
    "CheckpointRecovery",
    "DeltaPlan",
    "DeltaReply",
    "DeltaRequest",
    "DeltaSession",
    "FragmentRequest",
    "LogSuffix",
    "LogSuffixRequest",
    "ManifestRequest",
    "Recovered",
    "RecoveryReady",
    "answer_delta",
    "apply_delta",
    "bucket_count",
    "bucket_digests",
    "checkpoint_due",
    "checkpoint_shard",
    "countersign",
    "decode_image",
    "delta_refusal",
    "distribute",
    "encode_image",
    "image_root",
    "restore_shard_store",
    "shard_image",
    "start_delta",
]
