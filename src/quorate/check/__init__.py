"""Checking what clients saw: history format, linearizability, reference histories.

``check_history`` reads a Jepsen-style history (JSON array or JSON Lines) and
decides whether it is linearizable for read/write/cas registers, key by key.
Keys and values are JSON, compared by the typed rule of ``quorate.check.values``
(``true`` is not ``1``; ``1`` is ``1.0``; arrays and objects structurally).
Sans-IO: no clock is read here; pass one (``time.monotonic``) to bound the time.
"""

from quorate.check.atomic_register import simulate_register_history
from quorate.check.history import (
    INF,
    HistoryError,
    Operation,
    describe,
    load_history,
    load_history_text,
)
from quorate.check.linearizability import (
    CheckResult,
    Explanation,
    Verdict,
    check_history,
    check_operations,
)

__all__ = [
    "INF",
    "CheckResult",
    "Explanation",
    "HistoryError",
    "Operation",
    "Verdict",
    "check_history",
    "check_operations",
    "describe",
    "load_history",
    "load_history_text",
    "simulate_register_history",
]
