"""Timing helper shared by the benchmark scripts: medians, never single runs."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(function: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls, in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)
