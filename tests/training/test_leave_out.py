"""`gicls-train evaluate --leave-out SOURCE`: train without a source, evaluate on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gicls.hashing import file_sha256
from gicls.models.bundle import model_file_name, read_manifest
from gicls.training.cli import app

from .conftest import make_tree, record_fits, snapshot, sort_into_sources, tiny_config

runner = CliRunner()
CLASSES = ("Bleeding", "Normal", "Polyp")


def two_centre_tree(root: Path) -> Path:
    """Bleeding and Normal from centres A and B, Polyp from A only."""
    make_tree(root, {c: 8 for c in CLASSES}, size=32)
    return sort_into_sources(root, lambda name, n: "A" if name == "Polyp" or n % 2 else "B")


@pytest.mark.slow
def test_leave_one_source_out_trains_without_it_drops_emptied_classes_and_scores_it(tmp_path):
    data = two_centre_tree(tmp_path / "data")
    before = snapshot(data)
    centre_a = {file_sha256(p) for p in data.glob("*/A/*.png")}
    out = tmp_path / "loso-A"
    done = runner.invoke(
        app,
        [
            "evaluate",
            "--leave-out",
            "A",
            "--out",
            str(out),
            "-c",
            str(tiny_config(tmp_path, CLASSES)),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "Polyp: no training frames without source 'A', dropped from this run." in done.output
    assert "8 frame(s) of 'A' in dropped classes not evaluated." in done.output
    # Its own models, trained without a single frame of centre A; models_dir untouched.
    manifest = read_manifest(out / "models")
    assert manifest.classes == ["Bleeding", "Normal"]
    trained_on = {file_sha256(p) for p in (out / "data" / "training").rglob("*.png")}
    assert trained_on and trained_on.isdisjoint(centre_a)
    assert manifest.data["images_found"] == {"Bleeding": 4, "Normal": 4}
    assert not (tmp_path / "Models").exists()
    assert snapshot(data) == before
    report = json.loads((out / "evaluation" / "report.json").read_text())
    assert report["images"] == 8  # centre A's Bleeding and Normal frames
    assert report["leave_out"] == {
        "source": "A",
        "trained_on_sources": ["B"],
        "dropped_classes": ["Polyp"],
        "frames_not_evaluated": 8,
    }
    assert set(report["per_source"]) == {"A"}
    assert set(report["uncalibrated"]["class_wise_metrics"]) == {"Bleeding", "Normal"}
    assert "Left-out source 'A', per class" in done.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--leave-out", "A"], 2, "needs '--out DIR'"),
        (["--leave-out", "A", "--out", "Models"], 1, "would write into or over models_dir"),
        (["--leave-out", "C", "--out", "loso"], 1, "no source 'C' in"),
        (["--leave-out", "B", "--out", "loso"], 1, "only 1 class(es) have training frames"),
    ],
)
def test_bad_leave_out_requests_are_refused_and_write_nothing(tmp_path, args, code, message):
    two_centre_tree(tmp_path / "data")
    # B becomes the only source of Bleeding and Normal: without it, Polyp alone would be left.
    for name in ("Bleeding", "Normal"):
        for image in (tmp_path / "data" / name / "A").glob("*.png"):
            image.rename(tmp_path / "data" / name / "B" / image.name)
    config = tiny_config(tmp_path, CLASSES)
    before = snapshot(tmp_path)
    absolute = [str(tmp_path / a) if a in ("Models", "loso") else a for a in args]
    done = runner.invoke(app, ["evaluate", *absolute, "-c", str(config)])
    assert done.exit_code == code, done.output
    assert message in done.output
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_a_stopped_leave_out_run_resumes_keeping_the_conditions_it_finished(tmp_path, monkeypatch):
    two_centre_tree(tmp_path / "data")
    config = tiny_config(tmp_path, CLASSES)
    out = tmp_path / "loso-A"
    fitted, power_cut = record_fits(monkeypatch, stop_at="Normal")  # its second condition
    command = ["evaluate", "--leave-out", "A", "--out", str(out), "-c", str(config)]
    stopped = runner.invoke(app, command)
    assert stopped.exit_code != 0
    kept_bleeding = file_sha256(out / ".models.unfinished" / model_file_name("Bleeding"))
    assert not (out / "models").exists() and not (out / "evaluation").exists()

    again = runner.invoke(app, command)
    assert again.exit_code == 1 and "or --resume to go on with the run in it" in again.output
    fitted.clear()
    power_cut[0] = False
    resumed = runner.invoke(app, [*command, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert fitted == ["Normal"]
    assert file_sha256(out / "models" / model_file_name("Bleeding")) == kept_bleeding
    assert read_manifest(out / "models").is_complete()
    report = json.loads((out / "evaluation" / "report.json").read_text())
    assert report["images"] == 8 and report["leave_out"]["source"] == "A"


def test_resume_goes_only_with_the_leave_out_run_it_was_started_as(tmp_path):
    two_centre_tree(tmp_path / "data")
    config = tiny_config(tmp_path, CLASSES)
    out = tmp_path / "loso-B"
    out.mkdir()
    (out / "leave_out.json").write_text(json.dumps({"source": "B", "source_pattern": None}))
    before = snapshot(tmp_path)
    cases = [
        (["--leave-out", "A", "--out", str(out), "--resume"], 1, "left out {'source': 'B'"),
        (["--leave-out", "A", "--out", str(tmp_path / "new"), "--resume"], 1, "holds no leave"),
        (["--resume"], 2, "option '--resume' goes with '--leave-out'"),
    ]
    for args, code, message in cases:
        done = runner.invoke(app, ["evaluate", *args, "-c", str(config)])
        assert done.exit_code == code and message in done.output, done.output
    assert snapshot(tmp_path) == before
