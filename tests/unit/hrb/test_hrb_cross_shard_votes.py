"""A shard's vote reaches the core once per transaction, and the core checks
each valid signature once (docs/hrb.md section 4, "What a cross-shard
transaction costs the core").

A leader used to send a new vote each time an acknowledgement arrived after
its proof was complete: in a shard of seven (a quorum of five) up to three
votes of different bytes per transaction, each ordered by the core only to
be refused as a duplicate. These tests pin the fix on the composed tiers
(``hrb_system_net``) and the verifier that keeps a vote's signatures from
being checked again on resends and when the log applies it.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from tests.unit.hrb.hrb_system_net import SystemNet
from tests.unit.hrb.test_hrb_system import settle

from quorate.crypto.costmodel import CpuMeter, CryptoCosts
from quorate.crypto.keyring import CostModelKeyring
from quorate.hrb.core.verified import RememberingVerifier
from quorate.hrb.messages import CORE_GROUP_BASE, ShardVote, TxnOp
from quorate.hrb.simulation import HrbSimSettings, HrbSystem
from quorate.ids import NodeId


def _votes_sent(net: SystemNet) -> list[tuple[int, bytes]]:
    """Record every ``ShardVote`` a shard member sends (as (sender, bytes))."""
    sent: list[tuple[int, bytes]] = []
    send = net._send

    def recording(src: NodeId, dst: NodeId, group: int, message: Any) -> None:
        if isinstance(message, ShardVote):
            sent.append((int(src), msgspec.msgpack.encode(message)))
        send(src, dst, group, message)

    net._send = recording  # type: ignore[method-assign]
    return sent


def test_each_shard_sends_one_vote_per_transaction_whatever_acknowledgements_arrive_late() -> None:
    net = SystemNet(seed=1, shard_size=7)
    sent = _votes_sent(net)
    net.run_for(3.0)
    a = net.keys_for(1, 1, "acct")[0]
    b = net.keys_for(2, 1, "acct")[0]
    via = {k: list(m) for k, m in net.deployment.shards.items()}
    transfer = net.transaction("pay", 1, [TxnOp(a, "put", "1"), TxnOp(b, "put", "2")], client=1, seq=1)
    net.submit(via[1][0], transfer)
    settle(net, [transfer], via)
    outcome = net.outcome(transfer)
    assert outcome is not None and outcome.committed
    by_shard: dict[int, set[bytes]] = {}
    for _, data in sent:
        vote = msgspec.msgpack.decode(data, type=ShardVote)
        assert vote.txn_id == transfer.txn_id
        by_shard.setdefault(vote.shard, set()).add(data)
    assert sorted(by_shard) == [1, 2]
    # One vote per shard, whatever copies went to the core's members.
    assert all(len(votes) == 1 for votes in by_shard.values()), {k: len(v) for k, v in by_shard.items()}
    for core in net.core():
        assert core.state is not None
        assert "duplicate vote" not in core.state.s.refusals


def test_a_valid_signature_is_verified_once_and_a_bad_one_every_time() -> None:
    costs = CryptoCosts()
    keyring = CostModelKeyring(7, costs=costs)
    meter: CpuMeter = keyring.meter(NodeId(2))
    verifier = RememberingVerifier(keyring.verifier(NodeId(2)))
    signature = keyring.signer(NodeId(1)).sign(b"vote")
    meter.take()
    for _ in range(3):
        assert verifier.verify(NodeId(1), b"vote", signature)
    assert meter.take() == pytest.approx(costs.ed25519_verify_s)
    assert (verifier.checked, verifier.remembered) == (1, 2)
    # Another signer, other data or a forged signature: checked, refused, never remembered.
    for node, data, sig in ((NodeId(3), b"vote", signature), (NodeId(1), b"vote!", signature), (NodeId(1), b"vote", b"x" * 64)):
        for _ in range(2):
            assert not verifier.verify(node, data, sig)
    assert meter.take() == pytest.approx(6 * costs.ed25519_verify_s)
    assert verifier.remembered == 2


def test_the_remembering_verifier_keeps_the_most_recent_signatures() -> None:
    keyring = CostModelKeyring(7)
    verifier = RememberingVerifier(keyring.verifier(NodeId(2)), capacity=2)
    signer = keyring.signer(NodeId(1))
    signed = [(b"m%d" % i, signer.sign(b"m%d" % i)) for i in range(3)]
    for data, sig in signed:
        assert verifier.verify(NodeId(1), data, sig)
    assert verifier.checked == 3
    assert verifier.verify(NodeId(1), *signed[2]) and verifier.verify(NodeId(1), *signed[1])
    assert verifier.checked == 3
    assert verifier.verify(NodeId(1), *signed[0])  # forgotten: checked again
    assert verifier.checked == 4
    # Input of the wrong type is passed through, not remembered, and never raises.
    assert not verifier.verify(NodeId(1), "m0", signed[0][1])  # type: ignore[arg-type]


def test_each_simulated_node_pays_for_its_own_threshold_shares() -> None:
    costs = CryptoCosts()
    model = HrbSystem(HrbSimSettings(nodes=8, shard_size=4, core_size=4, crypto_costs=costs))
    member = NodeId(model.members_of[0][0])
    other = NodeId(next(n for n in range(1, 9) if n != member))
    assert model.node_suite(member).meter is model.cpu_meter(member)
    core = model.build_group(member, CORE_GROUP_BASE, 0.0, None)
    assert core is not None
    for node in (member, other):
        model.cpu_meter(node).take()
    replica = model.cores[(int(member), 0)]
    assert replica is core.core and replica.certifier is not None and replica.certifier.signer is not None
    replica.certifier.signer.sign(b"decision")
    assert model.cpu_meter(member).take() == pytest.approx(costs.bls_sign_s)
    assert model.cpu_meter(other).take() == 0.0
