"""``forward_commands = False``: validators keep their clients' commands and
put them in blocks when they propose (the large-n benchmark cells, whose
clients send every command to every validator)."""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.casper.casper_net import FAST_CONFIG, Network

from quorate.casper import CasperConfig, Forward
from quorate.errors import ConfigError
from quorate.ids import NodeId

NO_FORWARD = dataclasses.replace(FAST_CONFIG, forward_commands=False)


def test_forward_commands_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="forward_commands"):
        CasperConfig(forward_commands="no").validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2])
def test_commands_sent_to_every_validator_are_finalized_once_without_forwards(seed: int) -> None:
    net = Network(4, seed=seed, config=NO_FORWARD)
    commands = [b"cmd-%d" % i for i in range(30)]
    for command in commands:
        for node in net.ids:
            net.submit(command, node)
        net.run_until(net.now + 0.003)
    net.run_until(10.0, until=lambda: net.all_committed(commands))
    assert net.all_committed(commands)
    net.check_safety()
    assert not [m for _, _, m in net.sent if isinstance(m, Forward)]
    for node in net.ids:
        data = [e.data for e in net.committed[node]]
        assert len(data) == len(set(data)) == len(commands)


def test_a_command_given_to_one_validator_is_still_finalized() -> None:
    net = Network(4, seed=3, config=NO_FORWARD)
    net.submit(b"lonely", 2)
    net.run_until(10.0, until=lambda: net.all_committed([b"lonely"]))
    assert net.all_committed([b"lonely"])
    net.check_safety()


def test_a_validator_asks_a_voter_for_the_proof_of_a_source_it_lacks_once_a_slot_timeout_passed() -> None:
    """Votes whose source we do not know to be justified: nothing at first
    (its votes are usually on their way), a ``Status`` to the voter once a
    slot timeout has passed, which the voter answers with its proofs."""
    from tests.unit.casper.casper_net import HmacSigner
    from tests.unit.casper.test_casper_validator import Harness

    from quorate.casper import Checkpoint, Status, Vote, vote_bytes

    h = Harness()
    source = Checkpoint(3, b"s" * 32)
    targets = [Checkpoint(e, bytes([e]) * 32) for e in (4, 5)]

    def vote(voter: int, target: Checkpoint, at: float) -> list[object]:
        h.now = at
        signature = HmacSigner(NodeId(voter)).sign(vote_bytes(source, target))
        h.out.clear()
        h.v.step(NodeId(voter), Vote(voter, source, target, signature), at)
        h.drain()
        return [m for r in h.out for to, m in r.messages if to == NodeId(voter) and isinstance(m, Status)]

    assert vote(1, targets[0], 0.1) == []
    assert vote(2, targets[0], 0.5) == []  # within a slot timeout of the first such vote
    [status] = vote(1, targets[1], 1.2)
    assert status.justified.epoch < source.epoch
    assert vote(1, targets[1], 1.3) == []  # the same voter is asked once per slot timeout
