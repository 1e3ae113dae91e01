"""PBFT settings, validated once at the edge.

Theory of operation: ``PbftConfig`` is a frozen value; ``PbftReplica`` calls
``validate(n)`` in its constructor so a bad setting fails at start with a
message that names the field and the fix.

- Batching (Castro & Liskov, TOCS 2002, §5.1.4): the primary puts up to
  ``batch_max`` client commands in one pre-prepare and waits at most
  ``batch_timeout_s`` for a batch to fill.
- Checkpoints (§4.3): every ``checkpoint_interval`` (K) sequence numbers; the
  sequence window above the stable checkpoint is L = ``window_size`` (8K
  when 0; the low and high water marks h and h + L; the paper takes 2K). K and L do different
  jobs: L bounds how many batches are in flight, K how long a batch's
  certificate stays in the durable hard state after it executed (until the
  next stable checkpoint). Every Ready rewrites the hard state, so a small K
  with a large L keeps pipelining deep and fsyncs small.
- View changes (§4.4, §4.5.2): a backup waiting for a request longer than
  ``view_change_timeout_s`` suspects the primary; a view change that does not
  end within the timeout moves to the next view with the timeout doubled.
- Slow primary (after Prime and Aardvark): a backup also suspects a primary
  that orders the requests it forwards far more slowly than the backups
  prepare a batch (``slow_primary_factor``, ``slow_primary_min_delay_s``);
  without it a primary that holds each pre-prepare until just before T
  keeps its view.
- Retransmission (§5.2): a replica that made no progress for
  ``retransmit_interval_s`` re-sends its own latest messages, so lost
  messages cost time, not liveness.
- Authentication (§3.2 of the TOCS paper, MAC authenticators):
  ``authentication="signatures"`` signs every message; ``"macs"``
  authenticates pre-prepares, prepares and commits with authenticators (one
  MAC per receiver, made by an injected ``MacAuthenticator``) and uses the
  paper's view change for MACs (``quorate.pbft.view_change``). Checkpoints,
  view changes and new-views stay signed: they are the proofs third parties
  must check.
"""

from __future__ import annotations

from dataclasses import dataclass

from quorate.core.quorum import max_faulty
from quorate.errors import ConfigError

AUTH_SIGNATURES = "signatures"
AUTH_MACS = "macs"
AUTHENTICATION_MODES = (AUTH_SIGNATURES, AUTH_MACS)
WINDOW_CHECKPOINTS = 8
"""The default window L in checkpoint intervals."""


