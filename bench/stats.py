"""Small statistics helpers."""

from __future__ import annotations

import math
from collections.abc import Sequence

MiB = 1024 * 1024


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), interpolated between the two nearest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
