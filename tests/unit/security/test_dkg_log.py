"""The DKG transcript machine: signed starts and posts only, bounded, the
same after a snapshot; and the deterministic dealing stream."""

from __future__ import annotations

import secrets

from quorate.crypto.dkg import Complaints
from quorate.ids import NodeId
from quorate.security.dkg_log import (
    DkgMachine,
    dealing_random,
    encode_dkg_command,
    make_close,
    make_post,
    make_start,
)
from quorate.security.keyregistry import KeyRegistry, public_key_of

SEEDS = {n: secrets.token_bytes(32) for n in (1, 2, 3)}


def _machine() -> DkgMachine:
    return DkgMachine(KeyRegistry({NodeId(n): public_key_of(s) for n, s in SEEDS.items()}))


def test_a_transcript_holds_signed_posts_once_and_survives_a_snapshot() -> None:
    machine = _machine()
    cluster = machine.registry.cluster
    assert machine.apply(1, 0.0, encode_dkg_command(make_start(cluster, "e1", (1, 2, 3), 2, 1, SEEDS[1]))).ok
    post = encode_dkg_command(make_post(cluster, "e1", 2, Complaints(b"e1", ()), SEEDS[2]))
    assert machine.apply(2, 0.0, post).ok
    assert machine.apply(3, 0.0, post).value == "already posted"
    assert machine.apply(4, 0.0, encode_dkg_command(make_close(cluster, "e1", "dealing", 3, SEEDS[3]))).ok
    assert [kind for kind, _, _ in machine.sessions["e1"].transcript] == ["post", "close"]
    copy = _machine()
    copy.restore(machine.snapshot())
    assert copy.sessions["e1"].transcript == machine.sessions["e1"].transcript
    assert copy.apply(5, 0.0, post).value == "already posted"
    assert _machine().snapshot() is None


def test_bad_commands_are_refused_with_their_reason() -> None:
    machine = _machine()
    cluster = machine.registry.cluster
    stranger = secrets.token_bytes(32)
    cases = [
        (b"\x00garbage", "malformed DKG command"),
        (encode_dkg_command(make_start(cluster, "e1", (1, 2, 3), 2, 1, stranger)), "DKG start not signed by the starter's current key"),
        (encode_dkg_command(make_start(cluster, "e1", (1, 2, 9), 2, 1, SEEDS[1])), "DKG members must be distinct current members"),
        (encode_dkg_command(make_start(cluster, "e1", (1, 2, 3), 4, 1, SEEDS[1])), "DKG threshold must be between 1 and the member count"),
        (encode_dkg_command(make_post(cluster, "e9", 2, Complaints(b"e9", ()), SEEDS[2])), "no such DKG session"),
        (encode_dkg_command(make_start(cluster, "e2", (1, 2), 2, 1, SEEDS[1], reshare="e7", old_commitments=(b"x",))), "no such DKG session to reshare"),
    ]
    for data, reason in cases:
        result = machine.apply(1, 0.0, data)
        assert (result.ok, result.error) == (False, reason)
    assert machine.apply(2, 0.0, encode_dkg_command(make_start(cluster, "e1", (1, 2), 2, 1, SEEDS[1]))).ok
    forged = make_post(cluster, "e1", 2, Complaints(b"e1", ()), stranger)
    assert machine.apply(3, 0.0, encode_dkg_command(forged)).error == "DKG message not signed by the sender's current key"
    outsider = make_post(cluster, "e1", 3, Complaints(b"e1", ()), SEEDS[3])
    assert machine.apply(4, 0.0, encode_dkg_command(outsider)).error == "sender is not a participant of the session"
    assert sum(machine.refused.values()) == len(cases) + 2


def test_the_dealing_stream_is_fixed_by_seed_and_session() -> None:
    seed = secrets.token_bytes(32)
    first = dealing_random(seed, "e1")
    again = dealing_random(seed, "e1")
    assert first(10) + first(100) == again(110)
    assert dealing_random(seed, "e2")(32) != dealing_random(seed, "e1")(32)
    assert dealing_random(secrets.token_bytes(32), "e1")(32) != dealing_random(seed, "e1")(32)
