"""Decision events: the lines of a node's JSON Lines log that a program reads.

Theory of operation. A node logs for people (``msg``, a sentence) and, where
it decides something that matters, for programs too: ``decision`` attaches
an event name and typed fields to the record, and the node's formatter
(``quorate.cli.node.JsonLinesFormatter``) writes them beside ``ts``,
``level``, ``logger`` and ``msg``, so ``jq 'select(.event == "leader.changed")'``
finds every leader change without parsing sentences. The names, each with
its fields:

- ``node.listening`` (address, protocol, tls) and ``node.stopping``
  (uptime_s);
- ``leader.changed`` (group, leader, term): this node sees a new leader or
  primary (None while it knows none);
- ``membership.accepted`` (group, change): a membership change this node
  proposed as leader;
- ``snapshot.installed`` (group): the group's state was replaced by a
  snapshot (the leader's, or this node's own at a restart);
- ``input.rejected`` (group, message_type, sender, reason): the first input
  refused for each reason (later ones are counted, not logged);
- ``evidence.detected`` (offender, statement, height, round) and
  ``evidence.recorded`` (offender, index): a proof of equivocation held by
  this node, and the log position at which the cluster recorded it;
- ``keys.revoked`` / ``keys.activated`` (node, kind, index) and
  ``keys.switched`` (kind, index): the key registry's decisions as applied
  here;
- ``dkg.done`` (session, group_public_key, qualified, disqualified) and
  ``dkg.failed`` (session, reason).

Field values are JSON scalars or lists of them; a field never replaces one
of the four standard keys.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["EVENT_NAMES", "decision", "event_fields"]

EVENT_NAMES = (
    "node.listening", "node.stopping", "leader.changed", "membership.accepted", "snapshot.installed",
    "input.rejected", "evidence.detected", "evidence.recorded", "keys.revoked", "keys.activated",
    "keys.switched", "dkg.done", "dkg.failed",
)


def decision(
    logger: logging.Logger, event: str, message: str, *args: Any, level: int = logging.INFO, **fields: Any
) -> None:
    """Log ``message % args`` at ``level`` as the decision event ``event`` with ``fields``."""
    if event not in EVENT_NAMES:
        raise ValueError(f"unknown decision event {event!r}")
    logger.log(level, message, *args, extra={"quorate_event": event, "quorate_fields": fields})


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event name and fields a record carries ({} for a plain line)."""
    event = getattr(record, "quorate_event", None)
    if event is None:
        return {}
    return {"event": event, **getattr(record, "quorate_fields", {})}
