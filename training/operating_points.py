"""Operating points: one threshold per class on calibrated scores, fitted for a sensitivity.

``[decision] target_sensitivity`` names the classes a reader must not miss. For each, the
threshold is the largest score that keeps at least the target share of that class's held-out
images at or above it (an image is *flagged* for a class when its score >= the threshold).
Thresholds are fitted on the scores the daemon sees, the calibrated ones, and travel in the
bundle; the daemon lists every flagged class in the audit row.

Reported figures per class: achieved sensitivity, specificity, and frames flagged per 1,000
(the reading load). Like the calibrated metrics, they are cross-fitted when the thresholds were
fitted on the very images being evaluated: on each of the calibration's folds the calibration
and the thresholds are fitted on the other folds and measured on this one, so no figure is
measured on the images its threshold saw. Where no folds exist they are labelled in-sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gicls.models.bundle import ClassThreshold
from gicls.training.calibration import (
    IN_SAMPLE,
    apply_calibration,
    cross_fit_folds,
    fit_calibration,
)

PER_FRAMES = 1000


def fit_threshold(scores: np.ndarray, positive: np.ndarray, target: float) -> float | None:
    """The largest ``t`` with ``mean(scores[positive] >= t) >= target``; None without positives.

    ``scores``: (N,) one class's calibrated scores; ``positive``: (N,) bool, images of the class.
    """
    ranked = np.sort(scores[positive])[::-1]
    if len(ranked) == 0:
        return None
    # Sensitivity at the i-th highest positive score is at least (i + 1) / n (ties only add),
    # and any higher threshold keeps fewer positives: the first one reaching the target wins.
    reached = np.arange(1, len(ranked) + 1) / len(ranked) >= target
    return float(ranked[int(np.argmax(reached))])


def fit_thresholds(
    scores: np.ndarray, truth: np.ndarray, classes: Sequence[str], targets: Mapping[str, float]
) -> dict[str, float]:
    """Thresholds for the ``targets`` classes that have held-out images, in class order.

    ``scores``: (N, C) calibrated, in class order; ``truth``: (N,) class indices.
    """
    fitted = {}
    for index, name in enumerate(classes):
        if name in targets:
            threshold = fit_threshold(scores[:, index], truth == index, targets[name])
            if threshold is not None:
                fitted[name] = threshold
    return fitted


def bundle_thresholds(
    served: np.ndarray, truth: np.ndarray, classes: Sequence[str], targets: Mapping[str, float]
) -> dict[str, ClassThreshold] | None:
    """The manifest field ``thresholds``: fitted on ``served`` (N, C), the calibrated held-out
    scores the daemon will see; None without targets."""
    if not targets:
        return None
    fitted = fit_thresholds(served, truth, classes, targets)
    return {
        name: ClassThreshold(threshold=value, target_sensitivity=targets[name])
        for name, value in fitted.items()
    }


def measure(flagged: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    """Sensitivity, specificity (None without negatives) and flagged per 1,000 of one class."""
    negatives = ~positive
    return {
        "sensitivity": float(flagged[positive].mean()) if positive.any() else None,
        "specificity": float((~flagged[negatives]).mean()) if negatives.any() else None,
        "flagged_per_1000": float(PER_FRAMES * flagged.mean()) if len(flagged) else None,
        "positives": int(positive.sum()),
        "images": len(flagged),
    }


def operating_points(
    raw: np.ndarray,
    served: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[str],
    thresholds: Mapping[str, ClassThreshold],
    calibration_method: str | None,
    fitted_here: bool,
    seed: int,
) -> dict[str, Any]:
    """The report of the thresholds' operating points on these images.

    ``raw``: (N, C) uncalibrated scores; ``served``: the same with the bundle's calibration
    (what the daemon sees). ``thresholds`` and ``calibration_method`` are the bundle's. With
    ``fitted_here`` (the thresholds were fitted on these images) the figures are cross-fitted
    over the calibration's folds, refitting calibration and thresholds for ``targets`` on the
    other folds; otherwise ``served`` is flagged with ``thresholds`` as they are.
    """
    targets = {name: point.target_sensitivity for name, point in thresholds.items()}
    values = {name: point.threshold for name, point in thresholds.items()}
    folds = cross_fit_folds(truth, len(classes), seed) if fitted_here else []
    if folds:
        flagged = _cross_fitted_flags(raw, truth, classes, targets, calibration_method, folds)
        figures, in_sample = "cross-fitted on this split", False
    else:
        flagged = served >= _threshold_row(values, classes)
        figures, in_sample = (
            (
                IN_SAMPLE + " (thresholds fitted and measured on these images: a class has fewer "
                "than 2 of them, too few to cross-fit)",
                True,
            )
            if fitted_here
            else ("as applied (the bundle's thresholds, not fitted on these images)", False)
        )
    per_class = {}
    for index, name in enumerate(classes):
        if name not in thresholds:
            continue
        per_class[name] = {
            "target_sensitivity": targets[name],
            "threshold": values[name],
            **measure(flagged[:, index], truth == index),
        }
    return {"figures": figures, "in_sample": in_sample, "classes": per_class}


def _threshold_row(thresholds: Mapping[str, float], classes: Sequence[str]) -> np.ndarray:
    """(C,) thresholds in class order; classes without one are never flagged (+inf)."""
    return np.array([thresholds.get(name, np.inf) for name in classes])


def _cross_fitted_flags(
    raw: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[str],
    targets: Mapping[str, float],
    calibration_method: str | None,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    flagged = np.zeros(raw.shape, dtype=bool)
    for fit_rows, apply_rows in folds:
        scores = raw
        if calibration_method is not None:
            maps = fit_calibration(raw[fit_rows], truth[fit_rows], classes, calibration_method)
            scores = apply_calibration(raw, maps, classes)
        fold_thresholds = fit_thresholds(scores[fit_rows], truth[fit_rows], classes, targets)
        flagged[apply_rows] = scores[apply_rows] >= _threshold_row(fold_thresholds, classes)
    return flagged
