"""What `evaluate` reports about calibration, and that it matches what the daemon serves."""

from __future__ import annotations

import numpy as np

from gicls.models.bundle import Calibration, ClassCalibration, read_manifest
from gicls.models.ensemble import FusedEnsemble
from gicls.training.calibration import fit_calibration
from gicls.training.cli import _print_evaluation_summary
from gicls.training.evaluate import evaluate_scores

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
