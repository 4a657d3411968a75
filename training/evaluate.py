"""Evaluate a bundle with the daemon's own fused graph and report Capsule Vision 2024 metrics.

Outputs of one evaluation (``write_evaluation``)::

    metrics.json            the organisers' metrics of the bundle's decision scores
    report.json             uncalibrated and calibrated metrics, review-threshold trade-off
    predictions.xlsx        challenge submission layout: image_path, one column per class,
                            predicted_class
    confusion_matrix.png    counts and row-normalised
    roc_curves.png          one one-vs-rest curve per class
    review_tradeoff.png     share sent to review vs share of errors caught
    operating_points_roc.png   per-class ROC with the bundle thresholds' operating points
    frames_to_review.png    per class: frames flagged per 1,000 vs sensitivity (points marked)

``report.json`` holds ``operating_points`` when the bundle has thresholds: per class the target,
the threshold and the achieved sensitivity, specificity and frames flagged per 1,000
(cross-fitted, in-sample or as applied: see gicls.training.operating_points).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gicls.models.bundle import Calibration, ClassThreshold, DeviceReference, Manifest
from gicls.models.devices import resolve_precision
from gicls.models.ensemble import FusedEnsemble
from gicls.models.guard import GuardSet
from gicls.training.calibration import (
    IN_SAMPLE,
    apply_calibration,
    cross_fitted_scores,
    review_tradeoff,
    suggest_review_threshold,
)
from gicls.training.image_cache import ImageCache
from gicls.training.intervals import RESAMPLES, bootstrap_intervals
from gicls.training.metrics import challenge_metrics
from gicls.training.operating_points import operating_points
from gicls.training.plots import (
    plot_confusion_matrix,
    plot_operating_points,
    plot_review_tradeoff,
    plot_roc_curves,
)
from gicls.training.reading_load import reading_load
from gicls.training.scan import ImageRecord
from gicls.training.score import write_metrics_json
from gicls.training.source_probe import source_probe

REVIEW_THRESHOLDS = tuple(np.round(np.arange(0.0, 1.0001, 0.02), 2))
MAX_REVIEW_RATE = 0.10
# The device check's bound (gicls.audit.device_check): a study is flagged when a class takes
# more than its held-out share plus DEVICE_SHARE_TOLERANCE of the frames, or when its median
# score of a class lies above the held-out DEVICE_SCORE_QUANTILE of that class's scores. Wide
# on purpose: it is meant for a foreign device (most frames in one condition), not for a
# patient with many findings.
DEVICE_SHARE_TOLERANCE = 0.25
DEVICE_SCORE_QUANTILE = 0.95
DEVICE_MIN_FRAMES = 50


# A reduced-precision evaluation is guarded on (up to) this many of the images being evaluated,
# with the daemon's criterion (gicls.models.guard); the daemon guards on the bundle's guard
# frames, which are scored calibrated; these scores are uncalibrated, so they bring their own.
GUARD_IMAGES = 256


@dataclass(frozen=True)
class ServedPrecision:
    """The precision that scored an evaluation, and how it was chosen (for its report)."""

    precision: str  # what really scored: "float32" | "bfloat16" | "float16"
    details: dict[str, Any]  # asked, tried, device, reason and the guard's verdict


def raw_scores(
    models_dir: Path,
    manifest: Manifest,
    cache: ImageCache,
    records: Sequence[ImageRecord],
    precision: str = "float32",
) -> tuple[np.ndarray, ServedPrecision]:
    """Uncalibrated fused-ensemble scores (len(records), n_classes) float32, in class order.

    ``precision`` is an ``[inference] precision`` value, resolved as the daemon resolves it
    (gicls.models.devices). Also returns what really scored (a reduced precision can be refused).
    """
    rows = cache.rows(records)
    uncalibrated = manifest.model_copy(update={"calibration": None})
    exact = FusedEnsemble(models_dir, uncalibrated)
    choice = resolve_precision(precision)
    details: dict[str, Any] = {
        "asked": choice.asked,
        "tried": choice.tried,
        "device": choice.device,
        "reason": choice.reason,
    }
    if choice.tried == "float32":
        return exact.score_rows(cache.pixels, rows), ServedPrecision("float32", details)
    frames = cache.pixels[rows[:GUARD_IMAGES]]
    guard = GuardSet(frames, exact.score_rows(frames, np.arange(len(frames))))
    ensemble = FusedEnsemble(models_dir, uncalibrated, choice.tried, guard)
    if ensemble.verdict is not None:
        details["guard"] = ensemble.verdict.describe()
    if ensemble.refused is not None:
        details["refused"] = ensemble.refused
    return ensemble.score_rows(cache.pixels, rows), ServedPrecision(ensemble.precision, details)


@dataclass(frozen=True)
class Evaluation:
    classes: list[str]
    image_names: list[str]
    truth: np.ndarray  # (N,) int class indices
    # (N, C) the bundle's decision scores: calibrated when it has a map (cross-fitted when the
    # map was fitted on these images, so that no figure is measured on what the map saw).
    scores: np.ndarray
    report: dict[str, Any]

    @property
    def bundle_id(self) -> str:
        return self.report["bundle_id"]

    @property
    def metrics(self) -> dict[str, Any]:
        """Organisers' metrics of the scores the bundle actually decides with."""
        return self.report["calibrated" if "calibrated" in self.report else "uncalibrated"]


