"""The Casper FFG validator: justification and finalization from votes, fork
choice, execution only when finalized, durable votes across restarts, and
Byzantine validators caught with evidence (Buterin & Griffith 2017)."""

from __future__ import annotations

import itertools
import random

import pytest
from tests.unit.casper.casper_net import FAST_CONFIG, HmacSigner, HmacVerifier, Network

from quorate.casper import (
    GENESIS,
    Block,
    CasperConfig,
    CasperValidator,
    Checkpoint,
    Proposal,
    Vote,
    block_hash,
    slashing_condition,
    verify_justification,
    verify_slashing,
    vote_bytes,
)
from quorate.casper.messages import block_bytes
from quorate.core.protocol import Queued, Refused
from quorate.core.ready import Ready
from quorate.ids import NodeId

E = FAST_CONFIG.epoch_blocks


def _commands(count: int, tag: str = "c") -> list[bytes]:
    return [f"{tag}{i}".encode() for i in range(count)]


def _load(net: Network, commands: list[bytes], gap_s: float = 0.01) -> None:
    for i, c in enumerate(commands):
        targets = [n for n in net.honest if n not in net.crashed]
        net.submit(c, targets[i % len(targets)])
        net.run_until(net.now + gap_s)


# ---------------------------------------------------------------- a validator fed by hand


class Harness:
    """Validator 4 of four (E = 2), fed signed blocks and votes by hand."""

    def __init__(self) -> None:
        self.ids = [NodeId(i) for i in range(1, 5)]
        config = CasperConfig(slot_timeout_s=1.0, justify_wait_s=0.5, epoch_blocks=2)
        self.v = CasperValidator(
            NodeId(4), self.ids, config=config, signer=HmacSigner(NodeId(4)), verifier=HmacVerifier(),
            rng=random.Random(1), now=0.0,
        )
        self.now = 0.0
        self.out: list[Ready] = []

    def block(self, parent: bytes, slot: int, height: int, commands: tuple[bytes, ...] = (), justification=None) -> tuple[bytes, Block]:  # type: ignore[no-untyped-def]
        proposer = self.v.proposer(slot)
        b = Block(parent, slot, height, int(proposer), commands, justification)
        h = block_hash(b)
        self.v.step(proposer, Proposal(b, HmacSigner(proposer).sign(block_bytes(slot, h))), self._tick())
        self.drain()
        return h, b

    def votes(self, source: Checkpoint, target: Checkpoint, voters: tuple[int, ...] = (1, 2, 3)) -> None:
        for voter in voters:
            signature = HmacSigner(NodeId(voter)).sign(vote_bytes(source, target))
            self.v.step(NodeId(voter), Vote(voter, source, target, signature), self._tick())
            self.drain()

    def _tick(self) -> float:
        self.now += 0.001
        return self.now

    def drain(self) -> None:
        while self.v.has_ready():
            self.out.append(self.v.ready())

    def committed(self) -> list[bytes]:
        return [e.data for r in self.out for e in r.committed]

    def sent_votes(self) -> list[Vote]:
        return [m for r in self.out for to, m in r.messages if isinstance(m, Vote) and to == NodeId(1)]


def test_fork_choice_follows_the_highest_justified_checkpoint_then_the_longest_chain() -> None:
    # Reference: §4 (fork choice: the chain containing the justified checkpoint
    # of the greatest height), then the longest chain.
    h = Harness()
    a1, _ = h.block(GENESIS.hash, 1, 1)
    a2, _ = h.block(a1, 2, 2)
    a3, _ = h.block(a2, 3, 3)
    assert h.v.head == a3
    b2, _ = h.block(a1, 5, 2)
    b3, _ = h.block(b2, 6, 3)
    b4, _ = h.block(b3, 7, 4)
    assert h.v.head == b4, "longest chain while only genesis is justified"
    h.votes(GENESIS, Checkpoint(1, a2))
    assert h.v.justified == Checkpoint(1, a2)
    assert h.v.head == a3, "the chain with the highest justified checkpoint wins over a longer one"
    # Ties in height go to the lowest hash, the same choice on every validator.
    c3, _ = h.block(a2, 9, 3)
    assert h.v.head == min(a3, c3)


