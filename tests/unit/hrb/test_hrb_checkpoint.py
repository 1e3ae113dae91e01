"""A shard's checkpoints: the image round trip, reconstruction from k of
k + m members' fragments (corrupt and silent holders included) plus the log
after the checkpoint, and delta synchronization (Merkle diff or log suffix)
that brings a stale store to exactly the current one. Reference: section 3.4
of the paper (checkpoints and recovery)."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.core.ready import ENTRY_NORMAL, ChainedEntry, Entry
from quorate.crypto.erasure import (
    CheckpointFragment,
    available_codecs,
    make_codec,
)
from quorate.crypto.keyring import CostModelKeyring
from quorate.errors import ConfigError
from quorate.hrb.checkpoint import (
    CheckpointConfig,
    CheckpointHolder,
    CheckpointRecovery,
    DeltaReply,
    answer_delta,
    apply_delta,
    checkpoint_due,
    checkpoint_shard,
    countersign,
    decode_image,
    delta_refusal,
    distribute,
    encode_image,
    restore_shard_store,
    shard_image,
    start_delta,
)
from quorate.hrb.messages import EpochChange, Transaction, TxnOp
from quorate.hrb.shard.chain import entry_digest
from quorate.hrb.shard.state import EntryRules, IntraTxn, ShardStore, TxnRequested, encode_command
from quorate.ids import NodeId

pytestmark = pytest.mark.skipif(not available_codecs(), reason="no Reed-Solomon codec installed")

SHARD = 1
MEMBERS = (1, 2, 3, 4, 5, 6)
KEYRING = CostModelKeyring(5)
GENESIS = EpochChange(0, (11, 12, 13, 14), 3, b"group-key")
RULES = EntryRules(shard=SHARD, shards=2, key_shard=lambda key: 1 if key.startswith("a") else 2)


def no_certificates(_key: bytes, _message: bytes, _signature: bytes) -> bool:
    return False


def new_store() -> ShardStore:
    return ShardStore(RULES, no_certificates, GENESIS)


def restore(image: dict[str, bytes]) -> ShardStore:
    return restore_shard_store(image, rules=RULES, check_certificate=no_certificates, genesis=GENESIS)


# A history: operations on a few keys of this shard, some cross-shard requests.
OP = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 12), st.text(max_size=30)),
    st.tuples(st.just("add"), st.integers(0, 12), st.integers(-5, 9)),
    st.tuples(st.just("cas"), st.integers(0, 12), st.text(max_size=4)),
    st.tuples(st.just("cross"), st.integers(0, 12), st.text(max_size=4)),
)


def entries_of(ops: list[tuple[str, int, object]]) -> list[Entry]:
    out = []
    for i, (action, key_no, arg) in enumerate(ops, start=1):
        txn_id = hashlib.sha256(b"%d" % i).digest()[:16]
        key = f"a{key_no}"
        client, seq = 1 + i % 3, i
        if action == "put":
            command = IntraTxn(Transaction(txn_id, client, seq, SHARD, (TxnOp(key, "put", str(arg)),)))
        elif action == "add":
            command = IntraTxn(Transaction(txn_id, client, seq, SHARD, (TxnOp(key, "add", delta=int(arg), minimum=0),)))  # type: ignore[call-overload]
        elif action == "cas":
            command = IntraTxn(Transaction(txn_id, client, seq, SHARD, (TxnOp(key, "cas", "new", expected=str(arg)),)))
        else:
            ops_ = (TxnOp(key, "put", str(arg)), TxnOp(f"b{key_no}", "put", "x"))
            command = TxnRequested(Transaction(txn_id, client, seq, SHARD, ops_))  # type: ignore[assignment]
        out.append(Entry(1, i, ENTRY_NORMAL, encode_command(command)))
    return out


def run(entries: list[Entry]) -> ShardStore:
    store = new_store()
    for entry in entries:
        store.apply(entry)
    return store


# ---------------------------------------------------------------- the image
@settings(max_examples=50, deadline=None)
@given(ops=st.lists(OP, max_size=40), split=st.integers(0, 40))
def test_a_restored_image_holds_and_behaves_as_the_store(ops: list[tuple[str, int, object]], split: int) -> None:
    entries = entries_of(ops)
    split = min(split, len(entries))
    original = run(entries[:split])
    copy = restore(decode_image(encode_image(shard_image(original))))
    assert copy.fingerprint() == original.fingerprint()
    assert copy.applied_index == original.applied_index
    for entry in entries[split:]:
        assert original.apply(entry) == copy.apply(entry)
    assert copy.fingerprint() == original.fingerprint()
    assert shard_image(copy) == shard_image(original)


def test_an_image_that_is_not_a_shard_state_is_refused() -> None:
    image = shard_image(run(entries_of([("put", 1, "v")])))
    with pytest.raises(ValueError, match="unknown image item"):
        restore({**image, "zz/1": b""})
    del image["m"]
    with pytest.raises(ValueError, match="no counters"):
        restore(image)
    with pytest.raises(msgspec.DecodeError):
        decode_image(b"\xc1garbage")


# ---------------------------------------------------------------- delta sync
@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(OP, min_size=1, max_size=60),
    stale_at=st.integers(0, 60),
    compacted=st.integers(0, 60),
    buckets=st.sampled_from([1, 2, 4, 16, 64]),
)
def test_the_delta_applied_to_the_stale_state_equals_the_current_state(
    ops: list[tuple[str, int, object]], stale_at: int, compacted: int, buckets: int
) -> None:
    entries = entries_of(ops)
    stale_at = min(stale_at, len(entries))
    stale, current = run(entries[:stale_at]), run(entries)
    session = start_delta(stale, buckets)
    request = session.request
    assert delta_refusal(request, SHARD, current.applied_index) is None
    log = entries[min(compacted, len(entries)) :]  # a prefix may be compacted away
    plan = answer_delta(request, shard_image(current), current.applied_index, log)
    if plan.reply.mode != "current":
        offered = [plan.merkle_bytes, plan.full_bytes] + ([] if plan.log_bytes is None else [plan.log_bytes])
        assert len(msgspec.msgpack.encode(plan.reply)) == min(offered)
    synced, reason = apply_delta(stale, plan.reply, session, check_certificate=no_certificates, genesis=GENESIS)
    assert reason is None and synced is not None
    assert synced.fingerprint() == current.fingerprint()
    assert shard_image(synced) == shard_image(current)


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(OP, min_size=1, max_size=40), stale_at=st.integers(0, 40), dropped=st.integers(0, 4), evict=st.integers(1, 9))
def test_a_merkle_delta_also_removes_what_the_current_state_no_longer_holds(
    ops: list[tuple[str, int, object]], stale_at: int, dropped: int, evict: int
) -> None:
    entries = entries_of(ops)
    stale = run(entries[: min(stale_at, len(entries))])
    current = run(entries)
    for txn_id in sorted(current.requested)[:dropped]:  # as if decided: the record is gone
        del current.requested[txn_id]
    current.evicted.add(evict)
    session = start_delta(stale, 64)
    plan = answer_delta(session.request, shard_image(current), current.applied_index, [])
    synced, reason = apply_delta(stale, plan.reply, session, check_certificate=no_certificates, genesis=GENESIS)
    assert reason is None and synced is not None
    assert shard_image(synced) == shard_image(current)


def test_a_few_writes_on_a_large_state_send_only_their_buckets() -> None:
    base = [("put", i, "v" * 200) for i in range(400)]
    entries = entries_of(base)  # keys a0..a12 only: make a larger key space
    store = new_store()
    for i in range(2000):
        txn = Transaction(hashlib.sha256(b"k%d" % i).digest()[:16], 0, 0, SHARD, (TxnOp(f"a-key-{i}", "put", "v" * 200),))
        store.apply(Entry(1, store.applied_index + 1, ENTRY_NORMAL, encode_command(IntraTxn(txn))))
    session = start_delta(store)
    for i in range(5):
        txn = Transaction(hashlib.sha256(b"w%d" % i).digest()[:16], 0, 0, SHARD, (TxnOp(f"a-key-{i * 7}", "put", "w"),))
        store.apply(Entry(1, store.applied_index + 1, ENTRY_NORMAL, encode_command(IntraTxn(txn))))
    plan = answer_delta(session.request, shard_image(store), store.applied_index, [])
    full = len(encode_image(shard_image(store)))
    assert plan.log_bytes is None and plan.reply.mode == "merkle"
    assert len(plan.reply.changed) <= 6  # five keys and the counters item
    assert plan.merkle_bytes < full / 10
    assert entries  # the helper's history is not used here


def test_a_tampered_delta_is_refused_and_the_stale_store_kept() -> None:
    entries = entries_of([("put", i, f"v{i}" * 20) for i in range(200)])
    stale, current = run(entries[:195]), run(entries)
    session = start_delta(stale, 256)
    before = stale.fingerprint()
    plan = answer_delta(session.request, shard_image(current), current.applied_index, [])
    reply = plan.reply
    assert reply.mode == "merkle"
    key, value = reply.items[0]
    forged = msgspec.structs.replace(reply, items=((key, value + b"!"), *reply.items[1:]))
    synced, reason = apply_delta(stale, forged, session, check_certificate=no_certificates, genesis=GENESIS)
    assert synced is None and "Merkle root" in (reason or "")
    assert stale.applied_index == 195 and stale.fingerprint() == before
    skipping = DeltaReply(
        SHARD, "log", current.applied_index, reply.root,
        entries=tuple(ChainedEntry(e.term, e.index, e.kind, e.data) for e in entries[196:]),
    )
    synced, reason = apply_delta(stale, skipping, session, check_certificate=no_certificates, genesis=GENESIS)
    assert synced is None and "entry 197 does not follow 195" in (reason or "")
    assert stale.fingerprint() == before
    # The honest reply still applies after the refusals.
    synced, reason = apply_delta(stale, reply, session, check_certificate=no_certificates, genesis=GENESIS)
    assert reason is None and synced is not None and synced.fingerprint() == current.fingerprint()


def test_delta_requests_out_of_range_are_refused() -> None:
    request = start_delta(run([]), 4).request
    assert "power of two" in (delta_refusal(msgspec.structs.replace(request, buckets=3), SHARD, 5) or "")
    assert "digests for" in (delta_refusal(msgspec.structs.replace(request, leaf_digests=()), SHARD, 5) or "")
    assert "shard 2" in (delta_refusal(msgspec.structs.replace(request, shard=2), SHARD, 5) or "")
    assert "not in 0..5" in (delta_refusal(msgspec.structs.replace(request, applied_index=6), SHARD, 5) or "")


# ---------------------------------------------------------------- reconstruction
def make_holders(store: ShardStore, log: list[Entry]) -> dict[int, CheckpointHolder]:
    codec = make_codec(available_codecs()[0], 4, 2)
    manifest, fragments = checkpoint_shard(store, signer=KEYRING.signer(NodeId(MEMBERS[0])), codec=codec)
    holders = {}
    for member, fragment in distribute(fragments, MEMBERS):
        holder = CheckpointHolder(member, SHARD)
        holder.store(manifest, fragment)
        holder.log = list(log)
        holders[member] = holder
    return holders


def drive(recovery: CheckpointRecovery, holders: dict[int, CheckpointHolder], silent: set[int] = frozenset()) -> tuple[object, list[str]]:  # type: ignore[assignment]
    """Deliver messages until recovery is done; time jumps to the next deadline when idle."""
    now = 0.0
    recovery.start(now)
    rejected: list[str] = []
    for _ in range(200):
        ready = recovery.ready()
        rejected += [r.reason for r in ready.rejected]
        if ready.recovered is not None:
            return ready.recovered, rejected
        if not ready.messages:
            assert ready.wake_at is not None
            now = ready.wake_at
            recovery.tick(now)
            continue
        for to, message in ready.messages:
            holder = holders.get(int(to))
            if holder is None or int(to) in silent:
                continue
            answer = holder.answer(message)
            if answer is not None:
                recovery.step(int(to), answer, now)
    raise AssertionError("recovery did not finish")


def test_a_new_member_rebuilds_from_k_fragments_and_replays_the_log() -> None:
    entries = entries_of([("put", i % 13, f"v{i}") for i in range(30)] + [("cross", 2, "z")])
    at_checkpoint = run(entries[:20])
    current = run(entries)
    holders = make_holders(at_checkpoint, entries[20:])
    del holders[3]  # the member that lost its data
    recovery = CheckpointRecovery(3, SHARD, MEMBERS, KEYRING.verifier(NodeId(3)), CheckpointConfig())
    recovered, rejected = drive(recovery, holders)
    assert rejected == []
    rebuilt = restore(decode_image(recovered.state))  # type: ignore[attr-defined]
    for entry in recovered.entries:  # type: ignore[attr-defined]
        rebuilt.apply(entry)
    assert rebuilt.fingerprint() == current.fingerprint()
    assert recovered.manifest.log_index == 20  # type: ignore[attr-defined]


@settings(max_examples=15, deadline=None)
@given(corrupt=st.sets(st.sampled_from(MEMBERS[1:]), max_size=1), position=st.integers(0, 10**6))
def test_corrupt_holders_are_rejected_counted_and_others_asked(corrupt: set[int], position: int) -> None:
    # m = 2: the recovering member's own fragment is lost, so one more may be bad.
    entries = entries_of([("put", i % 13, f"v{i}") for i in range(25)])
    store = run(entries)
    holders = make_holders(store, [])
    del holders[1]
    for member in corrupt:
        f = holders[member].fragment
        assert f is not None
        raw = bytearray(f.data)
        raw[position % len(raw)] ^= 0x40
        holders[member].fragment = CheckpointFragment(f.shard, f.log_index, f.index, bytes(raw))
    recovery = CheckpointRecovery(1, SHARD, MEMBERS, KEYRING.verifier(NodeId(1)), CheckpointConfig())
    recovered, rejected = drive(recovery, holders)
    assert restore(decode_image(recovered.state)).fingerprint() == store.fingerprint()  # type: ignore[attr-defined]
    asked_corrupt = [r for r in rejected if "corrupt" in r]
    assert recovery.fragments_rejected == len(asked_corrupt) <= len(corrupt)
    assert len(rejected) == recovery.rejected_count


def test_a_silent_holder_times_out_and_another_is_asked() -> None:
    store = run(entries_of([("put", i, "v") for i in range(8)]))
    holders = make_holders(store, [])
    recovery = CheckpointRecovery(6, SHARD, MEMBERS, KEYRING.verifier(NodeId(6)), CheckpointConfig(request_timeout_s=1.0))
    recovered, _ = drive(recovery, holders, silent={2})
    assert restore(decode_image(recovered.state)).fingerprint() == store.fingerprint()  # type: ignore[attr-defined]


def test_a_checkpoint_with_a_bad_signature_is_refused_in_one_line() -> None:
    store = run(entries_of([("put", i, "v") for i in range(5)]))
    holders = make_holders(store, [])
    manifest = holders[2].manifest
    assert manifest is not None
    forged = msgspec.structs.replace(
        manifest, signatures=(msgspec.structs.replace(manifest.signatures[0], signature=b"\x00" * 32),)
    )
    recovery = CheckpointRecovery(3, SHARD, MEMBERS, KEYRING.verifier(NodeId(3)), CheckpointConfig())
    recovery.start(0.0)
    recovery.ready()
    recovery.step(2, forged, 0.0)
    ready = recovery.ready()
    assert [r.reason for r in ready.rejected] == [
        "checkpoint refused: the checkpoint root has 0 valid member signature(s), 1 required"
    ]
    assert recovery.phase == "manifest" and recovery.rejected_count == 1
    recovery.step(4, manifest, 0.0)  # an honest offer still works
    assert recovery.phase == "fragments"


def test_members_countersign_only_the_state_they_hold() -> None:
    entries = entries_of([("put", i, "v") for i in range(6)])
    store = run(entries)
    holders = make_holders(store, [])
    manifest = holders[1].manifest
    assert manifest is not None
    signed = countersign(manifest, run(entries), KEYRING.signer(NodeId(2)))
    assert signed is not None and len(signed.signatures) == 2
    assert countersign(manifest, run(entries[:5]), KEYRING.signer(NodeId(2))) is None


def test_checkpoint_settings_and_distribution() -> None:
    config = CheckpointConfig(interval_entries=100)
    assert not checkpoint_due(150, 60, config) and checkpoint_due(160, 60, config)
    with pytest.raises(ConfigError, match="interval_entries"):
        CheckpointConfig(interval_entries=0)
    with pytest.raises(ConfigError, match="k >= 1"):
        CheckpointConfig(m=0)
    store = run([])
    _, fragments = checkpoint_shard(store, signer=KEYRING.signer(NodeId(1)), codec=make_codec(available_codecs()[0], 4, 2))
    with pytest.raises(ConfigError, match="k \\+ m = the shard's size"):
        distribute(fragments, MEMBERS[:5])
    assert [(m, f.index) for m, f in distribute(fragments, reversed(MEMBERS))] == [(m, m - 1) for m in MEMBERS]  # type: ignore[arg-type]


def test_with_too_few_good_fragments_recovery_waits_and_finishes_once_a_holder_is_repaired() -> None:
    store = run(entries_of([("put", i, "v" * 50) for i in range(12)]))
    holders = make_holders(store, [])
    del holders[1]  # the recovering member's own fragment is gone
    good = {m: holders[m].fragment for m in (2, 3)}
    for member in (2, 3):  # two more are corrupt: only 3 good of the 4 needed
        f = holders[member].fragment
        assert f is not None
        holders[member].fragment = CheckpointFragment(f.shard, f.log_index, f.index, f.data[::-1] + b"!")
    recovery = CheckpointRecovery(1, SHARD, MEMBERS, KEYRING.verifier(NodeId(1)), CheckpointConfig(request_timeout_s=1.0))
    recovery.start(0.0)
    now = 0.0
    for _ in range(30):  # deliver everything, let time pass: no rebuild, no crash
        ready = recovery.ready()
        assert ready.recovered is None
        for to, message in ready.messages:
            answer = holders[int(to)].answer(message) if int(to) in holders else None
            if answer is not None:
                recovery.step(int(to), answer, now)
        if not ready.messages:
            assert ready.wake_at is not None and ready.wake_at > now
            now = ready.wake_at
            recovery.tick(now)
    assert recovery.phase == "fragments" and recovery.fragments_rejected >= 2
    holders[2].fragment = good[2]  # the holder is repaired (e.g. it re-fetched its fragment)
    recovered, _ = drive_from(recovery, holders, now)
    assert restore(decode_image(recovered.state)).fingerprint() == store.fingerprint()


def drive_from(recovery: CheckpointRecovery, holders: dict[int, CheckpointHolder], now: float) -> tuple[Any, list[str]]:
    rejected: list[str] = []
    for _ in range(200):
        ready = recovery.ready()
        rejected += [r.reason for r in ready.rejected]
        if ready.recovered is not None:
            return ready.recovered, rejected
        for to, message in ready.messages:
            answer = holders[int(to)].answer(message) if int(to) in holders else None
            if answer is not None:
                recovery.step(int(to), answer, now)
        if not ready.messages:
            assert ready.wake_at is not None
            now = ready.wake_at
            recovery.tick(now)
    raise AssertionError("recovery did not finish")


def chained(entries: list[Entry], start: bytes = b"\x00" * 32) -> tuple[list[ChainedEntry], list[bytes]]:
    """The entries with the shard's hash-chain digests, and the digest at each index."""
    out, digests, digest = [], [], start
    for e in entries:
        digest = entry_digest(digest, e.term, e.index, e.kind, e.data)
        out.append(ChainedEntry(e.term, e.index, e.kind, e.data, digest))
        digests.append(digest)
    return out, digests


