"""PBFT with MACs in the normal case in the simulator (TOCS 2002 §3.2 and
the view change for MACs).

The simulator's ``pbft`` spec with ``authentication="macs"`` gives each
replica a ``MeteredMacAuthenticator``: real HMACs over session keys drawn
from the run's seed, with the measured HMAC cost charged to the replica's CPU
meter; pre-prepares, prepares and commits carry authenticators, view changes
carry P and Q claims. Swarm runs with f random Byzantine replicas and chaos
must stay safe and linearizable and make progress after the heal, as with
signatures.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from tests.sim.test_sim_bft import check_run, swarm_config

from quorate.core.protocol import ProtocolCore
from quorate.crypto import keyring as keyring_module
from quorate.crypto.costmodel import CryptoCosts
from quorate.crypto.keyring import CostModelKeyring, SessionKeyMacAuthenticator
from quorate.crypto.mac import pairwise_session_keys
from quorate.ids import NodeId
from quorate.pbft.messages import Commit, Prepare, PrePrepare
from quorate.runtime.sim.protocols import SpecContext, protocol_spec

MACS = {"authentication": "macs"}
REPLICAS = tuple(NodeId(i) for i in range(4))


def macs_config(nodes: int, seed: int) -> Any:
    config = swarm_config("pbft", nodes, seed)
    config.protocol_options.update(MACS)
    return config


@pytest.mark.parametrize(("nodes", "seed"), [(4, s) for s in range(8)] + [(7, s) for s in range(4)])
def test_swarm_with_macs_is_safe_and_linearizable(nodes: int, seed: int) -> None:
    check_run(macs_config(nodes, seed))


@pytest.mark.slow
@pytest.mark.parametrize("nodes", (4, 7, 10))
def test_swarm_with_macs_200_seeds(nodes: int) -> None:
    for seed in range(2000, 2200):
        check_run(macs_config(nodes, seed))


NormalCase = PrePrepare | Prepare | Commit


def _run_to_commit(cores: dict[NodeId, ProtocolCore]) -> list[NormalCase]:
    """Propose one command at the primary and deliver every message in order
    until nothing moves; return the normal-case messages that were sent."""
    now = 0.0
    cores[REPLICAS[0]].propose(b"put x", now)
    sent: list[NormalCase] = []
    for _ in range(100):
        moved = False
        for node, core in cores.items():
            now += 0.001
            core.tick(now)
            ready = core.ready()
            core.advance(ready)
            for to, message in ready.messages:
                moved = True
                if isinstance(message, NormalCase):
                    sent.append(message)
                cores[to].step(node, message, now)
        if not moved:
            break
    return sent


def test_spec_wires_metered_authenticators_into_every_replica() -> None:
    spec = protocol_spec("pbft", {**MACS, "batch_timeout_s": 0.0}, SpecContext(seed=7))
    assert spec.meter_for is not None
    cores = {n: spec.build_core(n, REPLICAS, random.Random(int(n)), 0.0, None) for n in REPLICAS}
    meters = {n: spec.meter_for(n) for n in REPLICAS}
    for meter in meters.values():
        meter.take()
    sent = _run_to_commit(cores)
    assert {type(m) for m in sent} == {PrePrepare, Prepare, Commit}
    for m in sent:
        author = m.replica if isinstance(m, Prepare | Commit) else int(REPLICAS[0])
        assert m.signature == b""
        assert {r for r, _ in m.macs} == {int(n) for n in REPLICAS} - {author}
    assert all(getattr(core, "executed_seq", 0) == 1 for core in cores.values())
    assert all(meter.take() > 0 for meter in meters.values())


def test_signed_mode_keeps_signed_commits() -> None:
    spec = protocol_spec("pbft", {"batch_timeout_s": 0.0}, SpecContext(seed=7))
    assert spec.meter_for is not None
    cores = {n: spec.build_core(n, REPLICAS, random.Random(int(n)), 0.0, None) for n in REPLICAS}
    sent = _run_to_commit(cores)
    assert sent and all(m.signature and not m.macs for m in sent)


def test_metered_authenticator_charges_the_measured_hmac_cost() -> None:
    costs = CryptoCosts()
    keyring = CostModelKeyring(3, costs=costs)
    meters = {n: keyring.meter(n) for n in REPLICAS}
    auth = {n: keyring.mac_authenticator(n, REPLICAS) for n in REPLICAS}
    receivers = REPLICAS[1:]
    macs = auth[REPLICAS[0]].macs(b"commit", receivers)
    assert meters[REPLICAS[0]].take() == pytest.approx(costs.mac_create_per_receiver_s * len(receivers))
    assert auth[REPLICAS[1]].check(REPLICAS[0], b"commit", macs)
    assert meters[REPLICAS[1]].take() == pytest.approx(costs.mac_verify_s)
    # A tampered body, a wrong claimed sender and another run's keys all fail.
    assert not auth[REPLICAS[1]].check(REPLICAS[0], b"commit!", macs)
    assert not auth[REPLICAS[1]].check(REPLICAS[2], b"commit", macs)
    other = CostModelKeyring(4, costs=costs).mac_authenticator(REPLICAS[1], REPLICAS)
    assert not other.check(REPLICAS[0], b"commit", macs)


def test_the_ledger_accepts_exactly_what_the_real_hmac_check_accepts() -> None:
    keyring = CostModelKeyring(5)
    auth = {n: keyring.mac_authenticator(n, REPLICAS) for n in REPLICAS}
    # The same session keys, checked by real HMACs only (no ledger).
    plain = {
        n: SessionKeyMacAuthenticator(n, pairwise_session_keys(keyring._mac_secret, n, [m for m in REPLICAS if m != n]))
        for n in REPLICAS
    }
    made = {s: auth[s].macs(b"prepare " + bytes([int(s)]), [r for r in REPLICAS if r != s]) for s in REPLICAS}
    for sender, macs in made.items():
        for receiver in REPLICAS:
            for claimed in REPLICAS:
                for data in (b"prepare " + bytes([int(sender)]), b"prepare ?"):
                    # The receiver's own entry, one moved from another receiver, a corrupted one.
                    for entry in (macs.get(int(receiver)), *macs.values(), b"\x00" * 32):
                        if entry is None:
                            continue
                        one = {int(receiver): entry}
                        assert auth[receiver].check(claimed, data, one) == plain[receiver].check(claimed, data, one)
    some = made[REPLICAS[0]]
    entry = some[int(REPLICAS[1])]
    assert keyring._mac_ledger.vouches(int(REPLICAS[0]), int(REPLICAS[1]), b"prepare \x00", entry)
    assert not keyring._mac_ledger.vouches(int(REPLICAS[0]), int(REPLICAS[2]), b"prepare \x00", entry)
    assert not keyring._mac_ledger.vouches(int(REPLICAS[0]), int(REPLICAS[1]), b"prepare \x00", bytes(x ^ 1 for x in entry))


def test_the_ledger_forgets_when_full_and_checks_are_then_real(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyring_module, "MAC_LEDGER_MAX_ENTRIES", 4)
    keyring = CostModelKeyring(6)
    auth = {n: keyring.mac_authenticator(n, REPLICAS) for n in REPLICAS}
    first = auth[REPLICAS[0]].macs(b"a", REPLICAS[1:])
    auth[REPLICAS[1]].macs(b"b", [REPLICAS[0], REPLICAS[2], REPLICAS[3]])  # 6 > 4: forgets "a"'s
    entry = first[int(REPLICAS[1])]
    assert not keyring._mac_ledger.vouches(int(REPLICAS[0]), int(REPLICAS[1]), b"a", entry)
    assert auth[REPLICAS[1]].check(REPLICAS[0], b"a", {int(REPLICAS[1]): entry})
