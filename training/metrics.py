"""The Capsule Vision 2024 challenge metrics, in the organisers' JSON structure.

The definitions follow the challenge's own scoring script: the summary metrics use the argmax of
the probability columns (never a submitted ``predicted_class``), the class-wise ones threshold each
column at 0.5 independently, and every AUC is one-vs-rest on the raw column.

A class absent from ``y_true`` has no defined ROC AUC: its class-wise ``auc`` is ``None`` (null in
JSON) and ``mean_auc`` averages the classes whose AUC is defined. The organisers' script would have
counted such a class as 0.0 in ``mean_auc``; every class is present in the challenge's test set, so
the official numbers do not depend on this choice.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

THRESHOLD = 0.5


def specificity(true_binary: np.ndarray, pred_binary: np.ndarray) -> float:
    """TN / (TN + FP) of two boolean arrays of shape (N,); 0.0 when there is no negative."""
    negatives = ~true_binary
    n_negative = int(negatives.sum())
    if n_negative == 0:
        return 0.0
    true_negatives = int((negatives & ~pred_binary).sum())
    return true_negatives / n_negative


def _auc(true_binary: np.ndarray, scores: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC of (N,) bool labels and (N,) scores; None if one side is empty."""
    if true_binary.all() or not true_binary.any():
        return None
    return float(roc_auc_score(true_binary, scores))


def challenge_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Score class probabilities against true labels the way the challenge organisers did.

    Args:
        y_true: (N,) integer class indices into ``class_names``.
        probabilities: (N, C) float scores, column ``i`` for ``class_names[i]``.
        class_names: the C class names, in column order.

    Returns:
        ``{"mean_auc", "balanced_accuracy", "avg_precision", "avg_sensitivity", "avg_f1",
        "avg_specificity", "class_wise_metrics": {name: {"precision", "recall", "f1_score",
        "specificity", "accuracy", "auc"}}}``, all plain Python floats (``auc`` may be None,
        see the module docstring), ready for ``json.dump``.

    Raises:
        ValueError: the shapes or label range do not fit together (a programming error; files
        are validated by ``gicls.training.score`` before they get here).
    """
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(y_true), n_classes):
        raise ValueError(
            f"probabilities must have shape ({len(y_true)}, {n_classes}), got {probabilities.shape}"
        )
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    if y_true.ndim != 1 or y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(f"y_true must be (N,) class indices in [0, {n_classes})")

    y_pred = probabilities.argmax(axis=1)
    one_hot = y_true[:, None] == np.arange(n_classes)[None, :]
    aucs = [_auc(one_hot[:, i], probabilities[:, i]) for i in range(n_classes)]
    defined_aucs = [auc for auc in aucs if auc is not None]

    class_wise: dict[str, dict[str, float | None]] = {}
    for i, name in enumerate(class_names):
        true_binary = one_hot[:, i]
        pred_binary = probabilities[:, i] >= THRESHOLD
        class_wise[name] = {
            "precision": float(precision_score(true_binary, pred_binary, zero_division=0)),
            "recall": float(recall_score(true_binary, pred_binary, zero_division=0)),
            "f1_score": float(f1_score(true_binary, pred_binary, zero_division=0)),
            "specificity": specificity(true_binary, pred_binary),
            "accuracy": float(accuracy_score(true_binary, pred_binary)),
            "auc": aucs[i],
        }

    # Macro averages run over the labels sklearn sees (present in y_true or y_pred), as in the
    # organisers' script: a class nobody has and nobody predicts does not count. Balanced
    # accuracy only averages the classes present in y_true and warns otherwise; that is expected.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced_accuracy = float(balanced_accuracy_score(y_true, y_pred))
    return {
        "mean_auc": float(np.mean(defined_aucs)) if defined_aucs else None,
        "balanced_accuracy": balanced_accuracy,
        "avg_precision": float(precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "avg_sensitivity": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
        "avg_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "avg_specificity": float(
            np.mean([specificity(y_true == i, y_pred == i) for i in range(n_classes)])
        ),
        "class_wise_metrics": class_wise,
    }
