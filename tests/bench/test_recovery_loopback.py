"""Real member processes on loopback (``quorate.bench.recovery_peer``): a
member rebuilds a shard's checkpoint from fragments fetched over TCP, one of
them with a flipped byte, driving ``CheckpointRecovery`` as a runtime
would; the corrupt fragment is rejected with one line and another member's
is used. The processes are stopped at the end."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from quorate.bench.recovery_peer import fetch
from quorate.core.ready import ENTRY_NORMAL, Entry
from quorate.crypto.erasure import (
    CheckpointFragment,
    CheckpointManifest,
    available_codecs,
    make_codec,
)
from quorate.crypto.keyring import CostModelKeyring
from quorate.hrb.checkpoint import (
    CheckpointConfig,
    CheckpointRecovery,
    FragmentRequest,
    LogSuffix,
    LogSuffixRequest,
    ManifestRequest,
    checkpoint_shard,
    decode_image,
    distribute,
    restore_shard_store,
)
from quorate.hrb.messages import EpochChange, Transaction, TxnOp
from quorate.hrb.shard.state import EntryRules, IntraTxn, ShardStore, encode_command
from quorate.ids import NodeId

pytestmark = pytest.mark.skipif(not available_codecs(), reason="no Reed-Solomon codec installed")

MEMBERS = (1, 2, 3, 4, 5, 6)
RULES = EntryRules(shard=1, shards=1, key_shard=lambda _key: 1)
GENESIS = EpochChange(0, (1,), 1, b"key")
KEYRING = CostModelKeyring(11)
ENCODE = msgspec.msgpack.Encoder().encode


def no_certificates(_key: bytes, _message: bytes, _signature: bytes) -> bool:
    return False


def test_a_member_rebuilds_over_tcp_and_rejects_a_flipped_byte(tmp_path: Path) -> None:
    store = ShardStore(RULES, no_certificates, GENESIS)
    for i in range(300):
        txn = Transaction(hashlib.sha256(b"%d" % i).digest()[:16], 0, 0, 1, (TxnOp(f"k{i}", "put", "v" * 300),))
        store.apply(Entry(1, i + 1, ENTRY_NORMAL, encode_command(IntraTxn(txn))))
    manifest, fragments = checkpoint_shard(store, signer=KEYRING.signer(NodeId(2)), codec=make_codec(available_codecs()[0], 4, 2))
    corrupt_member = 3
    processes: list[subprocess.Popen[str]] = []
    ports: dict[int, int] = {}
    try:
        for member, fragment in distribute(fragments, MEMBERS):
            if member == 1:
                continue  # the member that lost its data directory
            directory = tmp_path / f"member{member}"
            directory.mkdir()
            data = ENCODE(fragment)
            if member == corrupt_member:
                raw = bytearray(data)
                raw[-1] ^= 0x01  # one byte of the fragment's payload
                data = bytes(raw)
            (directory / "fragment").write_bytes(data)
            (directory / "manifest").write_bytes(ENCODE(manifest))
            (directory / "log").write_bytes(ENCODE(LogSuffix(1, manifest.log_index + 1, ())))
            process = subprocess.Popen(
                [sys.executable, "-m", "quorate.bench.recovery_peer", str(directory)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            processes.append(process)
            assert process.stdout is not None
            ports[member] = int(process.stdout.readline().split()[1])

        names = {ManifestRequest: ("manifest", CheckpointManifest), FragmentRequest: ("fragment", CheckpointFragment), LogSuffixRequest: ("log", LogSuffix)}
        recovery = CheckpointRecovery(1, 1, MEMBERS, KEYRING.verifier(NodeId(1)), CheckpointConfig())
        recovery.start(0.0)
        rejected: list[str] = []
        recovered = None
        for _ in range(50):
            ready = recovery.ready()
            rejected += [r.reason for r in ready.rejected]
            if ready.recovered is not None:
                recovered = ready.recovered
                break
            assert ready.messages, "recovery stalled"
            for to, message in ready.messages:
                name, kind = names[type(message)]
                blob = asyncio.run(fetch(ports[int(to)], name))
                recovery.step(int(to), msgspec.msgpack.decode(blob, type=kind), 0.0)
        assert recovered is not None
        assert rejected == [f"fragment {MEMBERS.index(corrupt_member)} does not match its checksum (corrupt)"]
        assert recovery.fragments_rejected == 1
        rebuilt = restore_shard_store(decode_image(recovered.state), rules=RULES, check_certificate=no_certificates, genesis=GENESIS)
        assert rebuilt.fingerprint() == store.fingerprint()
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in processes:
            process.wait(timeout=30)
    assert all(p.returncode == 0 for p in processes)