def evaluate_scores(
    raw: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[str],
    image_names: Sequence[str],
    calibration: Calibration | None,
    calibration_fitted_here: bool,
    seed: int,
    precision: str,
    bundle_id: str,
    resamples: int = RESAMPLES,
    sources: Sequence[str] | None = None,
    thresholds: Mapping[str, ClassThreshold] | None = None,
    precision_choice: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Metrics with and without calibration, the review-threshold trade-off and the operating
    points of the bundle's ``thresholds``.

    Every variant carries bootstrap intervals (``resamples`` resamples, seeded by ``seed``);
    with ``sources`` (one per image) the decision scores are also broken down by source.

    When the calibration (and the thresholds) were fitted on these very images, the calibrated
    figures come from cross-fitted maps so that they are not measured on the data the maps saw.
    """
    classes = list(classes)

    def figures_of(scores: np.ndarray) -> dict[str, Any]:
        return ensemble_figures(truth, scores, classes, resamples, seed)

    report: dict[str, Any] = {
        "bundle_id": bundle_id,
        "images": len(truth),
        "precision": precision,
        "uncalibrated": figures_of(raw),
    }
    if precision_choice is not None:
        report["precision_choice"] = dict(precision_choice)
    scores = raw
    if calibration is not None:
        in_sample = False
        if calibration_fitted_here:
            scores, crossed = cross_fitted_scores(raw, truth, classes, calibration.method, seed)
            in_sample = not crossed
            figures = (
                "cross-fitted on this split"
                if crossed
                else IN_SAMPLE + " (fitted and measured on these images: a class has fewer "
                "than 2 of them, too few to cross-fit)"
            )
        else:
            scores = apply_calibration(raw, calibration, classes)
            figures = "as applied (the bundle's maps, not fitted on these images)"
        report["calibration"] = {
            "method": calibration.method,
            "figures": figures,
            "in_sample": in_sample,
        }
        report["calibrated"] = figures_of(scores)
    report["reading_load_at_95"] = reading_load(truth, scores, classes)
    if sources is not None:
        report["per_source"] = per_source_figures(truth, scores, classes, sources, resamples, seed)
        report["source_probe"] = source_probe(truth, scores, classes, sources)
    if thresholds:
        served = raw if calibration is None else apply_calibration(raw, calibration, classes)
        report["operating_points"] = operating_points(
            raw,
            served,
            truth,
            classes,
            thresholds,
            calibration.method if calibration is not None else None,
            fitted_here=calibration_fitted_here,
            seed=seed,
        )
    tradeoff = review_tradeoff(scores, truth, REVIEW_THRESHOLDS)
    report["review_tradeoff"] = tradeoff
    report["suggested_review_threshold"] = suggest_review_threshold(tradeoff, MAX_REVIEW_RATE)
    return Evaluation(classes, list(image_names), truth, scores, report)


def ensemble_figures(
    truth: np.ndarray, scores: np.ndarray, classes: Sequence[str], resamples: int, seed: int
) -> dict[str, Any]:
    """The challenge metrics of (N, C) ``scores``, plain accuracy, and bootstrap intervals."""
    accuracy = float(np.mean(scores.argmax(axis=1) == truth)) if len(truth) else None
    return {
        **challenge_metrics(truth, scores, classes),
        "accuracy": accuracy,
        "intervals": bootstrap_intervals(truth, scores, classes, resamples, seed),
    }


def per_source_figures(
    truth: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
    sources: Sequence[str],
    resamples: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """``ensemble_figures`` of each source's images, so that a figure on one centre or data
    set can be compared with the others'.

    A source rarely has every class: for a class it has no image of, sensitivity (``recall``)
    and AUC are undefined (``None``) and the class is listed under ``classes_absent``;
    balanced accuracy and mean AUC average the classes the source has.
    """
    labels = np.asarray(sources, dtype=object)
    breakdown: dict[str, dict[str, Any]] = {}
    for source in sorted(set(sources)):
        mask = labels == source
        with warnings.catch_warnings():
            # Expected of a source with images of one class only.
            warnings.filterwarnings("ignore", message="A single label was found")
            figures = ensemble_figures(truth[mask], scores[mask], classes, resamples, seed)
        absent = [name for i, name in enumerate(classes) if not np.any(truth[mask] == i)]
        for name in absent:
            figures["class_wise_metrics"][name]["recall"] = None
        breakdown[source] = {
            "images": int(mask.sum()),
            "classes_absent": absent,
            **figures,
            "reading_load_at_95": reading_load(truth[mask], scores[mask], classes),
        }
    return breakdown


def device_reference(
    scores: np.ndarray, classes: Sequence[str], measured_on: str
) -> DeviceReference | None:
    """What the held-out images look like to the served ensemble: ``scores`` (N, C) are the
    scores the daemon would log for them (calibrated when the bundle calibrates). None
    without images."""
    if not len(scores):
        return None
    predicted = np.bincount(scores.argmax(axis=1), minlength=len(classes)) / len(scores)
    upper = np.quantile(scores, DEVICE_SCORE_QUANTILE, axis=0)
    return DeviceReference(
        measured_on=measured_on,
        images=len(scores),
        predicted_share={name: float(predicted[i]) for i, name in enumerate(classes)},
        share_tolerance=DEVICE_SHARE_TOLERANCE,
        score_quantile=DEVICE_SCORE_QUANTILE,
        score_upper={name: float(upper[i]) for i, name in enumerate(classes)},
        min_frames=DEVICE_MIN_FRAMES,
    )


def evaluation_folder(models_dir: Path, bundle_id: str, name: str) -> Path:
    """Where an evaluation goes by default: beside the live bundle, never inside it."""
    return models_dir.parent / f"{models_dir.name}-evaluations" / bundle_id / name


def write_evaluation(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Write metrics, predictions and plots into ``out_dir``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = evaluation.classes
    predicted = evaluation.scores.argmax(axis=1)
    metrics_path = out_dir / "metrics.json"
    write_metrics_json(_without_accuracy(evaluation.metrics), metrics_path)
    report_path = out_dir / "report.json"
    report_path.write_text(json.dumps(evaluation.report, indent=2) + "\n")
    predictions = pd.DataFrame(evaluation.scores.astype(float), columns=classes)
    predictions.insert(0, "image_path", evaluation.image_names)
    predictions["predicted_class"] = [classes[i] for i in predicted]
    predictions_path = out_dir / "predictions.xlsx"
    predictions.to_excel(predictions_path, index=False)
    return [
        metrics_path,
        report_path,
        predictions_path,
        plot_confusion_matrix(
            evaluation.truth, predicted, classes, out_dir / "confusion_matrix.png"
        ),
        plot_roc_curves(evaluation.truth, evaluation.scores, classes, out_dir / "roc_curves.png"),
        plot_review_tradeoff(
            evaluation.report["review_tradeoff"], MAX_REVIEW_RATE, out_dir / "review_tradeoff.png"
        ),
        *plot_operating_points(
            evaluation.truth,
            evaluation.scores,
            classes,
            evaluation.report.get("operating_points", {}).get("classes", {}),
            out_dir / "operating_points_roc.png",
            out_dir / "frames_to_review.png",
        ),
    ]


def _without_accuracy(metrics: dict[str, Any]) -> dict[str, Any]:
    """The organisers' keys only (plain accuracy and the intervals are ours, not theirs)."""
    return {key: value for key, value in metrics.items() if key not in ("accuracy", "intervals")}
