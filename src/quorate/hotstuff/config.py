"""HotStuff settings, validated once at the edge.

Theory of operation: ``HotStuffConfig`` is a frozen value; ``HotStuffReplica``
calls ``validate()`` in its constructor so a bad setting fails at start with a
message naming the field and the fix.

Pacemaker timing (HotStuff §4.4, "Pacemaker"): a replica that expects progress
waits ``view_timeout_s`` in a view before asking for the next one, and asks
again every ``view_timeout_s`` until a certificate moves it on. Once a whole
rotation of leaders failed without a new quorum certificate, the wait
doubles, up to ``max_view_timeout_s``, so that after the network stabilises
the views of honest replicas overlap long enough for an honest leader to
finish a round (the exponential back-off of §4.4 and PBFT §4.4). A new QC
resets the wait. Failures of single leaders do not double it: a rotation
holds a correct leader, so only its failure says the wait is too short.

Leaders take turns of ``views_per_leader`` consecutive views (see that field
for why the default is 2), round-robin over the leader set that leader
reputation chooses (``leader_reputation``, ``reputation_epoch_blocks``).
"""

from __future__ import annotations

from dataclasses import dataclass

from quorate.errors import ConfigError

__all__ = ["QUORUM_CERTIFICATE_KINDS", "HotStuffConfig"]

QUORUM_CERTIFICATE_KINDS = ("individual", "aggregate")


@dataclass(frozen=True, slots=True)
class HotStuffConfig:
    """Tunables of one HotStuff replica. Durations in seconds."""

    view_timeout_s: float = 1.0
    """Time a view may take before the replica times out (doubled per failed
    rotation of leaders), and the interval at which a replica that timed out
    asks again."""
    max_view_timeout_s: float = 30.0
    """Ceiling of the exponential back-off."""
    batch_max: int = 256
    """Most client commands in one block."""
    max_pending_commands: int = 65536
    """Commands a replica keeps waiting to be ordered; more are refused (flow control)."""
    max_command_bytes: int = 1 << 20
    """Larger commands are refused."""
    fetch_max_blocks: int = 64
    """Most ancestors sent in one ``BlockResponse``."""
    retained_blocks: int = 1024
    """Committed blocks kept to answer lagging replicas' fetches."""
    views_per_leader: int = 2
    """Consecutive views each leader holds in the round-robin. The 3-chain
    commit rule needs a block, its child and grandchild in consecutive views
    plus the QC collected by the next view's leader: four consecutive views
    with live leaders. With one view per leader, n = 4 and one crashed
    replica never offer that; with two, any f faulty leaders among at least
    2f + 1 leave two live leaders in a row (four views). Set 1 for the
    paper's rotation."""
    view_window: int = 1024
    """How far ahead of its view a replica keeps votes and NewViews (bounds memory
    a Byzantine sender can make it use)."""
    leader_reputation: bool = True
    """Rotate leadership over the replicas the committed chain shows proposing
    and voting (``quorate.hotstuff.reputation``); False: over every replica."""
    reputation_epoch_blocks: int = 4
    """Committed blocks per reputation epoch: the leader set is recomputed
    each time this many more blocks commit. Smaller reacts faster to a
    faulty leader; larger judges each replica on more evidence."""
    quorum_certificates: str = "individual"
    """How a QC carries its 2f + 1 signatures (``quorate.hotstuff.qc``):
    ``"individual"`` (one signature per signer, any scheme) or
    ``"aggregate"`` (one aggregate signature checked once; needs a verifier
    that aggregates, as BLS's does and the simulator's cost model with
    ``scheme = "bls"``)."""

    forward_commands: bool = True
    """Forward each client command a replica is given to the leaders that may
    next order it (this view's and the next's). False: a replica keeps its
    clients' commands in its own queue and proposes them when it leads, as
    libhotstuff's replicas do. Only for clients that send every command to
    every replica (this project's BFT clients do for HotStuff, whose leader
    rotates): each leader then has the command already, and forwarding
    would bring it n - 1 copies of every command. A command that reached
    only some replicas still reaches all of them: its replicas send their
    clients' waiting commands to every peer when their view times out."""
    batch_verify_votes: bool = False
    """A leader collecting votes checks their signatures together: the votes
    for a block it has seen proposed are aggregated and the aggregate
    checked once when a quorum is in, each vote on its own only when the
    aggregate fails (then the senders of bad votes are checked one by one
    from then on, so a Byzantine voter can force the fallback once). Needs
    ``quorum_certificates = "aggregate"``: BLS signatures on one message
    aggregate, which is what makes one check stand for 2f + 1."""

    startup_sync: bool = True
    """Ask every peer for its certificates at start (the node module's
    start-up sync). False skips it: only for a cluster whose replicas all
    boot together from empty disks (a benchmark's fresh cluster), where
    every answer would carry the genesis certificate and the sync would only
    cost n * (n - 1) messages. A replica started without it that missed
    blocks catches up only when a peer next sends it a certificate."""

    def validate(self) -> HotStuffConfig:
        """Raise ``ConfigError`` naming the first bad field; return self."""
        if self.quorum_certificates not in QUORUM_CERTIFICATE_KINDS:
            raise ConfigError(
                f"quorum_certificates must be one of {', '.join(QUORUM_CERTIFICATE_KINDS)}, got {self.quorum_certificates!r}"
            )
        if not self.view_timeout_s > 0:
            raise ConfigError(f"view_timeout_s must be > 0 seconds, got {self.view_timeout_s}")
        if not self.max_view_timeout_s >= self.view_timeout_s:
            raise ConfigError(
                f"max_view_timeout_s ({self.max_view_timeout_s}) must be >= view_timeout_s "
                f"({self.view_timeout_s}); it caps the exponential back-off"
            )
        for name in (
            "batch_max",
            "max_pending_commands",
            "max_command_bytes",
            "fetch_max_blocks",
            "retained_blocks",
            "view_window",
            "views_per_leader",
            "reputation_epoch_blocks",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("forward_commands", "batch_verify_votes"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.batch_verify_votes and self.quorum_certificates != "aggregate":
            raise ConfigError(
                'batch_verify_votes needs quorum_certificates = "aggregate" (votes are checked as one aggregate)'
            )
        if not isinstance(self.startup_sync, bool):
            raise ConfigError(f"startup_sync must be true or false, got {self.startup_sync!r}")
        if not isinstance(self.leader_reputation, bool):
            raise ConfigError(f"leader_reputation must be true or false, got {self.leader_reputation!r}")
        if self.fetch_max_blocks < 4:
            raise ConfigError(
                f"fetch_max_blocks must be >= 4 so a fetch covers a 3-chain, got {self.fetch_max_blocks}"
            )
        return self
