"""How much CPU the cryptographic primitives cost on this machine.

Theory of operation. Each measure runs one primitive ``iterations`` times and
reports the median CPU time of one call in microseconds. CPU time of the
calling thread (``time.thread_time_ns``) rather than wall time, because the
simulator charges CPU and because a shared machine's other tenants inflate
wall time, not thread CPU time. A warm-up call runs first; operations that
take under ~10 µs are timed in batches (``FAST_BATCH``) so the clock's own
cost does not dominate. ``fitted_costs`` turns the medians into the
``CryptoCosts`` the simulator's cost model charges.

Messages are 32-byte digests: protocols sign hashes, not payloads.

Zero-knowledge votes (``quorate.crypto.zk``): casting a ballot (commitment,
0-or-1 proof, sealed opening, signature), checking one as every replica does,
and checking and opening the tally of ``TALLY_BALLOTS`` ballots. Distributed
key generation (``quorate.crypto.dkg``): one fresh run and one resharing of
each size in ``DKG_SETTINGS`` (t = 2f + 1 of n = 3f + 1, a BFT group's
quorum), all participants in this one process, so the figure is the CPU the
whole group spends (``per_participant`` divides it by n); a run takes up to
a quarter of a second, so at most ``DKG_RUNS_MAX`` runs are timed.

Ristretto255 backends (``quorate.crypto.ristretto255``): the zero-knowledge
figures above use the backend in use; ``ristretto255`` in the report times a
variable-base and a base-point multiplication, casting a ballot and checking
one under every backend that loads here, with each one's ratio to libsodium
when the system library is there. The Python backends remember the points
behind recent encodings, so a check is timed as a replica meets a ballot:
the encodings it has never seen are forgotten before each sample (untimed),
the public ones it holds all along (G, H, the tally key) are not. The tally
check is timed over commitments the replica already decoded when it
accepted their ballots.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from quorate.crypto import ristretto255
from quorate.crypto.bls import BlsSigner, BlsVerifier, aggregate, bls_cluster_keys
from quorate.crypto.costmodel import CostModelKeys, CostModelSigner, CostModelVerifier, CryptoCosts
from quorate.crypto.dkg import (
    DkgConfig,
    DkgParticipant,
    Phase,
    Resharing,
    encryption_keypair,
    run_in_memory,
)
from quorate.crypto.ed25519 import Ed25519Signer, Ed25519Verifier, ed25519_keypair_from_seed
from quorate.crypto.mac import SessionKeys, pairwise_session_keys
from quorate.crypto.pop import prove_possession, verify_possession
from quorate.crypto.threshold import KeyShare, ThresholdSigner, deal
from quorate.crypto.zk import (
    PEDERSEN_H,
    Ballot,
    Tallier,
    VoteVerifier,
    ballot_context,
    cast_ballot,
    commit,
    prove_bit,
    prove_ed25519_key,
    verify_bit,
    verify_ed25519_key,
)
from quorate.ids import NodeId

FAST_BATCH = 100
"""Calls per timed sample for microsecond-scale operations."""

AGGREGATE_SIZES = (4, 16, 64, 100)
THRESHOLD_SETTINGS = ((5, 7), (21, 31))
AUTHENTICATOR_SIZES = (4, 16)
TALLY_BALLOTS = 100
DKG_SETTINGS = ((3, 4), (5, 7), (7, 10))
"""(t, n) of the DKG runs."""
DKG_RUNS_MAX = 5

_SEED = b"quorate bench crypto"
_MESSAGE = hashlib.sha256(b"a block to vote for").digest()


def median_call_us(
    call: Callable[[], object],
    iterations: int,
    batch: int = 1,
    setup: Callable[[], object] | None = None,
) -> float:
    """The median CPU time of one ``call()`` in microseconds; ``setup()``, if
    given, runs untimed before each sample."""
    call()
    samples = []
    for _ in range(iterations):
        if setup is not None:
            setup()
        started = time.thread_time_ns()
        for _ in range(batch):
            call()
        samples.append((time.thread_time_ns() - started) / batch / 1000)
    return statistics.median(samples)


def measure(iterations: int) -> dict[str, float]:
    """Median microseconds per call of every primitive, keyed ``<what>_us``."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    out: dict[str, float] = {}
    node = NodeId(0)

    ed_pair = ed25519_keypair_from_seed(_SEED)
    ed_signer = Ed25519Signer(node, ed_pair.signing_key)
    ed_verifier = Ed25519Verifier({node: ed_pair.public_key})
    ed_sig = ed_signer.sign(_MESSAGE)
    out["ed25519_sign_us"] = median_call_us(
        lambda: ed_signer.sign(_MESSAGE), iterations, FAST_BATCH
    )
    out["ed25519_verify_us"] = median_call_us(
        lambda: ed_verifier.verify(node, _MESSAGE, ed_sig), iterations, FAST_BATCH
    )

    biggest = max(AGGREGATE_SIZES)
    bls_pairs = bls_cluster_keys(_SEED, [NodeId(i) for i in range(biggest)])
    bls_signers = {n: BlsSigner(n, p.secret_key) for n, p in bls_pairs.items()}
    bls_verifier = BlsVerifier({n: p.public_key for n, p in bls_pairs.items()})
    partials = {n: s.sign(_MESSAGE) for n, s in bls_signers.items()}
    out["bls_sign_us"] = median_call_us(lambda: bls_signers[node].sign(_MESSAGE), iterations)
    out["bls_verify_us"] = median_call_us(
        lambda: bls_verifier.verify(node, _MESSAGE, partials[node]), iterations
    )
    for size in AGGREGATE_SIZES:
        some = {NodeId(n): partials[NodeId(n)] for n in range(size)}
        bitmap, agg = aggregate(some)
        out[f"bls_aggregate_{size}_us"] = median_call_us(partial(aggregate, some), iterations)
        out[f"bls_aggregate_verify_{size}_us"] = median_call_us(
            partial(bls_verifier.verify_aggregate, bitmap, _MESSAGE, agg), iterations
        )

    for t, n in THRESHOLD_SETTINGS:
        dealing = deal(t, n, seed=_SEED)
        public = dealing.public_key()
        shares = {
            s.index: ThresholdSigner(NodeId(s.index), s).sign(_MESSAGE) for s in dealing.shares[:t]
        }
        out[f"threshold_combine_t{t}_n{n}_us"] = median_call_us(
            partial(public.combine, shares), iterations
        )

    pop_pair = bls_pairs[node]
    proof = prove_possession(pop_pair.secret_key, b"bench")
    out["pop_verify_us"] = median_call_us(
        lambda: verify_possession(pop_pair.public_key, proof, b"bench"), iterations
    )

    for size in AUTHENTICATOR_SIZES:
        nodes = [NodeId(i) for i in range(size)]
        sender = SessionKeys(node, pairwise_session_keys(_SEED, node, nodes))
        receiver = SessionKeys(nodes[-1], pairwise_session_keys(_SEED, nodes[-1], nodes))
        auth = sender.authenticator(_MESSAGE, nodes)
        out[f"mac_authenticator_create_{size}_us"] = median_call_us(
            partial(sender.authenticator, _MESSAGE, nodes), iterations, FAST_BATCH
        )
        out[f"mac_authenticator_verify_{size}_us"] = median_call_us(
            partial(receiver.verify_entry, node, _MESSAGE, auth), iterations, FAST_BATCH
        )

    cm_keys = CostModelKeys(_SEED)
    cm_sig = CostModelSigner(node, cm_keys).sign(_MESSAGE)
    cm_verifier = CostModelVerifier(cm_keys)
    out["costmodel_verify_us"] = median_call_us(
        lambda: cm_verifier.verify(node, _MESSAGE, cm_sig), iterations, FAST_BATCH
    )
    out.update(_zk_medians(iterations))
    return {k: round(v, 3) for k, v in out.items()}