def test_votes_of_two_thirds_justify_and_a_link_to_the_next_epoch_finalizes() -> None:
    # Reference: §2, definitions of justified and finalized checkpoints.
    h = Harness()
    a1, _ = h.block(GENESIS.hash, 1, 1, (b"x1",))
    a2, _ = h.block(a1, 2, 2, (b"x2",))
    h.votes(GENESIS, Checkpoint(1, a2), voters=(1, 2))
    # Two validators plus our own vote: three of four, a supermajority.
    assert h.v.justified == Checkpoint(1, a2)
    assert h.v.finalized == GENESIS and h.committed() == []
    # Slots 5 and 6 (validators 1 and 2): slot 4 is ours, and with commands
    # on its chain validator 4 would propose a block of its own there.
    a3, _ = h.block(a2, 5, 3, (b"x3",))
    link = h.v._justified[Checkpoint(1, a2)]
    assert link is not None and verify_justification(link, h.ids, HmacVerifier())
    a4, _ = h.block(a3, 6, 4, (b"x4",), justification=link)
    assert h.v.head == a4
    h.votes(Checkpoint(1, a2), Checkpoint(2, a4), voters=(1,))
    assert h.v.finalized == GENESIS, "one vote plus ours is not 2/3"
    h.votes(Checkpoint(1, a2), Checkpoint(2, a4), voters=(2,))
    assert h.v.finalized == Checkpoint(1, a2)
    assert h.v.justified == Checkpoint(2, a4)
    # Only the finalized prefix is executed, in chain order.
    assert h.committed() == [b"x1", b"x2"]
    assert h.v.root_hash == a2 and h.v.committed_index == 2


def test_a_skip_link_justifies_without_finalizing() -> None:
    h = Harness()
    a1, _ = h.block(GENESIS.hash, 1, 1, (b"y",))
    a2, _ = h.block(a1, 2, 2)
    a3, _ = h.block(a2, 3, 3)
    a4, _ = h.block(a3, 5, 4)
    h.votes(GENESIS, Checkpoint(2, a4))
    assert h.v.justified == Checkpoint(2, a4)
    assert h.v.finalized == GENESIS and h.committed() == []


def test_honest_votes_never_break_a_slashing_condition() -> None:
    h = Harness()
    parent = GENESIS.hash
    for height, slot in zip(range(1, 9), (1, 2, 3, 5, 6, 7, 9, 10)):
        parent, _ = h.block(parent, slot, height)
        if height % 2 == 0 and height >= 4:
            pass
    ours = h.sent_votes()
    assert len(ours) >= 3
    for a, b in itertools.combinations(ours, 2):
        assert slashing_condition(a, b) is None


def test_a_vote_for_another_target_in_the_same_epoch_convicts_its_validator() -> None:
    h = Harness()
    a1, _ = h.block(GENESIS.hash, 1, 1)
    a2, _ = h.block(a1, 2, 2)
    b2, _ = h.block(a1, 5, 2)
    h.votes(GENESIS, Checkpoint(1, a2), voters=(2,))
    h.votes(GENESIS, Checkpoint(1, b2), voters=(2,))
    assert h.v.excluded == {NodeId(2)}
    evidence = [m for r in h.out for _, m in r.messages if type(m).__name__ == "SlashingEvidence"]
    assert evidence and verify_slashing(evidence[0], HmacVerifier()) == "double_vote"
    # Its later messages are dropped.
    rejected_before = sum(len(r.rejected) for r in h.out)
    h.votes(GENESIS, Checkpoint(1, a2), voters=(2,))
    assert sum(len(r.rejected) for r in h.out) == rejected_before + 1


def test_propose_queues_and_refuses_duplicates() -> None:
    h = Harness()
    assert isinstance(h.v.propose(b"cmd", 0.0), Queued)
    refused = h.v.propose(b"cmd", 0.0)
    assert isinstance(refused, Refused) and "already waiting" in refused.reason
    big = h.v.propose(b"x" * (h.v.config.max_command_bytes + 1), 0.0)
    assert isinstance(big, Refused)


