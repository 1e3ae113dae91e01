"""Distributed key generation and resharing: every honest participant ends
with the same group key, any t shares sign with the existing threshold code
and t−1 cannot, cheating dealers are blamed and excluded, resharing keeps the
key, and the order messages arrive in within a phase does not matter."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterable, Mapping

import msgspec
import pytest
from blspy import PopSchemeMPL, PrivateKey

from quorate.crypto.bls12381 import GROUP_ORDER, private_key
from quorate.crypto.dkg import (
    Complaints,
    DkgConfig,
    DkgParticipant,
    DkgResult,
    Justification,
    Phase,
    Resharing,
    encryption_keypair,
)
from quorate.crypto.threshold import (
    FeldmanDealing,
    KeyShare,
    ThresholdPublicKey,
    ThresholdSigner,
    deal,
    interpolate,
    reconstruct_secret_key,
)
from quorate.errors import ConfigError, LocalProtocolError
from quorate.ids import NodeId

MESSAGE = b"epoch 9 checkpoint"


def _keys(nodes: Iterable[NodeId]) -> dict[NodeId, tuple[bytes, bytes]]:
    return {n: encryption_keypair(b"node %d" % n) for n in nodes}


def _config(
    members: Iterable[int],
    threshold: int,
    session: bytes = b"epoch-1",
    resharing: Resharing | None = None,
) -> tuple[DkgConfig, dict[NodeId, tuple[bytes, bytes]]]:
    member_ids = tuple(NodeId(m) for m in members)
    everyone = set(member_ids) | set(resharing.members if resharing else ())
    keys = _keys(everyone)
    config = DkgConfig(
        session, member_ids, threshold, {n: pub for n, (_, pub) in keys.items()}, resharing
    )
    return config, keys


def _participants(
    config: DkgConfig,
    keys: Mapping[NodeId, tuple[bytes, bytes]],
    seed: int = 0,
    old_shares: Mapping[NodeId, KeyShare] | None = None,
    kinds: Mapping[NodeId, type[DkgParticipant]] | None = None,
) -> dict[NodeId, DkgParticipant]:
    out = {}
    for node in config.participants:
        cls = (kinds or {}).get(node, DkgParticipant)
        out[node] = cls(
            config,
            node,
            keys[node][0],
            random.Random(seed * 1000 + node).randbytes,
            (old_shares or {}).get(node),
        )
    return out


def _run(participants: Mapping[NodeId, DkgParticipant], order_seed: int | None = None) -> None:
    """Broadcast every message to every participant (the sender too). With
    ``order_seed`` each participant takes its pending messages in its own
    random order. When nothing is in flight and a run is still open, every
    participant closes its phase at once (the agreed timeout)."""
    rng = random.Random(order_seed)
    inbox: dict[NodeId, list[tuple[NodeId, object]]] = {n: [] for n in participants}

    def collect(node: NodeId) -> None:
        out = participants[node].ready()
        for message in out.broadcasts:
            for box in inbox.values():
                box.append((node, message))

    for node, p in participants.items():
        p.start()
        collect(node)
    for _ in range(10_000):
        busy = [n for n, box in inbox.items() if box]
        if not busy:
            open_runs = [
                n for n, p in participants.items() if p.phase not in (Phase.DONE, Phase.FAILED)
            ]
            if not open_runs:
                return
            for node in open_runs:
                participants[node].close_phase()
                collect(node)
            continue
        node = rng.choice(busy) if order_seed is not None else busy[0]
        box = inbox[node]
        sender, message = box.pop(rng.randrange(len(box)) if order_seed is not None else 0)
        participants[node].step(sender, message)
        collect(node)
    raise AssertionError("the DKG did not finish")


def _results(participants: Mapping[NodeId, DkgParticipant]) -> dict[NodeId, DkgResult]:
    results = {}
    for node, p in participants.items():
        assert p.phase is Phase.DONE, (node, p.phase, p.failure)
        assert p.result is not None
        results[node] = p.result
    return results


def _digest(results: Mapping[NodeId, DkgResult]) -> dict[NodeId, tuple[object, ...]]:
    """Everything a result holds, comparable (the public key by its share keys)."""
    return {
        n: (
            r.group_public_key,
            tuple(r.public_key.share_public_key(i) for i in range(1, r.public_key.n + 1)),
            r.share,
            r.qualified,
            dict(r.disqualified),
        )
        for n, r in results.items()
    }


def _shares(results: Mapping[NodeId, DkgResult]) -> list[KeyShare]:
    return [r.share for r in results.values() if r.share is not None]


def _agreed_key(results: Mapping[NodeId, DkgResult]) -> ThresholdPublicKey:
    keys = {r.group_public_key for r in results.values()}
    assert len(keys) == 1
    commitments = {
        tuple(r.public_key.share_public_key(i) for i in range(1, r.public_key.n + 1))
        for r in results.values()
    }
    assert len(commitments) == 1
    return next(iter(results.values())).public_key


def _partials(shares: Iterable[KeyShare]) -> dict[int, bytes]:
    return {s.index: ThresholdSigner(NodeId(s.index), s).sign(MESSAGE) for s in shares}


def _assert_signs(public: ThresholdPublicKey, shares: list[KeyShare], subsets: int = 5) -> None:
    partials = _partials(shares)
    for index, partial in partials.items():
        assert public.verify_partial(index, MESSAGE, partial)
    chooser = random.Random(1)
    for _ in range(subsets):
        subset = chooser.sample(sorted(partials), public.threshold)
        signature = public.combine({i: partials[i] for i in subset})
        assert public.verify(MESSAGE, signature)


@pytest.mark.parametrize(("t", "n"), [(1, 1), (2, 3), (3, 4), (3, 5), (5, 7)])
def test_honest_run_gives_one_key_and_shares_that_sign(t: int, n: int) -> None:
    config, keys = _config(range(1, n + 1), t)
    participants = _participants(config, keys)
    _run(participants)
    results = _results(participants)
    public = _agreed_key(results)
    assert all(r.qualified == config.dealers and not r.disqualified for r in results.values())
    shares = _shares(results)
    assert sorted(s.index for s in shares) == list(range(1, n + 1))
    _assert_signs(public, shares)
    # The shares lie on one polynomial whose constant term is the group key.
    secret = PrivateKey.from_bytes(reconstruct_secret_key(shares[:t]))
    assert bytes(secret.get_g1()) == public.group_public_key


def test_t_minus_one_shares_learn_nothing_usable() -> None:
    t, n = 3, 5
    config, keys = _config(range(1, n + 1), t)
    participants = _participants(config, keys)
    _run(participants)
    results = _results(participants)
    public = _agreed_key(results)
    partials = _partials(_shares(results))
    shares = {s.index: s for s in _shares(results)}
    for subset in itertools.combinations(sorted(partials), t - 1):
        assert not public.verify(MESSAGE, interpolate({i: partials[i] for i in subset}))
        with pytest.raises(LocalProtocolError):
            public.combine({i: partials[i] for i in subset})
        guess = PrivateKey.from_bytes(reconstruct_secret_key([shares[i] for i in subset]))
        assert bytes(guess.get_g1()) != public.group_public_key
        assert not public.verify(MESSAGE, bytes(PopSchemeMPL.sign(guess, MESSAGE)))


def test_same_inputs_same_result() -> None:
    config, keys = _config([1, 2, 3, 4], 3)
    a, b = _participants(config, keys, seed=4), _participants(config, keys, seed=4)
    _run(a)
    _run(b)
    assert _digest(_results(a)) == _digest(_results(b))
    c = _participants(config, keys, seed=5)
    _run(c)
    assert _agreed_key(_results(c)).group_public_key != _agreed_key(_results(a)).group_public_key


# -- cheating dealers -------------------------------------------------------------
VICTIM = NodeId(2)


def _bad_share_to_victim(dealing: FeldmanDealing) -> FeldmanDealing:
    shares = list(dealing.shares)
    good = shares[VICTIM - 1]
    bad_value = (int.from_bytes(good.secret_key, "big") + 1) % GROUP_ORDER
    shares[VICTIM - 1] = KeyShare(good.index, bytes(private_key(bad_value)))
    return dataclasses.replace(dealing, shares=tuple(shares))


class BadShareDealer(DkgParticipant):
    """Sends the victim a share off its polynomial and, accused, reveals it."""

    def _make_dealing(self) -> FeldmanDealing:
        return _bad_share_to_victim(super()._make_dealing())


class BadShareSilentDealer(BadShareDealer):
    """Sends the victim a bad share and never answers the complaint."""

    def _justify(self) -> Justification:
        return Justification(self.config.session, ())


class GarbleThenJustifyDealer(DkgParticipant):
    """Sends the victim a bad share but, accused, reveals the right one."""

    def _make_dealing(self) -> FeldmanDealing:
        self._honest = super()._make_dealing()
        return _bad_share_to_victim(self._honest)

    def _justify(self) -> Justification:
        share = self._honest.shares[VICTIM - 1].secret_key
        return Justification(self.config.session, ((int(VICTIM), share),))


class WrongCommitmentDealer(DkgParticipant):
    """Publishes commitments of another polynomial: every share fails."""

    def _make_dealing(self) -> FeldmanDealing:
        honest = super()._make_dealing()
        other = deal(honest.threshold, len(honest.shares), seed=b"another polynomial")
        return dataclasses.replace(honest, commitments=other.commitments)


class ShortCommitmentDealer(DkgParticipant):
    """Publishes one commitment too few."""

    def _make_dealing(self) -> FeldmanDealing:
        honest = super()._make_dealing()
        return dataclasses.replace(honest, commitments=honest.commitments[:-1])


class EquivocatingDealer(DkgParticipant):
    """Broadcasts two different dealings."""

    def start(self) -> None:
        super().start()
        self._ready.broadcasts.append(self._seal(DkgParticipant._make_dealing(self)))


class SilentDealer(DkgParticipant):
    """Never deals (it still receives)."""

    def start(self) -> None:
        self._started = True


CHEATS: list[tuple[type[DkgParticipant], str]] = [
    (BadShareDealer, "revealed a bad share for the complaint of node 2"),
    (BadShareSilentDealer, "did not answer for the complaint of node 2"),
    (WrongCommitmentDealer, "revealed a bad share for the complaint of node 1"),
    (ShortCommitmentDealer, "malformed dealing: needs 3 commitments"),
    (EquivocatingDealer, "equivocation: two different dealings"),
    (SilentDealer, "no dealing"),
]


@pytest.mark.parametrize(("kind", "reason"), CHEATS, ids=[k.__name__ for k, _ in CHEATS])
def test_a_cheating_dealer_is_blamed_and_excluded(kind: type[DkgParticipant], reason: str) -> None:
    cheater = NodeId(4)
    config, keys = _config(range(1, 6), 3)
    participants = _participants(config, keys, kinds={cheater: kind})
    _run(participants)
    results = _results(participants)
    honest = {n: r for n, r in results.items() if n != cheater}
    public = _agreed_key(honest)
    for result in honest.values():
        assert result.disqualified == {cheater: reason}
        assert cheater not in result.qualified
    _assert_signs(public, _shares(honest))


def test_a_dealer_that_answers_a_complaint_correctly_stays() -> None:
    dealer = NodeId(4)
    config, keys = _config(range(1, 6), 3)
    participants = _participants(config, keys, kinds={dealer: GarbleThenJustifyDealer})
    _run(participants)
    results = _results(participants)
    public = _agreed_key(results)
    assert all(r.qualified == config.dealers and not r.disqualified for r in results.values())
    # The victim's share comes from the revealed share and signs like the others.
    _assert_signs(public, _shares(results))
    victim_share = results[VICTIM].share
    assert victim_share is not None
    index = config.share_index(VICTIM)
    assert public.verify_partial(index, MESSAGE, _partials([victim_share])[index])


def test_too_many_cheaters_fail_the_run() -> None:
    config, keys = _config(range(1, 5), 3)
    kinds = {NodeId(3): SilentDealer, NodeId(4): ShortCommitmentDealer}
    participants = _participants(config, keys, kinds=kinds)
    _run(participants)
    for node in (1, 2):
        p = participants[NodeId(node)]
        assert p.phase is Phase.FAILED and p.result is None
        assert p.failure == "only 2 qualified dealers, 3 needed"


# -- message order -----------------------------------------------------------------
def test_message_order_within_phases_does_not_matter() -> None:
    config, keys = _config(range(1, 6), 3)
    kinds = {NodeId(4): BadShareDealer, NodeId(5): GarbleThenJustifyDealer}
    outcomes = []
    for order_seed in (None, 1, 2, 3):
        participants = _participants(config, keys, seed=7, kinds=kinds)
        _run(participants, order_seed=order_seed)
        outcomes.append(_digest(_results(participants)))
    assert all(o == outcomes[0] for o in outcomes)
    assert outcomes[0][NodeId(1)][4] == {
        NodeId(4): "revealed a bad share for the complaint of node 2"
    }


# -- resharing ---------------------------------------------------------------------
def _fresh(members: list[int], t: int) -> tuple[dict[NodeId, DkgResult], tuple[NodeId, ...]]:
    config, keys = _config(members, t, session=b"epoch-1")
    participants = _participants(config, keys)
    _run(participants)
    return _results(participants), config.members


@pytest.mark.parametrize(
    ("old", "t_old", "new", "t_new"),
    [([1, 2, 3], 2, [2, 3, 4, 5, 6], 3), ([1, 2, 3, 4, 5], 3, [1, 2, 3, 4], 2)],
)
def test_resharing_keeps_the_key_and_new_shares_sign(
    old: list[int], t_old: int, new: list[int], t_new: int
) -> None:
    before, old_members = _fresh(old, t_old)
    old_public = _agreed_key(before)
    resharing = Resharing(old_members, old_public)
    config, keys = _config(new, t_new, session=b"epoch-2", resharing=resharing)
    old_shares = {n: r.share for n, r in before.items() if r.share is not None}
    participants = _participants(config, keys, seed=3, old_shares=old_shares)
    _run(participants)
    after = _results(participants)
    new_public = _agreed_key(after)
    assert new_public.group_public_key == old_public.group_public_key
    assert (new_public.threshold, new_public.n) == (t_new, len(new))
    new_shares = _shares(after)
    assert sorted(s.index for s in new_shares) == list(range(1, len(new) + 1))
    _assert_signs(new_public, new_shares)
    # A signature by the new shares is a signature under the old group key.
    partials = _partials(new_shares)
    signature = new_public.combine(partials)
    assert old_public.verify(MESSAGE, signature)
    # Members that left hold no new share; the old shares are another polynomial.
    for node in set(old) - set(new):
        assert after[NodeId(node)].share is None
    old_partials = _partials(_shares(before))
    new_partials = _partials(new_shares)
    for index, partial in old_partials.items():
        if index in new_partials:
            assert partial != new_partials[index]
            assert not new_public.verify_partial(index, MESSAGE, partial)


class OtherSecretResharer(DkgParticipant):
    """In a resharing, shares a secret other than its old share."""

    def _make_dealing(self) -> FeldmanDealing:
        return deal(self.config.threshold, len(self.config.receivers), seed=b"not my share")


def test_a_resharing_dealer_must_share_its_old_share() -> None:
    before, old_members = _fresh([1, 2, 3, 4], 2)
    old_public = _agreed_key(before)
    config, keys = _config(
        [1, 2, 3, 4, 5], 3, session=b"epoch-2", resharing=Resharing(old_members, old_public)
    )
    old_shares = {n: r.share for n, r in before.items() if r.share is not None}
    participants = _participants(
        config, keys, old_shares=old_shares, kinds={NodeId(2): OtherSecretResharer}
    )
    _run(participants)
    after = _results(participants)
    honest = {n: r for n, r in after.items() if n != 2}
    assert all(
        r.disqualified == {NodeId(2): "resharing dealing does not share the dealer's old share"}
        for r in honest.values()
    )
    public = _agreed_key(honest)
    assert public.group_public_key == old_public.group_public_key
    _assert_signs(public, _shares(honest))


def test_resharing_needs_the_old_share() -> None:
    before, old_members = _fresh([1, 2, 3], 2)
    config, keys = _config(
        [1, 2, 3], 2, session=b"epoch-2", resharing=Resharing(old_members, _agreed_key(before))
    )
    with pytest.raises(ConfigError, match="needs its old share"):
        DkgParticipant(config, NodeId(1), keys[NodeId(1)][0], random.Random(0).randbytes)


# -- bad input ----------------------------------------------------------------------
def test_bad_messages_are_rejected_with_a_reason_and_never_crash() -> None:
    config, keys = _config([1, 2, 3], 2)
    participants = _participants(config, keys)
    p = participants[NodeId(1)]
    p.start()
    dealing = p.ready().broadcasts[0]
    p.step(NodeId(1), "garbage")
    p.step(NodeId(9), dealing)
    p.step(NodeId(1), msgspec.structs.replace(dealing, session=b"epoch-0"))
    p.step(NodeId(1), dealing)
    p.step(NodeId(1), dealing)
    p.step(NodeId(2), msgspec.structs.replace(dealing, commitments=("x",), shares=(("no", 1),)))  # type: ignore[arg-type]
    p.step(NodeId(3), Justification(config.session, ()))  # for a later phase: held
    reasons = [(r.sender, r.reason) for r in p.ready().rejected]
    assert reasons == [
        (1, "not a DKG message"),
        (9, "sender takes no part in this run"),
        (1, "another session"),
        (1, "duplicate"),
    ]
    assert p.disqualified == {NodeId(2): "malformed dealing: needs 2 commitments"}
    p.close_phase()  # node 3 never dealt
    assert p.disqualified[NodeId(3)] == "no dealing"
    p.step(NodeId(3), dealing)
    assert [r.reason for r in p.ready().rejected] == ["late: the dealing phase is over"]
    p.step(NodeId(2), Complaints(config.session, (1, "x")))  # type: ignore[arg-type]
    assert [r.reason for r in p.ready().rejected] == ["malformed"]


def test_equivocation_is_named_whichever_dealing_comes_first() -> None:
    config, keys = _config([1, 2, 3], 2)
    dealer = _participants(config, keys)[NodeId(2)]
    dealer.start()
    good = dealer.ready().broadcasts[0]
    bad = msgspec.structs.replace(good, commitments=good.commitments[:1])
    for first, second in ((good, bad), (bad, good)):
        p = _participants(config, keys)[NodeId(1)]
        p.step(NodeId(2), first)
        p.step(NodeId(2), second)
        assert p.disqualified == {NodeId(2): "equivocation: two different dealings"}
