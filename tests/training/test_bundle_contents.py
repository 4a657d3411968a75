"""What gicls-train puts into a bundle: guard frames from the held-out split, nothing stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gicls.models.bundle import verify_bundle
from gicls.models.ensemble import FusedEnsemble
from gicls.models.preprocessing import decode_image
from gicls.training.cli import app

from .conftest import make_tree
from .test_cli import write_config

CLASSES = ("Bleeding", "Normal", "Polyp")
runner = CliRunner()


def _fit(folder: Path, classes: tuple[str, ...], *conditions: str) -> None:
    config = write_config(folder, classes=classes, extra="epochs = 1\nimage_size = 32")
    config.write_text(config.read_text().replace("image_size = 64\nepochs = 2\n", ""))
    result = runner.invoke(app, ["fit", *conditions, "-c", str(config)])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_the_guard_frames_are_the_held_out_images_with_their_scores(tmp_path):
    make_tree(tmp_path / "data", {c: 8 for c in CLASSES})
    _fit(tmp_path, CLASSES)
    models = tmp_path / "Models"
    manifest = verify_bundle(models, CLASSES)
    assert manifest.guard is not None
    frames = np.load(models / manifest.guard.frames.file)
    scores = np.load(models / manifest.guard.scores.file)
    held_out = sum(manifest.data["validation_images"].values())
    assert frames.shape == (held_out, 32, 32, 3) and frames.dtype == np.uint8
    assert scores.shape == (held_out, len(CLASSES)) and scores.dtype == np.float32
    decoded = {decode_image(p, 32).tobytes() for p in (tmp_path / "data").rglob("*.png")}
    assert {frame.tobytes() for frame in frames} <= decoded  # real frames, not synthetic ones
    served = FusedEnsemble.from_bundle(models, CLASSES)(frames)
    np.testing.assert_allclose(served, scores, atol=1e-5)
    # The device check's reference: what the served ensemble predicts for the same images.
    reference = manifest.device_reference
    assert reference is not None and reference.images == held_out
    predicted = np.bincount(served.argmax(axis=1), minlength=len(CLASSES)) / held_out
    assert [reference.predicted_share[c] for c in CLASSES] == pytest.approx(predicted.tolist())
    assert f"held-out split of {tmp_path / 'data'}" == reference.measured_on


@pytest.mark.slow
def test_a_new_bundle_keeps_nothing_of_classes_or_evaluations_it_no_longer_has(tmp_path):
    import shutil

    make_tree(tmp_path / "data", {c: 8 for c in CLASSES})
    _fit(tmp_path, CLASSES)
    models = tmp_path / "Models"
    assert (models / "Polyp_model.keras").is_file()
    # What `gicls-train evaluate --data Capsule` wrote for the previous models.
    stale = models / "evaluation" / "Capsule" / "metrics.json"
    stale.parent.mkdir()
    stale.write_text("{}\n")

    shutil.rmtree(tmp_path / "data" / "Polyp")
    _fit(tmp_path, CLASSES[:2])

    verify_bundle(models, CLASSES[:2])
    names = {str(p.relative_to(models)) for p in models.rglob("*") if p.is_file()}
    assert not [name for name in names if "Polyp" in name]
    assert not stale.exists()
    assert "evaluation/metrics.json" in names  # the new bundle's own evaluation
    assert {"Bleeding_model.keras", "history/Normal.csv", "plots/Bleeding_training.png"} <= names


@pytest.mark.slow
def test_targets_become_bundle_thresholds_with_their_operating_points(tmp_path):
    make_tree(tmp_path / "data", {c: 10 for c in CLASSES})
    config = write_config(tmp_path, classes=CLASSES, extra="epochs = 1\nimage_size = 32")
    config.write_text(
        config.read_text().replace("image_size = 64\nepochs = 2\n", "")
        + '[calibration]\nmethod = "platt"\n'
        + "[decision]\ntarget_sensitivity = { Bleeding = 0.5, Polyp = 1.0 }\n"
    )
    assert runner.invoke(app, ["fit", "-c", str(config)]).exit_code == 0
    models = tmp_path / "Models"
    manifest = verify_bundle(models, CLASSES)

    assert manifest.thresholds is not None and list(manifest.thresholds) == ["Bleeding", "Polyp"]
    # Fitted on the calibrated scores the daemon sees: each is one of the held-out images'.
    guard_scores = np.load(models / manifest.guard.scores.file)
    for column, name in ((0, "Bleeding"), (2, "Polyp")):
        assert np.isclose(guard_scores[:, column], manifest.thresholds[name].threshold).any()
    points = manifest.metrics["validation"]["operating_points"]
    assert set(points["classes"]) == {"Bleeding", "Polyp"}
    assert points["classes"]["Polyp"]["target_sensitivity"] == 1.0
    assert 0 <= points["classes"]["Bleeding"]["flagged_per_1000"] <= 1000
    # gicls-train evaluate replays the held-out split: the same figures.
    result = runner.invoke(app, ["evaluate", "-c", str(config)])
    assert result.exit_code == 0, result.output
    report = next((tmp_path / "Models-evaluations").rglob("report.json"))
    import json

    assert json.loads(report.read_text())["operating_points"] == points
