"""Log time for a Byzantine fault-tolerant group: rounds of signed clock readings.

Theory of operation. In a crash-fault group the leader stamps every command
with its clock and the store trusts the stamp. In a group of n = 3f + 1
replicas of which f may lie, no single replica's clock can be trusted, and
commands carry no time at all (every replica proposes the same bytes for one
request). Time enters the log instead as *readings*: a ``kv.Tick`` naming a
replica, the round it is for and that replica's clock, signed with the
replica's key (``ReplicaClock``). Every replica checks the signature before
the store counts a reading, so the outcome is the same everywhere.

A *round* collects readings from 2f + 1 distinct replicas; it then closes
with the (f + 1)-th largest of them as its time. Of any f + 1 of those
readings one is honest, so the round's time is no later than some honest
clock (f liars cannot push it ahead) and no earlier than some honest clock
(nor hold it back). Log time moves to a closed round's time when that is
later, so it never goes backwards.

Rounds happen only when time is needed (``wanted``):

- a put with a TTL does not know the current time, since log time only
  moves at rounds and may be old; its key is *pending* until a round that
  began after the put closes (the next one, or the one after if a round
  was already collecting readings), whose time plus the TTL is its deadline;
- a replica whose own clock has passed the earliest deadline proposes a
  reading for the next round, which opens it; the others join once it is
  open.

Readings for a round other than the next one, and a replica's second
reading for a round, are ignored, so readings that arrive late cannot open
rounds in a cascade. An idle group without TTL keys has no rounds.

``TimeRounds`` is the deterministic part, kept in the store and its
snapshots; ``ReplicaClock`` is what a replica needs to sign and check
readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from quorate.core.signing import Signer, Verifier
from quorate.ids import NodeId

TICK_SIGNATURE_DOMAIN = "quorate.kv-tick.v1"
_encoder = msgspec.msgpack.Encoder()


def max_faulty(replicas: int) -> int:
    """f: lying replicas a group of ``replicas`` tolerates (n >= 3f + 1)."""
    return (replicas - 1) // 3


def tick_signed_bytes(replica: int, round: int, time_s: float) -> bytes:
    """What a reading's signature covers (domain-separated from protocol statements)."""
    return _encoder.encode((TICK_SIGNATURE_DOMAIN, replica, round, time_s))


@dataclass(frozen=True, slots=True)
class ReplicaClock:
    """A replica's signer and a verifier of every replica's signatures."""

    signer: Signer
    verifier: Verifier

    @property
    def replica(self) -> int:
        return int(self.signer.node)

    def sign(self, round: int, time_s: float) -> bytes:
        return self.signer.sign(tick_signed_bytes(self.replica, round, time_s))

    def verify(self, replica: int, round: int, time_s: float, signature: bytes) -> bool:
        return self.verifier.verify(NodeId(replica), tick_signed_bytes(replica, round, time_s), signature)


class TimeRounds:
    """Rounds of readings and the TTL keys waiting for one (see the module
    docstring). ``observe`` and ``add_pending``/``cancel`` are called by the
    store as it applies the log; nothing here reads a clock."""

    __slots__ = ("faults", "pending", "readings", "round_size", "rounds")

    def __init__(self, replicas: int) -> None:
        if replicas < 1:
            raise ValueError(f"a group has at least 1 replica, got {replicas}")
        self.faults = max_faulty(replicas)
        self.round_size = replicas - self.faults
        """2f + 1 readings close a round (n - f: the liars may stay silent)."""
        self.rounds = 0
        """Rounds closed so far; readings are for round ``rounds + 1``."""
        self.readings: dict[int, float] = {}
        """replica -> its reading for the round being collected."""
        self.pending: dict[tuple[str, str], tuple[float, int]] = {}
        """(namespace, key) -> (TTL, the round whose time starts it)."""

    @property
    def wanted(self) -> bool:
        """A round is being collected or a TTL waits for one."""
        return bool(self.readings or self.pending)

    def add_pending(self, namespace: str, key: str, ttl_s: float) -> None:
        # Readings already collected may be older than this put: the next round then.
        needed = self.rounds + (2 if self.readings else 1)
        self.pending[(namespace, key)] = (ttl_s, needed)

    def cancel(self, namespace: str, key: str) -> bool:
        return self.pending.pop((namespace, key), None) is not None

    def observe(self, replica: int, round: int, time_s: float) -> tuple[float, list[tuple[str, str, float]]] | None:
        """Count an authenticated reading. When it closes the round: the
        round's time and the pending keys it starts, as (namespace, key, TTL)."""
        if round != self.rounds + 1 or replica in self.readings:
            return None
        readings = self.readings
        readings[replica] = time_s
        if len(readings) < self.round_size:
            return None
        agreed = sorted(readings.values(), reverse=True)[self.faults]
        readings.clear()
        self.rounds = round
        started = [(ns, key, ttl) for (ns, key), (ttl, needed) in self.pending.items() if needed <= round]
        for ns, key, _ in started:
            del self.pending[(ns, key)]
        return agreed, started
