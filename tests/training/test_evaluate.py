"""What `evaluate` reports about calibration, and that it matches what the daemon serves."""

from __future__ import annotations

import numpy as np

from gicls.models.bundle import Calibration, ClassCalibration, read_manifest
from gicls.models.ensemble import FusedEnsemble
from gicls.training.calibration import fit_calibration
from gicls.training.cli import _print_evaluation_summary
from gicls.training.evaluate import device_reference, evaluate_scores

CLASSES = ("Bleeding", "Normal", "Polyp")


def evaluate(raw, truth, calibration, fitted_here):
    names = [f"img_{n}.png" for n in range(len(truth))]
    return evaluate_scores(
        raw,
        truth,
        CLASSES,
        names,
        calibration,
        fitted_here,
        seed=0,
        precision="float32",
        bundle_id="test",
    )


def test_calibrated_figures_that_cannot_be_cross_fitted_say_in_sample(capsys):
    rng = np.random.default_rng(0)
    truth = np.array([0] * 8 + [1] * 8 + [2])  # one Polyp image: no stratified folds
    raw = rng.uniform(0.05, 0.95, (len(truth), 3)).astype(np.float32)
    calibration = fit_calibration(raw, truth, CLASSES, "platt")
    report = evaluate(raw, truth, calibration, fitted_here=True).report
    assert report["calibration"]["in_sample"] is True
    assert report["calibration"]["figures"].startswith("in-sample")
    _print_evaluation_summary(report, "held-out images")
    printed = capsys.readouterr().out
    assert "(calibrated, in-sample)" in printed
    assert "(uncalibrated)" in printed


def test_cross_fitted_figures_are_not_called_in_sample():
    rng = np.random.default_rng(1)
    truth = np.repeat([0, 1, 2], 10)
    raw = rng.uniform(0.05, 0.95, (len(truth), 3)).astype(np.float32)
    calibration = fit_calibration(raw, truth, CLASSES, "platt")
    report = evaluate(raw, truth, calibration, fitted_here=True).report
    assert report["calibration"] == {
        "method": "platt",
        "figures": "cross-fitted on this split",
        "in_sample": False,
    }


def test_evaluate_reports_the_calibrated_scores_the_fused_graph_serves(make_bundle):
    models_dir = make_bundle(CLASSES, image_size=32)
    plain = read_manifest(models_dir)
    calibration = Calibration(
        method="platt",
        classes={
            "Bleeding": ClassCalibration(scale=2.5, shift=-0.4),
            "Normal": ClassCalibration(scale=0.7, shift=0.9),
            "Polyp": ClassCalibration(scale=1.3, shift=0.0),
        },
    )
    images = np.random.default_rng(2).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    raw = FusedEnsemble(models_dir, plain)(images)
    served = FusedEnsemble(models_dir, plain.model_copy(update={"calibration": calibration}))(
        images
    )
    reported = evaluate(raw, np.repeat([0, 1, 2], 4), calibration, fitted_here=False).scores
    assert not np.allclose(served, raw, atol=1e-3)  # the maps really move the scores
    np.testing.assert_allclose(reported, served, atol=1e-5)


def test_operating_points_are_reported_printed_and_plotted(tmp_path, capsys):
    from gicls.models.bundle import ClassThreshold
    from gicls.training.evaluate import write_evaluation

    # Bleeding's two images score 0.9 and 0.7; at threshold 0.7 both are flagged, and so is
    # one of the four others (0.8): sensitivity 1, specificity 3/4, 500 per 1,000.
    raw = np.array(
        [
            [0.9, 0.1, 0.1],
            [0.7, 0.2, 0.1],
            [0.8, 0.9, 0.1],
            [0.1, 0.8, 0.2],
            [0.2, 0.1, 0.9],
            [0.3, 0.2, 0.8],
        ],
        np.float32,
    )
    truth = np.array([0, 0, 1, 1, 2, 2])
    # A fitted threshold is a float32 score itself (0.7 as float32 is just below 0.7).
    at = float(np.float32(0.7))
    thresholds = {"Bleeding": ClassThreshold(threshold=at, target_sensitivity=0.95)}
    names = [f"img_{n}.png" for n in range(len(truth))]
    evaluation = evaluate_scores(
        raw, truth, CLASSES, names, None, False, 0, "float32", "test", thresholds=thresholds
    )

    figures = evaluation.report["operating_points"]["classes"]["Bleeding"]
    assert (figures["sensitivity"], figures["specificity"]) == (1.0, 0.75)
    assert figures["flagged_per_1000"] == 500.0
    _print_evaluation_summary(evaluation.report, "images")
    printed = " ".join(capsys.readouterr().out.split())
    assert (
        "Operating point Bleeding (threshold 0.700 for sensitivity 0.95): sensitivity 1.000, "
        "specificity 0.750, 500 frames flagged per 1,000"
    ) in printed
    written = write_evaluation(evaluation, tmp_path)
    for name in ("operating_points_roc.png", "frames_to_review.png"):
        assert tmp_path / name in written
        data = (tmp_path / name).read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 10_000


def test_the_device_reference_is_the_held_out_share_and_upper_score_of_each_class():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.1, 0.9]], dtype=np.float32)
    reference = device_reference(scores, ["A", "B"], "held-out split of /data")
    assert reference.images == 4 and reference.measured_on == "held-out split of /data"
    assert reference.predicted_share == {"A": 0.75, "B": 0.25}
    # 95 % quantile, linear between the 3rd and 4th of the sorted scores: a + 0.85 (b - a).
    assert reference.score_quantile == 0.95
    np.testing.assert_allclose(
        [reference.score_upper["A"], reference.score_upper["B"]], [0.885, 0.81], rtol=1e-6
    )
    assert device_reference(scores[:0], ["A", "B"], "none") is None