def _check_ballot(verifier: VoteVerifier, b: Ballot) -> None:
    fault = verifier.ballot_fault(
        b.proposal_id, b.voter, b.commitment, b.proof, b.sealed_opening, b.signature
    )
    assert fault is None, fault


def _replica_that_holds(*points: bytes) -> Callable[[], None]:
    """A sample's setup: forget every encoding but ``points``, which stay as a
    replica holds them after its first ballot (decoded, multiplied once)."""

    def setup() -> None:
        ristretto255.clear_cache()
        for point in points:
            ristretto255.scalar_mult(1, point)

    return setup


def _zk_medians(iterations: int) -> dict[str, float]:
    out: dict[str, float] = {}
    random_bytes = random.Random(1).randbytes
    tallier = Tallier.generate(random_bytes)
    seeds = [hashlib.sha256(_SEED + b"voter %d" % i).digest() for i in range(TALLY_BALLOTS)]
    ballots = [
        cast_ballot("bench", i % 2, seed, tallier.tally_key, random_bytes)
        for i, seed in enumerate(seeds)
    ]
    verifier = VoteVerifier()
    out["zk_ballot_cast_us"] = median_call_us(
        lambda: cast_ballot("bench", 1, seeds[0], tallier.tally_key, random_bytes), iterations
    )
    replica = _replica_that_holds(ristretto255.GENERATOR, PEDERSEN_H, tallier.tally_key)
    out["zk_ballot_verify_us"] = median_call_us(
        partial(_check_ballot, verifier, ballots[0]), iterations, setup=replica
    )
    context = ballot_context("bench", ballots[0].voter)
    proof = prove_bit(1, 12345, context, random_bytes)
    out["zk_bit_prove_us"] = median_call_us(
        lambda: prove_bit(1, 12345, context, random_bytes), iterations
    )
    commitment = commit(1, 12345)
    out["zk_bit_verify_us"] = median_call_us(
        lambda: verify_bit(commitment, proof, context), iterations, setup=replica
    )
    entries = {b.voter: (b.commitment, b.sealed_opening) for b in ballots}
    opening = tallier.open_tally("bench", entries, random_bytes)

    def check_tally() -> None:
        fault = verifier.tally_fault(
            "bench", tallier.tally_key, entries, opening.yes, opening.proof, []
        )
        assert fault is None, fault

    out[f"zk_tally_verify_{TALLY_BALLOTS}_us"] = median_call_us(check_tally, iterations)
    out[f"zk_tally_open_{TALLY_BALLOTS}_us"] = median_call_us(
        lambda: tallier.open_tally("bench", entries, random_bytes), iterations
    )
    key_proof = prove_ed25519_key(seeds[0], b"bench")
    out["ed25519_key_proof_verify_us"] = median_call_us(
        lambda: verify_ed25519_key(ballots[0].voter, key_proof, b"bench"), iterations
    )
    return out


