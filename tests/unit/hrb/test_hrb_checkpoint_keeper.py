"""A live shard member's checkpoints (``quorate.hrb.checkpoint.keeper``):
members cut the same checkpoint at the same index and co-sign it; a member
that lost its disk rebuilds its store from its peers' fragments, a corrupt
fragment and a checkpoint whose signatures do not verify are refused in one
line each and counted, and a rebuild with nothing to rebuild from falls back
to replaying the log. Reference: section 3.4 of the paper."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from quorate.core.ready import ENTRY_NORMAL, ChainedEntry, Entry
from quorate.crypto.erasure import CheckpointManifest, CheckpointSignature, available_codecs
from quorate.crypto.keyring import CostModelKeyring
from quorate.errors import ConfigError
from quorate.hrb.checkpoint.keeper import (
    CheckpointCosign,
    CheckpointWake,
    ShardCheckpointer,
    StoredCheckpoint,
    checkpoint_config,
    fragment_shape,
)
from quorate.hrb.messages import EpochChange, Transaction, TxnOp
from quorate.hrb.shard.state import EntryRules, IntraTxn, ShardStore, encode_command
from quorate.ids import NodeId

pytestmark = pytest.mark.skipif("pyeclib" not in available_codecs(), reason="pyeclib is not installed")

SHARD = 1
MEMBERS = (1, 2, 3, 4)
INTERVAL = 5
KEYRING = CostModelKeyring(5)
GENESIS = EpochChange(0, (11, 12, 13, 14), 3, b"group-key")
RULES = EntryRules(shard=SHARD, shards=1, key_shard=lambda key: 1)
CONFIG = checkpoint_config(len(MEMBERS), INTERVAL, required_signatures=2, request_timeout_s=1.0)


def no_certificates(_key: bytes, _message: bytes, _signature: bytes) -> bool:
    return False


@dataclass
class Replica:
    """What the keeper uses of a ``ShardReplica``."""

    store: ShardStore = field(default_factory=lambda: ShardStore(RULES, no_certificates, GENESIS))
    checkpoint_every: int = 0
    checkpoint_cut: Any = None
    apply_held: bool = False

    def apply(self, entry: Entry) -> None:
        """As ``commit._apply_certified`` does, hook included."""
        assert not self.apply_held
        self.store.apply(entry)
        if self.checkpoint_every and self.store.applied_index % self.checkpoint_every == 0:
            self.checkpoint_cut(self.store, entry)


def log(count: int) -> list[Entry]:
    out: list[Entry] = []
    for i in range(1, count + 1):
        txn = Transaction(hashlib.sha256(b"%d" % i).digest()[:16], 7, i, SHARD, (TxnOp(f"k{i % 7}", "put", str(i)),))
        out.append(ChainedEntry(1, i, ENTRY_NORMAL, encode_command(IntraTxn(txn)), hashlib.sha256(b"d%d" % i).digest()))
    return out


def keeper(node: int, replica: Replica, *, rebuild: bool = False, timeout_s: float = 10.0) -> ShardCheckpointer:
    assert CONFIG is not None
    return ShardCheckpointer(
        NodeId(node), SHARD, MEMBERS, replica=replica, signer=KEYRING.signer(NodeId(node)),
        verifier=KEYRING.verifier(NodeId(node)), config=CONFIG, codec_name="pyeclib", now=0.0,
        rebuild=rebuild, rebuild_timeout_s=timeout_s,
    )


class Net:
    """Delivers the keepers' messages to each other until all is quiet."""

    def __init__(self, keepers: dict[int, ShardCheckpointer]) -> None:
        self.keepers = keepers
        self.rejected: dict[int, list[str]] = {n: [] for n in keepers}
        self.stored: dict[int, StoredCheckpoint] = {}
        self.silent: set[int] = set()

    def settle(self, now: float = 0.0) -> None:
        for _ in range(100):
            moved = False
            for node, k in self.keepers.items():
                ready = k.ready()
                self.rejected.setdefault(node, []).extend(r.reason for r in ready.rejected)
                if ready.hard_state is not None:
                    assert ready.must_sync
                    self.stored[node] = ready.hard_state
                for to, message in ready.messages:
                    moved = True
                    if int(to) in self.keepers and int(to) not in self.silent:
                        self.keepers[int(to)].step(NodeId(node), message, now)
            if not moved:
                return
        raise AssertionError("the keepers did not settle")


