"""Figures people would rather look at than read: training curves and evaluation plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from sklearn.metrics import auc, roc_curve

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def plot_history(history: dict[str, list[float]], title: str, path: Path) -> Path:
    """Write a two-panel PNG (accuracy, loss) from a Keras history dict."""
    epochs = range(1, len(history.get("loss", [])) + 1)
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in ((accuracy_axis, "accuracy"), (loss_axis, "loss")):
        axis.plot(epochs, history.get(metric, []), marker="o", label="training")
        axis.plot(epochs, history.get(f"val_{metric}", []), marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.set_title(metric.capitalize())
        axis.grid(alpha=0.3)
        axis.legend()
    accuracy_axis.set_ylim(0, 1.02)
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_confusion_matrix(
    truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str], path: Path
) -> Path:
    """Two panels: counts and row-normalised (recall per true class)."""
    n = len(classes)
    counts = np.zeros((n, n), dtype=int)
    np.add.at(counts, (truth, predicted), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    size = max(6.0, 0.6 * n + 3)
    figure, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for axis, matrix, title, fmt in (
        (axes[0], counts, "Counts", "d"),
        (axes[1], normalised, "Row-normalised (recall)", ".2f"),
    ):
        image = axis.imshow(matrix, cmap="Blues", vmin=0)
        figure.colorbar(image, ax=axis, fraction=0.046)
        axis.set_xticks(range(n), classes, rotation=45, ha="right")
        axis.set_yticks(range(n), classes)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(title)
        threshold = matrix.max() / 2 if matrix.max() else 1
        for i in range(n):
            for j in range(n):
                axis.text(
                    j,
                    i,
                    format(matrix[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black",
                )
    figure.tight_layout()
    return _save(figure, path)


def plot_roc_curves(
    truth: np.ndarray, scores: np.ndarray, classes: Sequence[str], path: Path
) -> Path:
    """One one-vs-rest ROC curve per class (classes absent from ``truth`` are left out)."""
    figure, axis = plt.subplots(figsize=(7, 6))
    for index, name in enumerate(classes):
        positive = truth == index
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, scores[:, index])
        axis.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title("ROC, one vs rest")
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def plot_operating_points(
    truth: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
    points: Mapping[str, Mapping[str, Any]],
    roc_path: Path,
    review_path: Path,
) -> list[Path]:
    """Two grids of one panel per class (classes absent from ``truth``, or all of it, are left
    out): the ROC curve, and frames flagged per 1,000 against sensitivity (what a reader pays
    for each share of the class caught). ``points``: the evaluation's operating points by
    class (``sensitivity``, ``specificity``, ``flagged_per_1000``, ``threshold``), marked."""
    shown = [
        (index, name)
        for index, name in enumerate(classes)
        if (truth == index).any() and not (truth == index).all()
    ]
    columns = min(3, max(1, len(shown)))
    rows = max(1, -(-len(shown) // columns))
    roc_figure, roc_axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.6 * rows))
    review_figure, review_axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.6 * rows))
    roc_flat, review_flat = np.atleast_1d(roc_axes).ravel(), np.atleast_1d(review_axes).ravel()
    for (index, name), roc_axis, review_axis in zip(shown, roc_flat, review_flat, strict=False):
        positive = truth == index
        fpr, tpr, _ = roc_curve(positive, scores[:, index], drop_intermediate=False)
        per_1000 = 1000 * (tpr * positive.sum() + fpr * (~positive).sum()) / len(truth)
        roc_axis.plot(fpr, tpr)
        roc_axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        roc_axis.set(xlabel="false positive rate", ylabel="sensitivity", title=name)
        review_axis.plot(tpr, per_1000)
        review_axis.set(xlabel="sensitivity", ylabel="frames flagged per 1,000", title=name)
        point = points.get(name)
        if point is not None and point["sensitivity"] is not None:
            label = f"threshold {point['threshold']:.3f}"
            if point["specificity"] is not None:
                roc_axis.plot(1 - point["specificity"], point["sensitivity"], "o", label=label)
                roc_axis.legend(fontsize=8, loc="lower right")
            review_axis.plot(point["sensitivity"], point["flagged_per_1000"], "o", label=label)
            review_axis.legend(fontsize=8, loc="upper left")
        for axis in (roc_axis, review_axis):
            axis.grid(alpha=0.3)
    for axis in [*roc_flat[len(shown) :], *review_flat[len(shown) :]]:
        axis.set_visible(False)
    roc_figure.suptitle("ROC per class, operating points marked")
    review_figure.suptitle("Frames to review vs sensitivity")
    for figure in (roc_figure, review_figure):
        figure.tight_layout()
    return [_save(roc_figure, roc_path), _save(review_figure, review_path)]


def plot_review_tradeoff(
    tradeoff: list[dict[str, float]], max_review_rate: float, path: Path
) -> Path:
    """Share of images sent to review vs share of the ensemble's errors caught by it."""
    figure, axis = plt.subplots(figsize=(6, 5))
    axis.plot(
        [r["review_rate"] for r in tradeoff], [r["errors_caught"] for r in tradeoff], marker="."
    )
    axis.axvline(
        max_review_rate,
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"{max_review_rate:.0%} review budget",
    )
    axis.set_xlabel("share of images sent to review")
    axis.set_ylabel("share of errors caught")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_title("Review threshold trade-off")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