RISTRETTO_MEASURES = ("scalar_mult_us", "scalar_mult_base_us", "ballot_cast_us", "ballot_verify_us")
"""What ``measure_ristretto_backends`` times under each backend."""


def measure_ristretto_backends(iterations: int) -> dict[str, Any]:
    """The Ristretto255 backend in use, those available, and under each of
    them the median microseconds of ``RISTRETTO_MEASURES`` (a multiplication
    of a point never seen, of the generator, casting a ballot and checking
    one a replica has never seen), with ratios to libsodium when it loads."""
    random_bytes = random.Random(2).randbytes
    point = ristretto255.hash_to_point(b"quorate bench ristretto255")
    scalar = ristretto255.random_scalar(random_bytes)
    seed = hashlib.sha256(_SEED + b"ristretto255 voter").digest()
    tallier = Tallier.generate(random_bytes)
    verifier = VoteVerifier()
    available = ristretto255.available_backends()
    per_backend: dict[str, dict[str, float]] = {}
    for name in available:
        with ristretto255.using_backend(name):
            ballot = cast_ballot("bench", 1, seed, tallier.tally_key, random_bytes)
            replica = _replica_that_holds(ristretto255.GENERATOR, PEDERSEN_H, tallier.tally_key)
            medians = {
                "scalar_mult_us": median_call_us(
                    partial(ristretto255.scalar_mult, scalar, point), iterations, setup=replica
                ),
                "scalar_mult_base_us": median_call_us(
                    partial(ristretto255.scalar_mult_base, scalar), iterations
                ),
                "ballot_cast_us": median_call_us(
                    lambda: cast_ballot("bench", 1, seed, tallier.tally_key, random_bytes),
                    iterations,
                ),
                "ballot_verify_us": median_call_us(
                    partial(_check_ballot, verifier, ballot), iterations, setup=replica
                ),
            }
            per_backend[name] = {k: round(v, 1) for k, v in medians.items()}
    report: dict[str, Any] = {
        "backend": ristretto255.backend_name(),
        "available": list(available),
        "medians_us": per_backend,
    }
    baseline = per_backend.get("libsodium")
    if baseline is not None:
        report["ratio_to_libsodium"] = {
            name: {k: round(v / baseline[k], 2) for k, v in figures.items()}
            for name, figures in per_backend.items()
            if name != "libsodium"
        }
    return report


