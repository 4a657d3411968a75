"""Thresholds for a target sensitivity, checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gicls.models.bundle import ClassThreshold
from gicls.training.operating_points import (
    fit_threshold,
    fit_thresholds,
    measure,
    operating_points,
)

CLASSES = ("A", "B", "C")

# Ten images of the class, scored 0.95 0.90 ... 0.50 (0.70 twice), and negatives.
POSITIVE_SCORES = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.7, 0.6, 0.55, 0.5])


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (0.1, 0.95),  # 1 of 10 at or above 0.95
        (0.3, 0.85),  # 3 of 10
        (0.6, 0.7),  # the 6th and 7th tie at 0.70: 7 of 10 >= 0.6
        (0.7, 0.7),  # 7/10 is exactly the target (no float rounding pushes it to 0.6)
        (0.75, 0.6),  # 8 of 10
        (1.0, 0.5),  # every positive
    ],
)
def test_the_largest_threshold_reaching_the_target_is_chosen(target, expected) -> None:
    scores = np.concatenate([POSITIVE_SCORES, [0.99, 0.65, 0.1]])
    positive = np.arange(len(scores)) < len(POSITIVE_SCORES)

    assert fit_threshold(scores, positive, target) == pytest.approx(expected)


def test_no_positives_means_no_threshold() -> None:
    assert fit_threshold(np.array([0.2, 0.8]), np.array([False, False]), 0.9) is None
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.4]])
    fitted = fit_thresholds(scores, np.array([0, 1]), CLASSES, {"A": 1.0, "C": 0.5})
    assert fitted == {"A": pytest.approx(0.9)}  # no image of C


def test_measure_counts_sensitivity_specificity_and_flagged_per_thousand() -> None:
    flagged = np.array([True, True, False, True, False, False, False, False])
    positive = np.array([True, True, True, False, False, False, False, False])
    figures = measure(flagged, positive)
    assert figures["sensitivity"] == pytest.approx(2 / 3)
    assert figures["specificity"] == pytest.approx(4 / 5)
    assert figures["flagged_per_1000"] == pytest.approx(375.0)  # 3 of 8


def test_thresholds_fitted_elsewhere_are_applied_to_the_served_scores() -> None:
    served = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0]])
    truth = np.array([0, 0, 1, 1])
    report = operating_points(
        np.zeros_like(served),  # raw scores are not what the daemon thresholds
        served,
        truth,
        CLASSES,
        {"A": ClassThreshold(threshold=0.55, target_sensitivity=0.9)},
        calibration_method=None,
        fitted_here=False,
        seed=0,
    )
    assert report["in_sample"] is False and report["figures"].startswith("as applied")
    figures = report["classes"]["A"]
    assert (figures["threshold"], figures["sensitivity"], figures["specificity"]) == (
        0.55,
        1.0,
        1.0,
    )
    assert figures["flagged_per_1000"] == pytest.approx(500.0)
    assert list(report["classes"]) == ["A"]


def _point(name: str, threshold: float, target: float) -> dict[str, ClassThreshold]:
    return {name: ClassThreshold(threshold=threshold, target_sensitivity=target)}


def test_figures_on_the_fitting_images_are_cross_fitted_or_labelled_in_sample() -> None:
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 40)
    raw = np.clip(np.eye(3)[truth] * 0.5 + rng.uniform(0, 0.5, (120, 3)), 0, 1)
    crossed = operating_points(
        raw, raw, truth, CLASSES, _point("B", 0.5, 0.9), None, fitted_here=True, seed=0
    )
    assert crossed["in_sample"] is False and crossed["figures"] == "cross-fitted on this split"
    # Each fold's threshold keeps >= 90 % of its own fitting positives, so about 90 % held out.
    assert 0.75 <= crossed["classes"]["B"]["sensitivity"] <= 1.0

    one_of_c = np.array([0, 0, 1, 1, 2])
    small = operating_points(
        raw[:5], raw[:5], one_of_c, CLASSES, _point("A", 0.0, 1.0), None, True, 0
    )
    assert small["in_sample"] is True and small["figures"].startswith("in-sample")
    assert small["classes"]["A"]["flagged_per_1000"] == 1000.0  # threshold 0 flags everything
