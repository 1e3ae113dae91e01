"""One place for quorate's exceptions, split by who is to blame.

- ``LocalProtocolError``: the caller used an API wrongly (a bug in the caller).
- ``RemoteProtocolError``: a peer sent something malformed. Protocol cores never
  raise it from ``step``; they drop and count. Codecs raise it so the runtime can
  close the connection.
- ``ConfigError``: a setting a user can fix; the message says how.
- ``InvariantViolation``: the protocol broke one of its own safety properties.
  Assertions stay on in production.
"""

from __future__ import annotations


class QuorateError(Exception):
    """Base class of every error quorate raises on purpose."""


class LocalProtocolError(QuorateError, RuntimeError):
    """The caller misused an API (e.g. proposed to a core that was shut down)."""


class RemoteProtocolError(QuorateError, ValueError):
    """A peer's bytes or message are malformed, oversize or of an unknown type."""


class ConfigError(QuorateError, ValueError):
    """A configuration value is invalid; the message names it and the fix."""


class InvariantViolation(QuorateError, AssertionError):
    """A safety invariant broke. Never caught by the code that detected it."""


def invariant(condition: bool, message: str) -> None:
    """Fail loudly when ``condition`` is false (kept on in production)."""
    if not condition:
        raise InvariantViolation(message)