@dataclass(frozen=True, slots=True)
class PbftConfig:
    """Tunables of one PBFT replica. Durations in seconds."""

    batch_max: int = 128
    """Most client commands in one pre-prepare."""
    batch_timeout_s: float = 0.002
    """How long the primary waits for a batch to fill (0: send at once)."""
    checkpoint_interval: int = 8
    """K: a checkpoint every K sequence numbers."""
    window_size: int = 0
    """L: how far above the stable checkpoint sequence numbers are accepted;
    a multiple of K, at least K; 0 means 8K (64 with the default K)."""
    view_change_timeout_s: float = 1.0
    """T: how long a backup waits for a request before suspecting the primary;
    successive failed view changes wait 2T, 4T, ..."""
    retransmit_interval_s: float = 0.25
    """A replica with unfinished work and no progress for this long re-sends
    its own latest messages."""
    max_command_bytes: int = 1 << 20
    """Larger client commands are refused (and dropped inside pre-prepares)."""
    max_pending: int = 4096
    """Most client commands a replica holds waiting to be ordered."""
    max_pending_per_peer: int = 1024
    """Most forwarded commands from one peer waiting at the primary (a
    flooding replica cannot crowd out the others)."""
    retained_entries: int = 1 << 16
    """Committed entries kept in memory to serve state transfer to replicas
    that fell behind (§5.3.2). A replica further behind than this cannot catch up
    from its peers' memory."""
    max_view_change_backoff: int = 10
    """The view-change timeout doubles at most this many times."""
    slow_primary_factor: float = 8.0
    """A backup suspects a primary whose median ordering delay (from forwarding
    a request to the pre-prepare that assigns it) exceeds this many times the
    median time a batch takes to prepare, plus ``batch_timeout_s``
    (0: only the view-change timeout deposes a primary)."""
    slow_primary_min_delay_s: float = 0.1
    """...and exceeds this, so that a primary is never suspected for delays
    too short to matter, however fast the preparing round is."""
    authentication: str = AUTH_SIGNATURES
    """How the normal case is authenticated: ``"signatures"`` (every message
    signed: prepared certificates travel in view changes, commit certificates
    can be relayed to replicas that missed them, and equivocation in any
    phase is provable) or ``"macs"`` (pre-prepares, prepares and commits carry
    an authenticator, about a microsecond per MAC instead of a signature and
    its verifications; view changes carry signed claims instead of
    certificates, commit certificates are not relayed — a lagging replica
    executes a batch once f + 1 replicas vouch for it, or catches up from
    checkpoints — and only signed messages (checkpoints, view changes,
    new-views) can prove equivocation)."""

    @property
    def window(self) -> int:
        """L: sequence numbers n with h < n <= h + L are accepted."""
        return self.window_size or WINDOW_CHECKPOINTS * self.checkpoint_interval

    def validate(self, n: int) -> PbftConfig:
        """Raise ``ConfigError`` naming the first bad field for ``n`` replicas."""
        if n < 1:
            raise ConfigError(f"a PBFT group needs at least 1 replica, got {n}")
        f = max_faulty(n)
        if n < 3 * f + 1:  # pragma: no cover - max_faulty guarantees it
            raise ConfigError(f"n={n} replicas cannot tolerate f={f} faults (needs 3f+1)")
        for name in (
            "batch_max",
            "checkpoint_interval",
            "max_command_bytes",
            "max_pending",
            "max_pending_per_peer",
            "retained_entries",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        k, size = self.checkpoint_interval, self.window_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or (size and (size < k or size % k)):
            raise ConfigError(
                f"window_size must be 0 ({WINDOW_CHECKPOINTS} x checkpoint_interval) or a multiple of checkpoint_interval "
                f"({k}) at least as large, got {size!r}"
            )
        if not isinstance(self.max_view_change_backoff, int) or self.max_view_change_backoff < 0:
            raise ConfigError(
                f"max_view_change_backoff must be an integer >= 0, got {self.max_view_change_backoff!r}"
            )
        if self.authentication not in AUTHENTICATION_MODES:
            raise ConfigError(
                f"authentication must be one of {', '.join(AUTHENTICATION_MODES)}, got {self.authentication!r}"
            )
        if not (self.slow_primary_factor >= 0 and self.slow_primary_min_delay_s >= 0):
            raise ConfigError(
                "slow_primary_factor and slow_primary_min_delay_s must be >= 0 "
                f"(0 turns slow-primary suspicion off), got {self.slow_primary_factor} and "
                f"{self.slow_primary_min_delay_s}"
            )
        if not self.batch_timeout_s >= 0:
            raise ConfigError(f"batch_timeout_s must be >= 0 seconds, got {self.batch_timeout_s}")
        if not self.view_change_timeout_s > 0:
            raise ConfigError(
                f"view_change_timeout_s must be > 0 seconds, got {self.view_change_timeout_s}"
            )
        if not self.batch_timeout_s < self.view_change_timeout_s:
            raise ConfigError(
                f"batch_timeout_s ({self.batch_timeout_s}) must be below view_change_timeout_s "
                f"({self.view_change_timeout_s}) or backups suspect a healthy primary"
            )
        if not 0 < self.retransmit_interval_s < self.view_change_timeout_s:
            raise ConfigError(
                f"retransmit_interval_s must be > 0 and below view_change_timeout_s "
                f"({self.view_change_timeout_s}); got {self.retransmit_interval_s}. "
                "A quarter of the view-change timeout is typical."
            )
        return self
