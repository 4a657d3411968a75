"""Percentiles of a column too long to keep: counts on a fixed grid of values.

Each value counts for the grid point nearest to it, so memory is one int64 per grid point
however many values come. Rounding is monotone, so the k-th smallest rounded value is the
rounded k-th smallest value, and a percentile (linear interpolation between two order
statistics, as pandas computes it) is within half a grid step of the exact one.
"""

from __future__ import annotations

import math

import numpy as np

# Confidences are probabilities, logged with 6 decimals: rounded here to 4 (10,001 points).
CONFIDENCE_STEP = 1e-4
_CONFIDENCE_POINTS = round(1 / CONFIDENCE_STEP)
# k / points, not linspace's k * step: each point is then the nearest float to its decimal
# (0.4749, not 0.47490000000000004), and so are the percentiles that fall on one.
CONFIDENCE_GRID = np.arange(_CONFIDENCE_POINTS + 1) / _CONFIDENCE_POINTS
# Latencies are whole milliseconds: exact below LATENCY_EXACT_BELOW, then 4 significant digits
# (up to about 115 days), which keeps the grid at 145,000 points.
LATENCY_EXACT_BELOW = 100_000
LATENCY_GRID = np.concatenate(
    [np.arange(LATENCY_EXACT_BELOW)] + [np.arange(1_000, 10_000) * 10**k for k in range(2, 7)]
).astype("float64")


class GridQuantiles:
    """Counts of values rounded to the nearest point of ``grid`` (sorted, float64).

    Values beyond the grid's ends count for its end points.
    """

    def __init__(self, grid: np.ndarray) -> None:
        self._grid = grid
        self._counts = np.zeros(len(grid), dtype="int64")

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    def add(self, values: np.ndarray) -> None:
        """Count ``values`` (float64, no NaN)."""
        grid = self._grid
        right = np.clip(np.searchsorted(grid, values), 1, len(grid) - 1)
        left = right - 1
        nearest = np.where(values - grid[left] <= grid[right] - values, left, right)
        self._counts += np.bincount(nearest, minlength=len(grid))

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the rounded values; NaN when none were added."""
        count = self.count
        if count == 0:
            return math.nan
        position = (count - 1) * q
        below, above = math.floor(position), math.ceil(position)
        # The k-th smallest value (0-based) is the first grid point whose running count > k.
        ends = np.cumsum(self._counts)
        low, high = self._grid[np.searchsorted(ends, [below, above], side="right")]
        return float(low + (high - low) * (position - below))