def test_a_log_suffix_that_breaks_the_chain_from_the_checkpoint_is_refused_and_another_member_asked() -> None:
    entries, digests = chained(entries_of([("put", i % 13, f"v{i}") for i in range(20)]))
    at_checkpoint = run(entries[:12])  # type: ignore[arg-type]
    codec = make_codec(available_codecs()[0], 4, 2)
    manifest, fragments = checkpoint_shard(
        at_checkpoint, signer=KEYRING.signer(NodeId(2)), codec=codec, log_term=1, log_digest=digests[11]
    )
    holders = {}
    for member, fragment in distribute(fragments, MEMBERS):
        holder = CheckpointHolder(member, SHARD)
        holder.store(manifest, fragment)
        holder.log = list(entries[12:])
        holders[member] = holder
    del holders[1]
    forged = entries[14]
    holders[2].log[2] = ChainedEntry(forged.term, forged.index, forged.kind, encode_command(
        IntraTxn(Transaction(b"f" * 16, 0, 0, SHARD, (TxnOp("a1", "put", "forged"),)))
    ), forged.digest)
    recovery = CheckpointRecovery(1, SHARD, MEMBERS, KEYRING.verifier(NodeId(1)), CheckpointConfig())
    recovered, rejected = drive(recovery, holders)
    assert rejected == ["log entry 15 breaks the hash chain from the checkpoint"]
    rebuilt = restore(decode_image(recovered.state))  # type: ignore[attr-defined]
    for entry in recovered.entries:  # type: ignore[attr-defined]
        rebuilt.apply(entry)
    assert rebuilt.fingerprint() == run(entries).fingerprint()  # type: ignore[arg-type]
