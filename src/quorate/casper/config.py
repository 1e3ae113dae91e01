"""Casper FFG settings, validated once at the edge.

Theory of operation: ``CasperConfig`` is a frozen value; ``CasperValidator``
calls ``validate()`` in its constructor so a bad setting fails at start with
a message naming the field and the fix.

- Epochs are ``epoch_blocks`` blocks long, as the paper's checkpoints are
  the blocks at heights that are multiples of 100 (§2): epoch e's
  checkpoint is the block at height e · E on a chain. Slots (which name
  proposers) are not tied to heights: a slot whose proposer is down has no
  block, and a sans-IO validator has no shared clock to number slots by.
- A proposer waits at most ``justify_wait_s`` for the previous checkpoint to
  be justified before it builds the next checkpoint block, so votes for the
  new one can name the previous as their source (which is what finalizes
  it) and the block can carry its proof.
- The slot timer (``slot_timeout_s``) runs only while a validator expects
  progress; on expiry it moves to the next slot (the next proposer), tells
  its peers its view (``Status``) and re-sends its latest vote. It doubles
  after every full rotation of proposers without a new block, up to
  ``max_slot_timeout_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

from quorate.errors import ConfigError

__all__ = ["CasperConfig"]


@dataclass(frozen=True, slots=True)
class CasperConfig:
    """Tunables of one Casper FFG validator. Durations in seconds."""

    epoch_blocks: int = 2
    """Blocks per epoch (E): checkpoints are the blocks at heights e · E."""
    slot_timeout_s: float = 1.0
    """How long a slot may pass without a block before the validator moves on."""
    max_slot_timeout_s: float = 30.0
    """Ceiling of the exponential back-off."""
    justify_wait_s: float = 0.5
    """Longest a proposer holds a checkpoint block waiting for the previous
    checkpoint's justification."""
    batch_max: int = 256
    """Most client commands in one block."""
    forward_commands: bool = True
    """Forward each client command a validator is given to the proposers of
    its current and next slots. False: a validator keeps its clients'
    commands in its own queue and puts them in a block when it proposes.
    Only for clients that send every command to every validator (this
    project's BFT clients do when no primary is named): each proposer then
    has the command already, and forwarding would bring it n - 1 copies of
    every command. A command that reached only some validators still
    reaches all of them: its validators send their clients' waiting
    commands to every peer when their slot times out."""
    max_pending_commands: int = 65536
    """Commands a validator keeps waiting to be ordered; more are refused (flow control)."""
    max_command_bytes: int = 1 << 20
    """Larger commands are refused."""
    fetch_max_blocks: int = 64
    """Most ancestors sent in one ``BlockResponse``."""
    retained_blocks: int = 1024
    """Finalized blocks kept to answer lagging validators' fetches."""
    slot_window: int = 1 << 16
    """How far ahead of its slot a validator accepts blocks (bounds how far a
    Byzantine proposer can push slot numbers)."""
    slashing_window_epochs: int = 64
    """Target epochs of each validator's votes kept to check new ones against."""

    def validate(self) -> CasperConfig:
        """Raise ``ConfigError`` naming the first bad field; return self."""
        for name in ("slot_timeout_s", "justify_wait_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {value!r}")
        if not self.max_slot_timeout_s >= self.slot_timeout_s:
            raise ConfigError(
                f"max_slot_timeout_s ({self.max_slot_timeout_s}) must be >= slot_timeout_s "
                f"({self.slot_timeout_s}); it caps the exponential back-off"
            )
        if self.justify_wait_s >= self.slot_timeout_s:
            raise ConfigError(
                f"justify_wait_s ({self.justify_wait_s}) must be below slot_timeout_s "
                f"({self.slot_timeout_s}), or a waiting proposer would lose its slot"
            )
        if not isinstance(self.forward_commands, bool):
            raise ConfigError(f"forward_commands must be true or false, got {self.forward_commands!r}")
        for name in (
            "epoch_blocks",
            "batch_max",
            "max_pending_commands",
            "max_command_bytes",
            "fetch_max_blocks",
            "retained_blocks",
            "slot_window",
            "slashing_window_epochs",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.fetch_max_blocks < 2 * self.epoch_blocks:
            raise ConfigError(
                f"fetch_max_blocks ({self.fetch_max_blocks}) must cover two epochs "
                f"(2 * epoch_blocks = {2 * self.epoch_blocks})"
            )
        return self
