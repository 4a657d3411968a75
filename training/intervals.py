"""Bootstrap 95 % confidence intervals of the ensemble's figures (``scipy.stats.bootstrap``).

A figure on a few hundred held-out frames is a point inside a wide range; the interval says
how wide. The resampling is stratified by true class (each class's images are resampled on
their own, as scipy does for several samples), so every resample keeps the class mix of the
evaluation: a class's sensitivity and AUC are defined in every resample exactly when they are
defined on the images themselves, and ``None`` (null in JSON) otherwise. Percentile intervals,
a fixed seed: the same images give the same intervals.

The statistic is vectorised: a resample is a row of counts (how often each image was drawn),
and every figure of every resample in a batch is a matrix product with those counts, so a
thousand resamples of thousands of images take seconds, not minutes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy.stats import DegenerateDataWarning, bootstrap

from gicls.training.metrics import THRESHOLD

RESAMPLES = 1000
CONFIDENCE = 0.95
# Resamples scored at once: bounds the memory of the (batch, images) count matrices.
_BATCH = 100


def _strata(truth: np.ndarray) -> list[np.ndarray]:
    """Image indices per true class; classes of a single image are pooled (scipy needs two
    observations per sample), and a lone leftover joins the largest class."""
    by_class = [np.flatnonzero(truth == c) for c in np.unique(truth)]
    strata = [s for s in by_class if len(s) >= 2]
    singles = np.concatenate([s for s in by_class if len(s) < 2] or [np.zeros(0, np.int64)])
    if len(singles) >= 2 or not strata:
        strata.append(singles)
    elif len(singles) == 1:
        largest = max(range(len(strata)), key=lambda i: len(strata[i]))
        strata[largest] = np.concatenate([strata[largest], singles])
    return strata


class _Figures:
    """Accuracy, balanced accuracy and per class sensitivity, specificity, AUC of count rows.

    Definitions as in ``gicls.training.metrics``: accuracy and balanced accuracy of the argmax,
    sensitivity and specificity of each column thresholded at ``THRESHOLD``, tie-aware
    one-vs-rest AUC of the raw column.
    """

    def __init__(self, truth: np.ndarray, scores: np.ndarray) -> None:
        self.n_images, self.n_classes = scores.shape
        present = truth[:, None] == np.arange(self.n_classes)[None, :]
        correct = scores.argmax(axis=1) == truth
        positive = scores >= THRESHOLD
        self.present = present.astype(np.float64)
        self.hits = (present & correct[:, None]).astype(np.float64)
        self.true_positive = (present & positive).astype(np.float64)
        self.true_negative = (~present & ~positive).astype(np.float64)
        self.correct = correct.astype(np.float64)
        # Per class: images -> tie group of equal scores (one-hot, sparse), in score order.
        self.tie_groups: list[tuple[sparse.csr_matrix, np.ndarray]] = []
        for c in range(self.n_classes):
            _, group = np.unique(scores[:, c], return_inverse=True)
            one_hot = sparse.csr_matrix(
                (np.ones(self.n_images), (np.arange(self.n_images), group)),
                shape=(self.n_images, group.max() + 1),
            )
            self.tie_groups.append((one_hot, group))

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """(B, N) draw counts -> (2 + 3 C, B) figures; NaN where a figure is undefined."""
        with np.errstate(invalid="ignore", divide="ignore"):
            in_class = counts @ self.present  # (B, C)
            out_class = counts.sum(axis=1, keepdims=True) - in_class
            recall = (counts @ self.hits) / in_class
            rows = [
                (counts @ self.correct) / counts.sum(axis=1),
                np.nanmean(np.where(in_class > 0, recall, np.nan), axis=1),
            ]
            sensitivity = (counts @ self.true_positive) / in_class
            specificity = (counts @ self.true_negative) / out_class
            auc = np.stack([self._auc(counts, c) for c in range(self.n_classes)], axis=1)
        for block in (sensitivity, specificity, auc):
            rows.extend(block.T)
        return np.stack(rows)

    def _auc(self, counts: np.ndarray, c: int) -> np.ndarray:
        """Mann-Whitney AUC of class ``c`` per row: each drawn positive is credited with the
        drawn negatives scored below it, and half of those scored the same."""
        one_hot, group = self.tie_groups[c]
        positives = counts * self.present[:, c]
        negatives = counts - positives
        per_group = np.asarray(one_hot.T @ negatives.T).T  # (B, G) negatives per score value
        credit = np.cumsum(per_group, axis=1) - 0.5 * per_group
        n_pos, n_neg = positives.sum(axis=1), negatives.sum(axis=1)
        return (positives * credit[:, group]).sum(axis=1) / (n_pos * n_neg)


def _counts(indices: np.ndarray, n_images: int) -> np.ndarray:
    """(B, k) drawn image indices -> (B, N) how often each image was drawn."""
    rows = np.repeat(np.arange(len(indices)), indices.shape[1])
    flat = rows * n_images + indices.ravel()
    return np.bincount(flat, minlength=len(indices) * n_images).reshape(len(indices), n_images)


def bootstrap_intervals(
    truth: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """95 % intervals ``[low, high]`` (or None where undefined) of the figures above.

    Args:
        truth: (N,) int class indices.
        scores: (N, C) float decision scores, column order of ``classes``.
    """
    figures = _Figures(np.asarray(truth), np.asarray(scores, dtype=np.float64))
    n_classes = len(classes)
    low = high = np.full(2 + 3 * n_classes, np.nan)
    if len(truth) >= 2:

        def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
            drawn = np.atleast_2d(np.concatenate(samples, axis=axis)).astype(np.int64)
            values = figures(_counts(drawn, figures.n_images).astype(np.float64))
            return values[:, 0] if np.ndim(samples[0]) == 1 else values

        with warnings.catch_warnings():
            # Undefined figures (NaN) and figures equal in every resample are expected.
            warnings.simplefilter("ignore", DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = bootstrap(
                tuple(_strata(np.asarray(truth))),
                statistic,
                n_resamples=resamples,
                batch=_BATCH,
                vectorized=True,
                confidence_level=CONFIDENCE,
                method="percentile",
                rng=np.random.default_rng(seed),
            )
        low, high = result.confidence_interval

    def interval(row: int) -> list[float] | None:
        if np.isnan(low[row]) or np.isnan(high[row]):
            return None
        return [round(float(low[row]), 4), round(float(high[row]), 4)]

    return {
        "method": f"percentile bootstrap stratified by class, {resamples} resamples, seed {seed}",
        "confidence_level": CONFIDENCE,
        "accuracy": interval(0),
        "balanced_accuracy": interval(1),
        "class_wise": {
            name: {
                "sensitivity": interval(2 + c),
                "specificity": interval(2 + n_classes + c),
                "auc": interval(2 + 2 * n_classes + c),
            }
            for c, name in enumerate(classes)
        },
    }
