"""What MACs in the normal case save, two ways.

1. ``auth``: one replica's authentication work per slot in each normal-case
   phase it takes part in as a backup, with signatures (Ed25519 via PyNaCl:
   verify the pre-prepare, sign a prepare, verify the q - 2 other prepares it
   needs, sign a commit, verify the n - 1 commits of the others) against MAC
   authenticators (HMAC-SHA256: the same checks on one MAC each, and one
   authenticator of n - 1 MACs per message it sends).
2. ``replicas``: the CPU time of whole ``PbftReplica`` cores (real Ed25519
   keys, real HMAC session keys) running the normal case in one process,
   messages delivered in order with no loss: total process CPU per batch,
   divided by n (so: per replica per batch), in both modes. Checkpoints
   (signed in both modes) are included.

Run: ``python tests/unit/pbft/bench_pbft_macs.py [n ...]``; prints one JSON
object per measurement and group size.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from quorate.core.evidence import statement_bytes
from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, ed25519_cluster_keys
from quorate.crypto.mac import Authenticator, SessionKeys, pairwise_session_keys
from quorate.ids import NodeId
from quorate.pbft import PbftConfig, PbftReplica
from quorate.pbft.messages import KIND_COMMIT, KIND_PRE_PREPARE, KIND_PREPARE

SLOTS = 300
BATCHES = 300
BATCH_MAX = 16


def measure_auth(n: int, slots: int = SLOTS) -> dict[str, float | int]:
    """Authentication work of one backup per slot, all three phases."""
    f = (n - 1) // 3
    quorum = (n + f + 2) // 2
    replicas = [NodeId(i) for i in range(n)]
    primary, me, others = replicas[0], replicas[1], [r for r in replicas if r != replicas[1]]
    backups = [r for r in others if r != primary][: quorum - 2]
    pairs = ed25519_cluster_keys(b"bench", replicas)
    signers = {r: Ed25519Signer(r, pairs[r].signing_key) for r in replicas}
    verifier = Ed25519Verifier({r: pairs[r].public_key for r in replicas})
    keys = {r: SessionKeys(r, pairwise_session_keys(b"bench-secret", r, [p for p in replicas if p != r]))
            for r in replicas}

    def data(kind: str, s: int) -> bytes:
        return statement_bytes(kind, s, 0, bytes(32))

    # What the others send us (made outside the timed loops).
    pp_sig = [signers[primary].sign(data(KIND_PRE_PREPARE, s)) for s in range(slots)]
    p_sig = [{r: signers[r].sign(data(KIND_PREPARE, s)) for r in backups} for s in range(slots)]
    c_sig = [{r: signers[r].sign(data(KIND_COMMIT, s)) for r in others} for s in range(slots)]
    pp_mac = [keys[primary].authenticator(data(KIND_PRE_PREPARE, s), [me]) for s in range(slots)]
    p_mac = [{r: keys[r].authenticator(data(KIND_PREPARE, s), [me]) for r in backups} for s in range(slots)]
    c_mac = [{r: keys[r].authenticator(data(KIND_COMMIT, s), [me]) for r in others} for s in range(slots)]

    start = time.perf_counter()
    for s in range(slots):
        assert verifier.verify(primary, data(KIND_PRE_PREPARE, s), pp_sig[s])
        signers[me].sign(data(KIND_PREPARE, s))
        for r in backups:
            assert verifier.verify(r, data(KIND_PREPARE, s), p_sig[s][r])
        signers[me].sign(data(KIND_COMMIT, s))
        for r in others:
            assert verifier.verify(r, data(KIND_COMMIT, s), c_sig[s][r])
    signatures_s = (time.perf_counter() - start) / slots

    start = time.perf_counter()
    for s in range(slots):
        assert keys[me].verify_entry(primary, data(KIND_PRE_PREPARE, s), pp_mac[s])
        keys[me].authenticator(data(KIND_PREPARE, s), others)
        for r in backups:
            assert keys[me].verify_entry(r, data(KIND_PREPARE, s), p_mac[s][r])
        keys[me].authenticator(data(KIND_COMMIT, s), others)
        for r in others:
            assert keys[me].verify_entry(r, data(KIND_COMMIT, s), c_mac[s][r])
    macs_s = (time.perf_counter() - start) / slots
    return {
        "n": n,
        "slots": slots,
        "backup_auth_us_per_slot_signatures": round(signatures_s * 1e6, 1),
        "backup_auth_us_per_slot_macs": round(macs_s * 1e6, 1),
        "speedup": round(signatures_s / macs_s, 1),
    }


class _Keys:
    """``quorate.crypto.mac.SessionKeys`` as a PBFT ``MacAuthenticator``."""

    def __init__(self, node: NodeId, replicas: Sequence[NodeId]) -> None:
        self._keys = SessionKeys(
            node, pairwise_session_keys(b"bench-secret", node, [r for r in replicas if r != node])
        )

    def macs(self, data: bytes, receivers: Sequence[NodeId]) -> Mapping[int, bytes]:
        return self._keys.authenticator(data, receivers).macs

    def check(self, sender: NodeId, data: bytes, macs: Mapping[int, bytes]) -> bool:
        return self._keys.verify_entry(sender, data, Authenticator(dict(macs)))


def measure_replicas(n: int, authentication: str, batches: int = BATCHES) -> dict[str, Any]:
    """CPU per batch per replica of whole cores running the normal case."""
    replicas = [NodeId(i) for i in range(n)]
    pairs = ed25519_cluster_keys(b"bench", replicas)
    verifier = Ed25519Verifier({r: pairs[r].public_key for r in replicas})
    config = PbftConfig(batch_max=BATCH_MAX, batch_timeout_s=0.002, checkpoint_interval=32,
                        authentication=authentication)
    cores = {
        r: PbftReplica(
            r, replicas, config=config, signer=Ed25519Signer(r, pairs[r].signing_key), verifier=verifier,
            rng=random.Random(int(r)), now=0.0,
            authenticator=_Keys(r, replicas) if authentication == "macs" else None,
        )
        for r in replicas
    }
    queue: deque[tuple[NodeId, NodeId, Any]] = deque()

    def drain(r: NodeId) -> int:
        ready = cores[r].ready()
        for to, m in ready.messages:
            queue.append((r, to, m))
        return len(ready.committed)

    committed = 0
    now = 0.0
    start = time.process_time()
    for b in range(batches):
        now += 0.001
        for i in range(BATCH_MAX):
            cores[replicas[0]].propose(f"cmd-{b}-{i}".encode(), now)
        committed += drain(replicas[0])
        while queue:
            src, dst, m = queue.popleft()
            cores[dst].step(src, m, now)
            committed += drain(dst)
    cpu_s = time.process_time() - start
    assert committed == n * batches * BATCH_MAX, committed
    return {
        "n": n,
        "authentication": authentication,
        "batches": batches,
        "batch_max": BATCH_MAX,
        "cpu_us_per_batch_per_replica": round(cpu_s / batches / n * 1e6, 1),
    }


def main(argv: list[str]) -> None:
    for n in [int(a) for a in argv] or [4, 7, 10]:
        print(json.dumps({"bench": "pbft.auth", **measure_auth(n)}))
        rows = {mode: measure_replicas(n, mode) for mode in ("signatures", "macs")}
        for row in rows.values():
            print(json.dumps({"bench": "pbft.replicas", **row}))
        ratio = rows["signatures"]["cpu_us_per_batch_per_replica"] / rows["macs"]["cpu_us_per_batch_per_replica"]
        print(json.dumps({"bench": "pbft.replicas", "n": n, "signatures_over_macs": round(ratio, 2)}))


if __name__ == "__main__":
    main(sys.argv[1:])