def measure_dkg(iterations: int) -> list[dict[str, Any]]:
    """Median CPU of a fresh DKG and of a resharing per (t, n) in ``DKG_SETTINGS``."""
    runs = max(1, min(iterations, DKG_RUNS_MAX))
    rows = []
    for t, n in DKG_SETTINGS:
        members = tuple(NodeId(i) for i in range(1, n + 1))
        keys = {m: encryption_keypair(_SEED + b"%d" % m) for m in members}
        public = {m: pair[1] for m, pair in keys.items()}
        fresh_ms: list[float] = []
        reshare_ms: list[float] = []
        for run in range(runs):
            config = DkgConfig(b"bench fresh %d" % run, members, t, public)
            fresh = {
                m: DkgParticipant(config, m, keys[m][0], random.Random(run * 1000 + m).randbytes)
                for m in members
            }
            fresh_ms.append(_cpu_ms(partial(run_in_memory, fresh)))
            results = {m: p.result for m, p in fresh.items()}
            first = results[members[0]]
            assert first is not None
            shares: dict[NodeId, KeyShare | None] = {
                m: r.share if r is not None else None for m, r in results.items()
            }
            reshare_config = DkgConfig(
                b"bench reshare %d" % run, members, t, public, Resharing(members, first.public_key)
            )
            reshared = {
                m: DkgParticipant(
                    reshare_config, m, keys[m][0], random.Random(run).randbytes, shares[m]
                )
                for m in members
            }
            reshare_ms.append(_cpu_ms(partial(run_in_memory, reshared)))
            done = {p.phase for p in (*fresh.values(), *reshared.values())}
            assert done == {Phase.DONE}, done
        group_ms = statistics.median(fresh_ms)
        rows.append(
            {
                "t": t,
                "n": n,
                "runs": runs,
                "group_cpu_ms": round(group_ms, 2),
                "per_participant_cpu_ms": round(group_ms / n, 2),
                "reshare_group_cpu_ms": round(statistics.median(reshare_ms), 2),
            }
        )
    return rows


def _cpu_ms(call: Callable[[], object]) -> float:
    started = time.thread_time_ns()
    call()
    return (time.thread_time_ns() - started) / 1e6


def fitted_costs(medians_us: dict[str, float]) -> CryptoCosts:
    """The ``CryptoCosts`` a set of ``measure`` results implies.

    Linear terms are fitted through the smallest and largest sizes measured.
    """
    us = 1e-6
    small, large = min(AGGREGATE_SIZES), max(AGGREGATE_SIZES)
    verify_small = medians_us[f"bls_aggregate_verify_{small}_us"]
    verify_large = medians_us[f"bls_aggregate_verify_{large}_us"]
    per_signer = max(0.0, (verify_large - verify_small) / (large - small))
    (t_small, n_small), (t_large, n_large) = THRESHOLD_SETTINGS[0], THRESHOLD_SETTINGS[-1]
    combine_small = medians_us[f"threshold_combine_t{t_small}_n{n_small}_us"]
    combine_large = medians_us[f"threshold_combine_t{t_large}_n{n_large}_us"]
    per_share = max(0.0, (combine_large - combine_small) / (t_large - t_small))
    mac_n = max(AUTHENTICATOR_SIZES)
    return CryptoCosts(
        ed25519_sign_s=medians_us["ed25519_sign_us"] * us,
        ed25519_verify_s=medians_us["ed25519_verify_us"] * us,
        bls_sign_s=medians_us["bls_sign_us"] * us,
        bls_verify_s=medians_us["bls_verify_us"] * us,
        bls_aggregate_per_signature_s=medians_us[f"bls_aggregate_{large}_us"] / large * us,
        bls_aggregate_verify_base_s=max(0.0, verify_small - small * per_signer) * us,
        bls_aggregate_verify_per_signer_s=per_signer * us,
        threshold_combine_base_s=max(0.0, combine_small - t_small * per_share) * us,
        threshold_combine_per_share_s=per_share * us,
        mac_create_per_receiver_s=medians_us[f"mac_authenticator_create_{mac_n}_us"] / mac_n * us,
        mac_verify_s=medians_us[f"mac_authenticator_verify_{mac_n}_us"] * us,
    )


def report(iterations: int) -> dict[str, Any]:
    """The benchmark's JSON object: medians and the cost model they imply."""
    medians = measure(iterations)
    costs = {k: float(f"{v:.3g}") for k, v in asdict(fitted_costs(medians)).items()}
    return {
        "benchmark": "crypto",
        "iterations": iterations,
        "unit": "microseconds of thread CPU time per call (median)",
        "medians_us": medians,
        "crypto_costs_s": costs,
        "dkg": measure_dkg(iterations),
        "ristretto255": measure_ristretto_backends(iterations),
    }