def test_bad_config_is_refused() -> None:
    from quorate.errors import ConfigError

    with pytest.raises(ConfigError, match="justify_wait_s"):
        CasperConfig(slot_timeout_s=0.1, justify_wait_s=0.2).validate()
    with pytest.raises(ConfigError, match="epoch_blocks"):
        CasperConfig(epoch_blocks=0).validate()


# ---------------------------------------------------------------- whole clusters


@pytest.mark.parametrize("seed", range(3))
def test_commands_are_executed_only_once_finalized(seed: int) -> None:
    net = Network(4, seed=seed)
    net.submit(b"only-when-final", 1)
    # Run until the command sits in a block on every validator's chain.
    net.run_until(5.0, until=lambda: all(b"only-when-final" in net.core(n)._chain_commands(net.core(n).head) for n in net.ids))
    for n in net.ids:
        core = net.core(n)
        assert net.committed[n] == [] or core.finalized.epoch * E >= 1
    net.run_until(net.now + 5.0, until=lambda: net.all_committed([b"only-when-final"]))
    assert net.all_committed([b"only-when-final"])
    for n in net.ids:
        core = net.core(n)
        # Executed means: below a finalized checkpoint whose finalizing link verifies.
        assert core.finalized.epoch >= 1 and core._finalized_link is not None
        assert verify_justification(core._finalized_link, net.ids, HmacVerifier())
        assert core._finalized_link.target.epoch == core.finalized.epoch + 1
    net.check_safety()


@pytest.mark.parametrize("n", [1, 4, 7])
def test_clusters_of_several_sizes_finalize_every_command(n: int) -> None:
    net = Network(n, seed=n)
    commands = _commands(60)
    _load(net, commands)
    net.run_until(net.now + 10.0, until=lambda: net.all_committed(commands))
    assert net.all_committed(commands)
    net.check_safety()
    lengths = {len(net.committed[i]) for i in net.ids}
    assert lengths == {60}, "each command executed once"


def test_lossy_network_still_finalizes() -> None:
    net = Network(4, seed=11, drop_rate=0.15)
    commands = _commands(40)
    _load(net, commands)
    net.run_until(net.now + 30.0, until=lambda: net.all_committed(commands))
    assert net.all_committed(commands)
    net.check_safety()


def test_a_minority_partition_cannot_finalize_and_catches_up_after_the_heal() -> None:
    net = Network(4, seed=5)
    _load(net, _commands(10, "a"))
    net.run_until(net.now + 2.0, until=lambda: net.all_committed(_commands(10, "a")))
    net.partition([1, 2], [3, 4])
    stuck = _commands(10, "b")
    _load(net, stuck)
    net.run_until(net.now + 3.0)
    finalized = {n: net.core(n).finalized.epoch for n in net.ids}
    net.run_until(net.now + 3.0)
    assert {n: net.core(n).finalized.epoch for n in net.ids} == finalized, "two of four are not 2/3"
    assert not any(set(stuck) & net.committed_data(n) for n in net.ids)
    net.heal()
    net.run_until(net.now + 20.0, until=lambda: net.all_committed(stuck))
    assert net.all_committed(stuck)
    net.check_safety()


def test_a_restarted_validator_replays_its_log_and_never_double_votes() -> None:
    net = Network(4, seed=8)
    first = _commands(20, "a")
    _load(net, first)
    net.run_until(net.now + 5.0, until=lambda: net.all_committed(first))
    net.crash(2)
    second = _commands(20, "b")
    _load(net, second)
    net.run_until(net.now + 5.0, until=lambda: net.all_committed(second))
    net.restart(2)
    third = _commands(20, "c")
    _load(net, third)
    net.run_until(net.now + 10.0, until=lambda: net.all_committed(first + second + third))
    assert net.all_committed(first + second + third)
    net.check_safety()
    votes = [m for src, _, m in net.sent if src == NodeId(2) and isinstance(m, Vote)]
    assert len({(v.source, v.target) for v in votes}) >= 2
    for a, b in itertools.combinations(votes, 2):
        assert slashing_condition(a, b) is None
    assert not any(net.core(n).excluded for n in net.ids)