def cluster(entries: int) -> tuple[dict[int, Replica], Net]:
    replicas = {n: Replica() for n in MEMBERS}
    net = Net({n: keeper(n, replicas[n]) for n in MEMBERS})
    for entry in log(entries):
        for n in MEMBERS:
            replicas[n].apply(entry)
        net.settle()
    return replicas, net


def test_fragment_shape_leaves_room_for_a_lost_and_a_corrupt_fragment() -> None:
    assert fragment_shape(1) is None
    assert fragment_shape(3) == (2, 1)
    assert fragment_shape(4) == (2, 2)
    assert fragment_shape(7) == (4, 3)
    assert checkpoint_config(4, 0, 2, 1.0) is None
    with pytest.raises(ConfigError):
        keeper(9, Replica())


def test_members_cut_the_same_checkpoint_co_sign_it_and_store_their_own_fragment() -> None:
    replicas, net = cluster(2 * INTERVAL + 2)
    roots = {k.manifest.root for k in net.keepers.values() if k.manifest is not None}
    assert len(roots) == 1
    for position, node in enumerate(MEMBERS):
        k = net.keepers[node]
        assert k.manifest is not None and k.fragment is not None
        assert k.manifest.log_index == 2 * INTERVAL
        assert len(k.manifest.signatures) == len(MEMBERS)
        assert k.fragment.index == position
        assert k.counters["taken"] == 2
        stored = net.stored[node]
        assert stored.index == 2 * INTERVAL and stored.fragment.index == position
        # the stored form survives its encoding (it is the group's hard state)
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(stored), type=StoredCheckpoint) == stored
    assert replicas[1].store.applied_index == 2 * INTERVAL + 2


def rebuild_member(net: Net, node: int, replicas: dict[int, Replica]) -> tuple[ShardCheckpointer, Replica]:
    fresh = Replica()
    k = keeper(node, fresh, rebuild=True)
    assert fresh.apply_held
    net.keepers[node] = k
    replicas[node] = fresh
    return k, fresh


def test_a_member_that_lost_its_disk_rebuilds_from_its_peers_fragments_and_applies_what_follows() -> None:
    replicas, net = cluster(2 * INTERVAL + 3)
    original = net.keepers[4].fragment
    k, fresh = rebuild_member(net, 4, replicas)
    net.settle()
    assert not fresh.apply_held and k.counters["rebuilds"] == 1 and k.rebuilt_index == 2 * INTERVAL
    assert fresh.store.applied_index == 2 * INTERVAL
    at_checkpoint = Replica()
    for entry in log(2 * INTERVAL):
        at_checkpoint.store.apply(entry)
    assert fresh.store.fingerprint() == at_checkpoint.store.fingerprint()
    # it re-cut its own fragment from the rebuilt state, and stored it
    assert k.fragment == original and net.stored[4].fragment == original
    # then it applies the entries after the checkpoint, as Raft brings them
    for entry in log(2 * INTERVAL + 3)[2 * INTERVAL :]:
        fresh.apply(entry)
    assert fresh.store.fingerprint() == replicas[1].store.fingerprint()
    assert k.counters["fragments_rejected"] == 0


def test_a_corrupt_fragment_is_rejected_in_one_line_counted_and_another_members_fetched() -> None:
    replicas, net = cluster(INTERVAL + 1)
    assert net.keepers[1].corrupt_fragment() is None
    net.settle()
    assert net.stored[1].fragment == net.keepers[1].fragment  # the flip is on disk too
    k, fresh = rebuild_member(net, 4, replicas)
    net.settle()
    assert k.counters["fragments_rejected"] == 1 and k.counters["rebuilds"] == 1
    (line,) = net.rejected[4]
    assert "corrupt" in line and "\n" not in line
    assert fresh.store.applied_index == INTERVAL and not fresh.apply_held


