"""What MAC-authenticated commits save: one replica's authentication work per
slot for its commit phase, with signatures (Ed25519 via PyNaCl: sign once,
verify the n - 1 commits of the others) against MAC authenticators
(HMAC-SHA256: one authenticator of n - 1 MACs, check n - 1 entries).

Run: ``python tests/unit/pbft/bench_pbft_macs.py [n ...]``; prints one JSON
object per group size.
"""

from __future__ import annotations

import json
import sys
import time

from quorate.core.evidence import statement_bytes
from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, ed25519_cluster_keys
from quorate.crypto.mac import SessionKeys, pairwise_session_keys
from quorate.ids import NodeId
from quorate.pbft.messages import KIND_COMMIT

SLOTS = 300


def measure(n: int, slots: int = SLOTS) -> dict[str, float | int]:
    replicas = [NodeId(i) for i in range(n)]
    me, others = replicas[0], replicas[1:]
    pairs = ed25519_cluster_keys(b"bench", replicas)
    signers = {r: Ed25519Signer(r, pairs[r].signing_key) for r in replicas}
    verifier = Ed25519Verifier({r: pairs[r].public_key for r in replicas})
    keys = {r: SessionKeys(r, pairwise_session_keys(b"bench-secret", r, [p for p in replicas if p != r]))
            for r in replicas}
    data = [statement_bytes(KIND_COMMIT, s, 0, bytes(32)) for s in range(slots)]
    # What the others send us (made outside the timed loops).
    signed = [{r: signers[r].sign(d) for r in others} for d in data]
    macs = [{r: keys[r].authenticator(d, [me]) for r in others} for d in data]

    start = time.perf_counter()
    for i, d in enumerate(data):
        signers[me].sign(d)
        for r in others:
            assert verifier.verify(r, d, signed[i][r])
    signatures_s = (time.perf_counter() - start) / slots

    start = time.perf_counter()
    for i, d in enumerate(data):
        keys[me].authenticator(d, others)
        for r in others:
            assert keys[me].verify_entry(r, d, macs[i][r])
    macs_s = (time.perf_counter() - start) / slots
    return {
        "n": n,
        "slots": slots,
        "commit_auth_us_per_slot_signatures": round(signatures_s * 1e6, 1),
        "commit_auth_us_per_slot_macs": round(macs_s * 1e6, 1),
        "speedup": round(signatures_s / macs_s, 1),
    }


def main(argv: list[str]) -> None:
    for n in [int(a) for a in argv] or [4, 7, 10]:
        print(json.dumps(measure(n)))


if __name__ == "__main__":
    main(sys.argv[1:])
