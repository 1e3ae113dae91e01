"""Latency histograms with a bounded relative error (HdrHistogram).

Theory of operation: a latency is recorded in whole microseconds into an
``hdrh`` histogram (the ``hdrhistogram`` package, the Python port of Gil
Tene's HdrHistogram) that tracks 1 µs to ``HIGHEST_TRACKABLE_US`` with
``SIGNIFICANT_DIGITS`` significant digits: every percentile read back is
within 0.1 % of a recorded value, whatever the spread, in a fixed few tens
of kilobytes — so p99.99 of millions of operations costs no more than p50
of ten. Histograms from several client processes are merged by ``add``;
they cross process boundaries in HdrHistogram's own compressed encoding
(``encode`` / ``decode``, base64 text, fits in JSON).

Latencies are measured from an operation's *intended* start (its scheduled
arrival in an open-loop load), not from when a busy client got round to
sending it, so a stalled system is not flattered by the requests it kept
waiting (coordinated omission).
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_TRACKABLE_US = 1
HIGHEST_TRACKABLE_US = 600_000_000
"""Ten minutes: anything slower is clamped (and is a failure anyway)."""
SIGNIFICANT_DIGITS = 3
US_PER_S = 1_000_000
US_PER_MS = 1_000
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
"""What reports print (p50, p90, p99, p99.9, p99.99)."""


def percentile_key(percentile: float) -> str:
    """``99.9`` → ``"p99.9"``, ``50.0`` → ``"p50"``."""
    return f"p{percentile:g}"


class LatencyHistogram:
    """Latencies in seconds in, percentiles in milliseconds out."""

    __slots__ = ("_h",)

    def __init__(self, histogram: HdrHistogram | None = None) -> None:
        self._h = histogram or HdrHistogram(LOWEST_TRACKABLE_US, HIGHEST_TRACKABLE_US, SIGNIFICANT_DIGITS)

    def record_s(self, latency_s: float) -> None:
        us = round(latency_s * US_PER_S)
        self._h.record_value(min(max(us, LOWEST_TRACKABLE_US), HIGHEST_TRACKABLE_US))

    def add(self, other: LatencyHistogram) -> None:
        self._h.add(other._h)

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def percentile_ms(self, percentile: float) -> float | None:
        if self.count == 0:
            return None
        return round(float(self._h.get_value_at_percentile(percentile)) / US_PER_MS, 3)

    def summary_ms(self) -> dict[str, float | None]:
        """``p50 … p99.99``, ``mean`` and ``max`` in milliseconds (``None`` when empty)."""
        out: dict[str, float | None] = {percentile_key(p): self.percentile_ms(p) for p in PERCENTILES}
        empty = self.count == 0
        out["mean"] = None if empty else round(self._h.get_mean_value() / US_PER_MS, 3)
        out["max"] = None if empty else round(self._h.get_max_value() / US_PER_MS, 3)
        return out

    def cdf_ms(self, ticks_per_half_distance: int = 5) -> list[tuple[float, float]]:
        """(latency ms, fraction at or below) points for a CDF plot, denser
        towards the tail (HdrHistogram's percentile iterator)."""
        if self.count == 0:
            return []
        points = [
            (item.value_iterated_to / US_PER_MS, item.percentile / 100.0)
            for item in self._h.get_percentile_iterator(ticks_per_half_distance)
        ]
        return sorted(set(points))

    def encode(self) -> str:
        """HdrHistogram's compressed base64 form (``decode`` reads it back)."""
        data: Any = self._h.encode()
        return data.decode("ascii") if isinstance(data, bytes) else str(data)

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        return cls(HdrHistogram.decode(text.encode("ascii")))

    @classmethod
    def of(cls, latencies_s: list[float]) -> LatencyHistogram:
        histogram = cls()
        for latency in latencies_s:
            histogram.record_s(latency)
        return histogram
