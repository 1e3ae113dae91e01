"""PBFT MAC authenticators for simulated replicas, with their CPU cost.

Theory of operation (Castro & Liskov, TOCS 2002 §3.2): with
``PbftConfig(authentication="macs")`` a replica authenticates each
pre-prepare, prepare and commit with one HMAC-SHA256 per receiver instead of
a signature. The simulator gives every replica a ``MeteredMacAuthenticator``: real MACs
(``quorate.crypto.mac.SessionKeys``) over pairwise session keys derived from
the run's seed, so a forged or reflected commit is rejected exactly as on
real nodes, and the CPU time ``quorate bench crypto`` measured for HMAC
(``CryptoCosts.mac_create_per_receiver_s`` per receiver when sending,
``CryptoCosts.mac_verify_s`` per check) charged to the replica's
``CpuMeter``, the same meter its cost-model signer and verifier charge, so
the simulated node is busy for as long as the real one would be.

Invariant: one seed gives the same keys on every replica (a run replays bit
for bit), and distinct seeds give unrelated keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from quorate.crypto.costmodel import CpuMeter, CryptoCosts
from quorate.crypto.mac import Authenticator, SessionKeys, pairwise_session_keys
from quorate.ids import NodeId

_SESSION_SECRET_DOMAIN = b"quorate/sim/pbft-session-keys/v1:"


def session_secret(seed: int) -> bytes:
    """The cluster secret the session keys of a run with ``seed`` derive from."""
    return _SESSION_SECRET_DOMAIN + str(seed).encode()


class MeteredMacAuthenticator:
    """A PBFT ``MacAuthenticator`` for ``node`` that charges ``meter``."""

    __slots__ = ("_costs", "_keys", "_meter")

    def __init__(
        self,
        node: NodeId,
        replicas: Sequence[NodeId],
        secret: bytes,
        meter: CpuMeter,
        costs: CryptoCosts | None = None,
    ) -> None:
        peers = [r for r in replicas if r != node]
        self._keys = SessionKeys(node, pairwise_session_keys(secret, node, peers))
        self._meter = meter
        self._costs = costs or CryptoCosts()

    def macs(self, data: bytes, receivers: Sequence[NodeId]) -> Mapping[int, bytes]:
        """One MAC per receiver (the ``macs`` of a pre-prepare, prepare or commit)."""
        self._meter.charge(self._costs.mac_create_per_receiver_s * len(receivers))
        return {int(r): self._keys.mac(r, data) for r in receivers}

    def check(self, sender: NodeId, data: bytes, macs: Mapping[int, bytes]) -> bool:
        """True iff ``macs`` holds a valid MAC from ``sender`` for this node."""
        self._meter.charge(self._costs.mac_verify_s)
        return self._keys.verify_entry(sender, data, Authenticator(dict(macs)))
