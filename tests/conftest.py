"""Suite-wide settings.

The default per-test timeout (pyproject's ``timeout``) guards the default
suite against a hung test. The slow suites include seed sweeps of hundreds of
simulated runs in one test, which take longer than that on a loaded machine
without being hung: a slow test without a timeout of its own gets
``SLOW_TIMEOUT_S`` instead.
"""

from __future__ import annotations

import pytest

SLOW_TIMEOUT_S = 4 * 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))
