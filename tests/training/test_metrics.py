"""challenge_metrics on arrays small enough to check by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gicls.training.metrics import challenge_metrics, specificity

CLASSES = ("Bleeding", "Normal", "Polyp")
# The top-level keys of the organisers' metrics JSON, in their order.
ORGANISER_KEYS = [
    "mean_auc",
    "balanced_accuracy",
    "avg_precision",
    "avg_sensitivity",
    "avg_f1",
    "avg_specificity",
    "class_wise_metrics",
]
CLASS_KEYS = ["precision", "recall", "f1_score", "specificity", "accuracy", "auc"]


def scores_for(predicted: list[int], n_classes: int = 3) -> np.ndarray:
    """0.9 on each row's predicted class and 0.05 elsewhere: argmax and 0.5-threshold agree."""
    probabilities = np.full((len(predicted), n_classes), 0.05)
    probabilities[np.arange(len(predicted)), predicted] = 0.9
    return probabilities


def test_structure_matches_the_organisers_json() -> None:
    result = challenge_metrics(np.array([0, 1, 2]), scores_for([0, 1, 2]), CLASSES)

    assert list(result) == ORGANISER_KEYS
    assert list(result["class_wise_metrics"]) == list(CLASSES)
    for metrics in result["class_wise_metrics"].values():
        assert list(metrics) == CLASS_KEYS


def test_perfect_prediction_scores_one_everywhere() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])

    result = challenge_metrics(y_true, scores_for([0, 0, 1, 1, 2, 2]), CLASSES)

    for key, value in result.items():
        if key != "class_wise_metrics":
            assert value == 1.0, key
    for name, metrics in result["class_wise_metrics"].items():
        assert metrics == dict.fromkeys(CLASS_KEYS, 1.0), name


def test_known_confusion() -> None:
    # true:      0 0 1 1 2 2
    # predicted: 0 1 1 1 2 0
    # class 0: TP 1, FN 1, FP 1, TN 3 | class 1: TP 2, FN 0, FP 1, TN 3 | class 2: TP 1, FN 1, TN 4
    y_true = np.array([0, 0, 1, 1, 2, 2])

    result = challenge_metrics(y_true, scores_for([0, 1, 1, 1, 2, 0]), CLASSES)

    recalls = [1 / 2, 2 / 2, 1 / 2]
    precisions = [1 / 2, 2 / 3, 1 / 1]
    specificities = [3 / 4, 3 / 4, 4 / 4]
    f1s = [2 * p * r / (p + r) for p, r in zip(precisions, recalls, strict=True)]
    assert result["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert result["avg_sensitivity"] == pytest.approx(np.mean(recalls))
    assert result["avg_precision"] == pytest.approx(np.mean(precisions))
    assert result["avg_f1"] == pytest.approx(np.mean(f1s))
    assert result["avg_specificity"] == pytest.approx(np.mean(specificities))
    bleeding = result["class_wise_metrics"]["Bleeding"]
    assert bleeding["specificity"] == pytest.approx(0.75)
    assert bleeding["accuracy"] == pytest.approx(4 / 6)
    # Bleeding scores: positives 0.9, 0.05; negatives 0.05, 0.05, 0.05, 0.9.
    # Pairs won: 0.9 beats three 0.05s and ties 0.9 (3.5); 0.05 ties three and loses one (1.5).
    assert bleeding["auc"] == pytest.approx(5 / 8)
    assert result["class_wise_metrics"]["Polyp"]["specificity"] == 1.0


def test_class_wise_metrics_threshold_each_column_at_one_half() -> None:
    # Row 0 is right by argmax but below 0.5; row 1 has two columns at or above 0.5.
    y_true = np.array([0, 1, 2])
    probabilities = np.array([[0.40, 0.35, 0.25], [0.60, 0.70, 0.00], [0.00, 0.00, 0.50]])

    result = challenge_metrics(y_true, probabilities, CLASSES)

    assert result["balanced_accuracy"] == 1.0
    bleeding = result["class_wise_metrics"]["Bleeding"]
    assert bleeding["recall"] == 0.0  # its only positive scored 0.40
    assert bleeding["specificity"] == 0.5  # row 1 scored 0.60 on Bleeding
    assert result["class_wise_metrics"]["Polyp"]["recall"] == 1.0  # 0.50 counts as positive


def test_class_absent_from_truth_has_no_auc_and_does_not_crash() -> None:
    # No Polyp in y_true; row 3 is predicted Polyp.
    y_true = np.array([0, 0, 1, 1])
    probabilities = np.array(
        [[0.90, 0.05, 0.05], [0.80, 0.60, 0.10], [0.10, 0.50, 0.40], [0.20, 0.30, 0.50]]
    )

    result = challenge_metrics(y_true, probabilities, CLASSES)

    assert result["class_wise_metrics"]["Polyp"]["auc"] is None
    assert result["class_wise_metrics"]["Bleeding"]["auc"] == 1.0
    # Normal: positives 0.50, 0.30 vs negatives 0.05, 0.60: two of four pairs won.
    assert result["class_wise_metrics"]["Normal"]["auc"] == 0.5
    assert result["mean_auc"] == pytest.approx(0.75)  # the two defined AUCs only
    assert result["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)  # classes in y_true
    assert result["avg_sensitivity"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)  # Polyp predicted
    json.dumps(result, allow_nan=False)  # None becomes null; no NaN reaches the JSON


def test_specificity_without_negatives_is_zero() -> None:
    assert specificity(np.array([True, True]), np.array([True, False])) == 0.0
    assert specificity(np.array([False, False, True]), np.array([True, False, True])) == 0.5


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        challenge_metrics(np.array([0, 1]), np.zeros((2, 2)), CLASSES)
    with pytest.raises(ValueError, match="class indices"):
        challenge_metrics(np.array([0, 3]), np.zeros((2, 3)), CLASSES)
