"""Bootstrap 95 % intervals: right figures, seeded, null where undefined, fast, reported."""

from __future__ import annotations

import json
import time

import numpy as np
from scipy.stats import bootstrap
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from gicls.training.cli import _class_table, _print_evaluation_summary, console
from gicls.training.evaluate import evaluate_scores, write_evaluation
from gicls.training.intervals import bootstrap_intervals

CLASSES = ("Bleeding", "Normal", "Polyp")


def scored(n_per_class: int, n_classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_classes), n_per_class)
    scores = rng.random((len(truth), n_classes))
    scores[np.arange(len(truth)), truth] += 0.4 * rng.random(len(truth))
    return truth, np.round(scores, 2)  # rounded: ties, as calibrated scores have


def test_intervals_equal_a_plain_sklearn_bootstrap_over_the_same_resamples():
    truth, scores = scored(20)
    mine = bootstrap_intervals(truth, scores, CLASSES, resamples=200, seed=5)

    def reference(*samples):  # one resample at a time, sklearn's own figures
        index = np.concatenate(samples).astype(int)
        t, s = truth[index], scores[index]
        return [
            np.mean(s.argmax(1) == t),
            balanced_accuracy_score(t, s.argmax(1)),
            np.mean(s[t == 1, 1] >= 0.5),
            np.mean(s[t != 1, 1] < 0.5),
            roc_auc_score(t == 2, s[:, 2]),
        ]

    strata = tuple(np.flatnonzero(truth == c) for c in range(3))
    expected = bootstrap(
        strata,
        reference,
        n_resamples=200,
        vectorized=False,
        batch=100,  # the batches bootstrap_intervals draws: the same resamples
        method="percentile",
        rng=np.random.default_rng(5),
    ).confidence_interval
    got = [
        mine["accuracy"],
        mine["balanced_accuracy"],
        mine["class_wise"]["Normal"]["sensitivity"],
        mine["class_wise"]["Normal"]["specificity"],
        mine["class_wise"]["Polyp"]["auc"],
    ]
    np.testing.assert_allclose(got, np.stack(expected, axis=1).round(4), atol=1e-4)
    assert bootstrap_intervals(truth, scores, CLASSES, resamples=200, seed=5) == mine


def test_undefined_figures_are_null_and_single_images_do_not_crash():
    truth = np.array([0] * 6 + [1] * 5 + [2] * 0)
    truth = np.append(truth, 2)  # a class with one image: pooled, not dropped
    scores = np.random.default_rng(1).random((len(truth), 3))
    result = bootstrap_intervals(truth[:-1], scores[:-1], CLASSES, resamples=50)
    polyp = result["class_wise"]["Polyp"]  # no Polyp image at all
    assert polyp["sensitivity"] is None and polyp["auc"] is None
    assert polyp["specificity"] is not None
    json.dumps(result)  # null, not NaN
    pooled = bootstrap_intervals(truth, scores, CLASSES, resamples=50)
    assert pooled["accuracy"] is not None


def test_a_thousand_resamples_of_five_thousand_images_take_seconds():
    truth, scores = scored(500, n_classes=10)
    started = time.perf_counter()
    result = bootstrap_intervals(truth, scores, [f"c{i}" for i in range(10)])
    assert time.perf_counter() - started < 20
    low, high = result["accuracy"]
    accuracy = np.mean(scores.argmax(1) == truth)
    assert low < accuracy < high and high - low < 0.05


def test_evaluation_reports_and_prints_intervals_but_keeps_them_out_of_metrics_json(tmp_path):
    truth, scores = scored(10)
    evaluation = evaluate_scores(
        scores.astype(np.float32),
        truth,
        CLASSES,
        [f"img_{n}.png" for n in range(len(truth))],
        None,
        False,
        seed=0,
        precision="float32",
        bundle_id="test",
        resamples=100,
    )
    write_evaluation(evaluation, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    low, high = report["uncalibrated"]["intervals"]["balanced_accuracy"]
    assert low <= report["uncalibrated"]["balanced_accuracy"] <= high
    assert report["uncalibrated"]["intervals"]["class_wise"]["Polyp"]["auc"] is not None
    assert "intervals" not in json.loads((tmp_path / "metrics.json").read_text())
    with console.capture() as captured:
        console.print(_class_table(evaluation.metrics))
        _print_evaluation_summary(evaluation.report, "images")
    printed = captured.get()
    assert f"[{low:.3f}-{high:.3f}]" in printed
    assert "[low-high]: 95 % bootstrap intervals" in printed
    auc_low = report["uncalibrated"]["intervals"]["class_wise"]["Polyp"]["auc"][0]
    assert f"[{auc_low:.3f}-" in printed