def test_a_checkpoint_whose_signatures_do_not_verify_is_refused_and_another_taken() -> None:
    replicas, net = cluster(INTERVAL)
    honest = net.keepers[1].manifest
    assert honest is not None
    forged = msgspec.structs.replace(
        honest, signatures=tuple(CheckpointSignature(s.node, b"\x00" * len(s.signature)) for s in honest.signatures)
    )
    net.keepers[1].manifest = forged  # node 1 now offers a checkpoint nobody signed
    k, fresh = rebuild_member(net, 4, replicas)
    net.settle()
    assert k.counters["manifests_rejected"] >= 1
    assert any("checkpoint refused" in line and "valid member signature" in line for line in net.rejected[4])
    assert k.counters["rebuilds"] == 1 and fresh.store.applied_index == INTERVAL
    assert isinstance(k.manifest, CheckpointManifest) and k.manifest.root == honest.root


def test_a_co_signature_that_does_not_verify_is_refused_and_counted() -> None:
    replicas, net = cluster(INTERVAL)
    k = net.keepers[1]
    assert k.manifest is not None
    before = len(k.manifest.signatures)
    # a later cut, co-signed with a forged signature
    for entry in log(2 * INTERVAL)[INTERVAL:]:
        replicas[1].apply(entry)
    assert k._cuts
    index = max(k._cuts)
    root = k._cuts[index][0].root
    k.step(NodeId(2), CheckpointCosign(SHARD, index, root, b"\x01" * 64), 0.0)
    k.step(NodeId(3), CheckpointCosign(SHARD, index, b"\x02" * 32, b"\x01" * 64), 0.0)
    assert k.counters["signatures_rejected"] == 2
    assert k.manifest.log_index == INTERVAL and len(k.manifest.signatures) == before
    assert len(k.ready().rejected) == 2


def test_with_no_checkpoint_anywhere_the_member_replays_its_log() -> None:
    replicas = {n: Replica() for n in MEMBERS}
    net = Net({n: keeper(n, replicas[n]) for n in MEMBERS[:3]})
    k, fresh = rebuild_member(net, 4, replicas)
    net.settle()
    assert k.counters["rebuilds_not_needed"] == 1 and not fresh.apply_held and not k.rebuilding


def test_a_rebuild_nobody_answers_gives_up_and_the_member_replays_its_log() -> None:
    replicas, net = cluster(INTERVAL)
    net.silent = set(MEMBERS)
    k, fresh = rebuild_member(net, 4, replicas)
    net.settle()
    wake = k.wake_at()
    assert wake is not None and wake <= 10.0
    k.tick(10.0)
    assert k.counters["rebuild_fallbacks"] == 1 and not fresh.apply_held and k.wake_at() is None


def test_only_the_node_itself_may_wake_its_checkpoint_group() -> None:
    _, net = cluster(1)
    k = net.keepers[1]
    k.step(NodeId(1), CheckpointWake(), 0.0)
    k.step(NodeId(2), CheckpointWake(), 0.0)
    k.step(NodeId(9), CheckpointWake(), 0.0)
    assert [r.reason for r in k.ready().rejected] == ["a wake-up from another node", "a wake-up from another node"]


def test_a_checkpoint_cut_during_a_rebuild_restarts_it_on_the_newer_one() -> None:
    replicas, net = cluster(INTERVAL)
    k, fresh = rebuild_member(net, 4, replicas)
    asked = k.ready().messages
    answers = []
    for to, request in asked:
        net.keepers[int(to)].step(NodeId(4), request, 0.0)
        answers += [(int(to), m) for _, m in net.keepers[int(to)].ready().messages]
    for sender, manifest in answers:
        k.step(NodeId(sender), manifest, 0.0)
    assert k.rebuilding and all(type(m).__name__ == "FragmentRequest" for _, m in k.ready().messages[-2:])
    # the peers cut the next checkpoint before the fragment requests reach them;
    # the requests are lost, so the rebuilder's timeout asks again
    for entry in log(2 * INTERVAL)[INTERVAL:]:
        for n in (1, 2, 3):
            replicas[n].apply(entry)
    net.settle()
    k.tick(1.5)
    net.settle(1.5)
    assert k.counters["rebuild_restarts"] == 1 and k.counters["rebuilds"] == 1
    assert fresh.store.applied_index == 2 * INTERVAL and not fresh.apply_held
