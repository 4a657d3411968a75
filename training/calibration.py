"""Per-class score calibration fitted on the held-out split.

The ten sigmoid outputs come from ten separately trained models, so a 0.8 from one is not a
0.8 from another, yet the ensemble's decision is their argmax. A per-class affine map on the
logit, ``calibrated = sigmoid(scale * logit(p) + shift)``, makes them comparable:
``temperature`` fits the scale only (ranking within a class unchanged), ``platt`` fits both.

Scores used to *report* calibrated metrics are cross-fitted (each fold calibrated by maps
fitted on the other folds), so the figures are never measured on the data the maps saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from gicls.models.bundle import Calibration, ClassCalibration

_EPSILON = 1e-7
CROSS_FIT_FOLDS = 5
MIN_SCALE = 1e-3
# How figures measured on the images the calibration maps were fitted on are labelled.
IN_SAMPLE = "in-sample"


def logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores.astype(np.float64), _EPSILON, 1 - _EPSILON)
    return np.log(clipped) - np.log1p(-clipped)


def _fit_one(scores: np.ndarray, positive: np.ndarray, method: str) -> ClassCalibration:
    if positive.all() or not positive.any():
        return ClassCalibration()  # nothing to learn from one-sided data: leave it as it is
    model = LogisticRegression(C=1e4, fit_intercept=method == "platt")
    model.fit(logit(scores)[:, None], positive.astype(int))
    return ClassCalibration(
        # A model whose scores sit on the wrong side of 0.5 can pull the fitted scale below
        # zero, which would invert its ranking; a calibration must never do that.
        scale=max(float(model.coef_[0, 0]), MIN_SCALE),
        shift=float(model.intercept_[0]) if method == "platt" else 0.0,
    )


def fit_calibration(
    scores: np.ndarray, truth: np.ndarray, classes: Sequence[str], method: str
) -> Calibration:
    """Fit one map per class from raw scores (N, C) and true class indices (N,)."""
    return Calibration(
        method=method,
        classes={
            name: _fit_one(scores[:, c], truth == c, method) for c, name in enumerate(classes)
        },
    )


def apply_calibration(
    scores: np.ndarray, calibration: Calibration, classes: Sequence[str]
) -> np.ndarray:
    """The same transform the fused graph applies, in NumPy (for reporting)."""
    scale = np.array([calibration.classes[c].scale for c in classes])
    shift = np.array([calibration.classes[c].shift for c in classes])
    return (1.0 / (1.0 + np.exp(-(scale * logit(scores) + shift)))).astype(np.float32)


def cross_fit_folds(
    truth: np.ndarray, n_classes: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (fit rows, apply rows) pairs every cross-fitted figure uses; [] when some class has
    fewer than two images (no stratified folds exist)."""
    smallest = int(np.bincount(truth, minlength=n_classes).min())
    folds = min(CROSS_FIT_FOLDS, smallest)
    if folds < 2:
        return []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(truth)), truth))


def cross_fitted_scores(
    scores: np.ndarray, truth: np.ndarray, classes: Sequence[str], method: str, seed: int
) -> tuple[np.ndarray, bool]:
    """Calibrated scores where each image's map was fitted without that image.

    Returns the scores and whether they really are cross-fitted: with fewer than two images
    of some class there are no stratified folds, and the maps are fitted and applied on the
    same images (in-sample figures, which flatter the calibration).
    """
    folds = cross_fit_folds(truth, len(classes), seed)
    if not folds:
        maps = fit_calibration(scores, truth, classes, method)
        return apply_calibration(scores, maps, classes), False
    calibrated = np.empty_like(scores, dtype=np.float32)
    for fit_rows, apply_rows in folds:
        maps = fit_calibration(scores[fit_rows], truth[fit_rows], classes, method)
        calibrated[apply_rows] = apply_calibration(scores[apply_rows], maps, classes)
    return calibrated, True


def review_tradeoff(
    scores: np.ndarray, truth: np.ndarray, thresholds: Sequence[float]
) -> list[dict[str, float]]:
    """For each review threshold on the top score: share sent to review, share of errors caught."""
    top = scores.max(axis=1)
    wrong = scores.argmax(axis=1) != truth
    rows = []
    for threshold in thresholds:
        to_review = top < threshold
        rows.append(
            {
                "threshold": float(threshold),
                "review_rate": float(to_review.mean()) if len(top) else 0.0,
                "errors_caught": float((to_review & wrong).sum() / wrong.sum())
                if wrong.any()
                else 0.0,
                "accuracy_of_rest": float((~wrong[~to_review]).mean())
                if (~to_review).any()
                else 1.0,
            }
        )
    return rows


def suggest_review_threshold(
    tradeoff: list[dict[str, float]], max_review_rate: float
) -> dict[str, float]:
    """The threshold catching the most errors with at most ``max_review_rate`` sent to review."""
    allowed = [row for row in tradeoff if row["review_rate"] <= max_review_rate]
    return max(allowed, key=lambda row: (row["errors_caught"], -row["review_rate"]))