def test_the_durable_last_vote_keeps_a_restarted_validator_from_double_voting() -> None:
    # Reference: §3, commandment I, across a crash: the vote's HardState is in
    # the Ready that sends it, so a rebuilt validator knows it voted.
    from quorate.storage.base import Recovered

    h = Harness()
    a1, _ = h.block(GENESIS.hash, 1, 1)
    a2, _ = h.block(a1, 2, 2)
    assert [(v.source.epoch, v.target.epoch) for v in h.sent_votes()] == [(0, 1)]
    hard_state = [r.hard_state for r in h.out if r.hard_state is not None][-1]
    assert hard_state.last_vote is not None and hard_state.last_vote.target == Checkpoint(1, a2)

    def rebuilt(recovered: Recovered | None) -> Harness:
        again = Harness()
        again.v = CasperValidator(
            NodeId(4), again.ids, config=h.v.config, signer=HmacSigner(NodeId(4)), verifier=HmacVerifier(),
            rng=random.Random(2), now=1.0, recovered=recovered,
        )
        again.now = 1.0
        # A competing epoch-1 checkpoint on a fork, seen after the restart.
        b1, _ = again.block(GENESIS.hash, 5, 1)
        again.block(b1, 6, 2)
        return again

    remembered = rebuilt(Recovered(hard_state=hard_state, entries=[]))
    assert remembered.sent_votes() == []
    forgetful = rebuilt(None)  # what an empty disk would do: a second vote for epoch 1
    second = forgetful.sent_votes()
    assert len(second) == 1 and slashing_condition(h.sent_votes()[0], second[0]) == "double_vote"


@pytest.mark.parametrize("behaviour", ["double_vote", "surround_vote"])
def test_a_slashable_validator_is_convicted_by_every_honest_one(behaviour: str) -> None:
    net = Network(4, seed=3, byzantine={2: behaviour})
    commands = _commands(40)
    _load(net, commands)
    net.run_until(net.now + 10.0, until=lambda: net.all_committed(commands))
    assert net.all_committed(commands)
    net.check_safety()
    verifier = HmacVerifier()
    for n in net.honest:
        core = net.core(n)
        assert core.excluded == {NodeId(2)}
        assert core.detector.detections
        evidence = core.detector.detections[0]
        # The evidence convinces anyone who holds the public keys, no trust in the reporter.
        assert verify_slashing(evidence, verifier) == behaviour
        assert evidence.offender == 2


@pytest.mark.parametrize("behaviour", ["equivocate", "silent", "withhold_votes", "bad_signatures"])
def test_other_byzantine_validators_cannot_stop_finality(behaviour: str) -> None:
    net = Network(4, seed=4, byzantine={1: behaviour})
    commands = _commands(30)
    _load(net, commands)
    net.run_until(net.now + 15.0, until=lambda: net.all_committed(commands))
    assert net.all_committed(commands)
    net.check_safety()


def test_a_proposer_that_signs_two_blocks_for_a_slot_is_convicted_and_skipped() -> None:
    # Not an FFG slashing condition: the proposer chain's own. Every other
    # epoch's checkpoint would be this proposer's (n = 4, E = 2), and its
    # twin blocks would split that epoch's votes forever if it stayed in.
    from quorate.core.evidence import Evidence, verify_evidence

    net = Network(4, seed=6, byzantine={4: "equivocate"})
    commands = _commands(40)
    _load(net, commands)
    net.run_until(net.now + 10.0, until=lambda: net.all_committed(commands))
    assert net.all_committed(commands)
    net.check_safety()
    for n in net.honest:
        core = net.core(n)
        assert core.excluded == {NodeId(4)}
        evidence = core.detector.detections[0]
        assert isinstance(evidence, Evidence) and verify_evidence(evidence, HmacVerifier())
        assert core.detections[0][1] == "block_equivocation"
