"""Percentiles from counts on a fixed grid against pandas' exact ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gicls.audit.quantiles import (
    CONFIDENCE_GRID,
    CONFIDENCE_STEP,
    LATENCY_EXACT_BELOW,
    LATENCY_GRID,
    GridQuantiles,
)

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def _grid_quantiles(grid: np.ndarray, values: np.ndarray, parts: int) -> GridQuantiles:
    counted = GridQuantiles(grid)
    for part in np.array_split(values, parts):  # as the summary adds them, chunk by chunk
        counted.add(part)
    return counted


@pytest.mark.parametrize("size", [1, 2, 7, 10_000])
def test_confidence_percentiles_are_within_half_a_step(size: int) -> None:
    values = np.round(np.random.default_rng(size).uniform(0, 1, size), 6)  # as logged
    counted = _grid_quantiles(CONFIDENCE_GRID, values, parts=min(size, 3))

    assert counted.count == size
    for q in QUANTILES:
        exact = pd.Series(values).quantile(q)
        assert abs(counted.quantile(q) - exact) <= CONFIDENCE_STEP / 2 + 1e-12


def test_latency_median_is_exact_below_the_bound_and_close_above() -> None:
    rng = np.random.default_rng(0)
    low = rng.integers(0, LATENCY_EXACT_BELOW, 1001).astype("float64")
    high = rng.integers(LATENCY_EXACT_BELOW, 10**9, 1001).astype("float64")

    assert _grid_quantiles(LATENCY_GRID, low, 4).quantile(0.5) == np.median(low)
    approximate = _grid_quantiles(LATENCY_GRID, high, 4).quantile(0.5)
    assert approximate == pytest.approx(np.median(high), rel=5e-4)  # 4 significant digits


def test_values_beyond_the_grid_count_for_its_ends() -> None:
    counted = _grid_quantiles(CONFIDENCE_GRID, np.array([-3.0, 0.5, 7.0]), parts=1)

    assert (counted.quantile(0), counted.quantile(0.5), counted.quantile(1)) == (0.0, 0.5, 1.0)


def test_no_values_give_nan() -> None:
    assert np.isnan(GridQuantiles(CONFIDENCE_GRID).quantile(0.5))
