"""The core's settings: rules every member must share, and a replica's own timing.

Theory of operation. ``CoreRules`` decide what the core state machine does
(bounds on transactions, the epoch length, timeouts in core log time, the
shards' commit rule, reputation weights), so they are part of the replicated
state: genesis fixes them and every later core inherits them in its starting
snapshot; two members can never apply the log under different rules.
``CoreConfig`` is a replica's local timing (how long it waits for a
certificate before asking another collector, how long a key generation phase
may stall before it asks the core to close it); members may differ there.
Both are validated once, at the edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec

from quorate.errors import ConfigError
from quorate.hrb.reputation import ReputationWeights

__all__ = ["SHARD_QUORUMS", "CoreConfig", "CoreRules"]

SHARD_QUORUMS = ("majority", "byzantine")


class CoreRules(msgspec.Struct, array_like=True, frozen=True):
    """What every core member applies the log under (part of the snapshot)."""

    core_size: int = 7
    """C: members chosen for each epoch (fewer if fewer nodes are eligible)."""
    epoch_length: int = 1000
    """Decisions per epoch; the core then chooses and keys the next one."""
    tick_interval_s: float = 0.25
    """One tick of the core's log clock (members propose ``Tick``s this often
    while something waits for time)."""
    txn_timeout_s: float = 5.0
    """An undecided transaction aborts after this much core log time."""
    epoch_change_timeout_s: float = 30.0
    """An epoch change attempt not finished in this much log time starts over
    (members chosen again; those who sat it out are penalised)."""
    shard_quorum: str = "majority"
    """The shards' commit rule: ``majority`` (a shard vote is proven by its
    leader's signature) or ``byzantine`` (plus 2f + 1 members' signatures)."""
    max_txn_bytes: int = 64 * 1024
    max_txn_ops: int = 64
    max_key_bytes: int = 1024
    max_reason_bytes: int = 256
    max_open_txns: int = 65536
    decided_kept: int = 1 << 20
    """Decided transaction ids remembered (a retry older than this would begin again)."""
    max_failed_accusations: int = 16
    """An accuser with this many failed accusations is no longer heard."""
    report_cap: int = 16
    """Most challenges one ``ReputationReport`` may count for one node."""
    evidence_kinds: tuple[str, ...] = ()
    """Statement kinds accepted as equivocation evidence (empty: every kind;
    every signed statement in quorate has a slot an honest node signs once)."""
    weights: ReputationWeights = ReputationWeights()

    def validate(self) -> CoreRules:
        """Raise ``ConfigError`` naming the first bad field; return self."""
        for name in (
            "core_size",
            "epoch_length",
            "max_txn_bytes",
            "max_txn_ops",
            "max_key_bytes",
            "max_reason_bytes",
            "max_open_txns",
            "decided_kept",
            "max_failed_accusations",
            "report_cap",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"core rule {name} must be a positive integer, got {value!r}")
        for name in ("tick_interval_s", "txn_timeout_s", "epoch_change_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"core rule {name} must be > 0 seconds, got {value!r}")
        if self.shard_quorum not in SHARD_QUORUMS:
            raise ConfigError(f"shard_quorum must be one of {', '.join(SHARD_QUORUMS)}, got {self.shard_quorum!r}")
        self.weights.validate()
        return self

    def ticks(self, seconds: float) -> int:
        """``seconds`` of log time in ticks (rounded up, at least one)."""
        return max(1, math.ceil(seconds / self.tick_interval_s - 1e-9))

    @property
    def txn_timeout_ticks(self) -> int:
        return self.ticks(self.txn_timeout_s)

    @property
    def epoch_change_timeout_ticks(self) -> int:
        return self.ticks(self.epoch_change_timeout_s)


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """One replica's timing (seconds) and memory bounds."""

    certificate_timeout_s: float = 1.0
    """Waiting this long for a decision's certificate, a member sends its
    partial to the next collector in line (doubling each time)."""
    max_certificate_timeout_s: float = 16.0
    dkg_phase_timeout_s: float = 2.0
    """A next member whose key generation sits this long in one phase asks
    the core to close the phase."""
    join_retry_s: float = 1.0
    """A next member missing relayed items or the handover asks again this often."""
    certificates_kept: int = 8192
    """Certificates kept to answer ``CertificateRequest``s (oldest dropped)."""
    partial_window: int = 4096
    """Partials accepted for decisions this far beyond the last one applied."""

    def validate(self) -> CoreConfig:
        for name in ("certificate_timeout_s", "max_certificate_timeout_s", "dkg_phase_timeout_s", "join_retry_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {value!r}")
        if self.max_certificate_timeout_s < self.certificate_timeout_s:
            raise ConfigError("max_certificate_timeout_s must be >= certificate_timeout_s")
        for name in ("certificates_kept", "partial_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        return self
