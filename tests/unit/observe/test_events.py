"""Decision events in the JSON Lines log: the name and typed fields sit
beside the sentence, a field never replaces a standard key, a plain line
stays as it was, and an unknown event name is a programming error."""

from __future__ import annotations

import io
import json
import logging

import pytest

from quorate.cli.node import JsonLinesFormatter
from quorate.observe.events import EVENT_NAMES, decision


def _logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLinesFormatter())
    logger = logging.getLogger("test.events")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, out


def test_a_decision_carries_its_event_and_fields() -> None:
    logger, out = _logger()
    decision(logger, "leader.changed", "%s: leader is now %s", "n2", "n3", group=0, leader=3, term=7, msg="not me")
    logger.info("a plain line")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "leader.changed" and first["leader"] == 3 and first["term"] == 7 and first["group"] == 0
    assert first["msg"] == "n2: leader is now n3"  # the field named msg did not replace the sentence
    assert first["level"] == "info" and first["logger"] == "test.events"
    assert "event" not in second and second["msg"] == "a plain line"


def test_unknown_events_are_refused() -> None:
    logger, _ = _logger()
    with pytest.raises(ValueError, match="unknown decision event"):
        decision(logger, "leader.elected", "x")
    assert len(set(EVENT_NAMES)) == len(EVENT_NAMES)
