"""gicls-train end to end: the issue's acceptance run and every user error path."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gicls.config import DEFAULT_CLASSES
from gicls.hashing import file_sha256
from gicls.models.bundle import verify_bundle
from gicls.training.cli import app
from gicls.training.scan import scan_labelled_tree

from .conftest import make_tree
from .test_metrics import ORGANISER_KEYS

runner = CliRunner()


def write_config(folder: Path, extra: str = "", classes: tuple[str, ...] | None = None) -> Path:
    lines = [f"classes = {json.dumps(list(classes))}"] if classes else []
    lines += [
        "[paths]",
        'training_dir = "data"',
        "[balance]",
        "target_count = 40",
        "[train]",
        "image_size = 64",
        "epochs = 2",
        extra,
    ]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def nothing_written(folder: Path) -> bool:
    return not (folder / "Models").exists() and not (folder / "Balanced_Data").exists()


@pytest.mark.slow
def test_all_builds_a_verified_ten_model_bundle(tmp_path):
    """Acceptance: demo-data 10 x 30, image_size 64, epochs 2, target_count 40."""
    gicls_train = Path(sys.executable).parent / "gicls-train"
    subprocess.run(
        [gicls_train, "demo-data", tmp_path / "data", "--per-class", "30", "--size", "64"],
        check=True,
        capture_output=True,
    )
    config = write_config(tmp_path)
    done = subprocess.run([gicls_train, "all", "-c", config], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Ensemble on" in done.stdout

    models = tmp_path / "Models"
    manifest = verify_bundle(models, DEFAULT_CLASSES)
    for name in DEFAULT_CLASSES:
        assert file_sha256(models / f"{name}_model.keras") == manifest.models[name].sha256
        assert (models / "history" / f"{name}.csv").read_text().startswith("epoch,")
        assert (models / "plots" / f"{name}_training.png").read_bytes()[:4] == b"\x89PNG"
        for side in ("positive", "negative"):
            assert len(list((tmp_path / "Balanced_Data" / name / side).iterdir())) == 40
    assert manifest.data["split_seed"] == 42
    held_out = sum(manifest.data["validation_images"].values())
    # 20 % of 30 per class; near-identical synthetic frames may join a group and count once.
    assert 50 <= held_out <= 60
    validation = manifest.metrics["validation"]
    assert validation["images"] == held_out
    assert set(validation["uncalibrated"]) >= {"mean_auc", "balanced_accuracy", "accuracy"}
    assert validation["suggested_review_threshold"]["review_rate"] <= 0.10

    # No image content on both sides: every balanced training entry against the recorded
    # held-out split, whose rows are real images of the data folder.
    train_hashes = {
        entry["sha256"]
        for name in DEFAULT_CLASSES
        for entry in read_csv(tmp_path / "Balanced_Data" / name / "manifest.csv")
    }
    held_out_rows = read_csv(models / "split.csv")
    assert len(held_out_rows) == held_out
    scanned = scan_labelled_tree(tmp_path / "data", DEFAULT_CLASSES).records
    assert {row["sha256"] for row in held_out_rows} <= {r.sha256 for r in scanned}
    assert train_hashes and train_hashes.isdisjoint(row["sha256"] for row in held_out_rows)


@pytest.mark.slow
def test_fitting_one_condition_updates_the_bundle_consistently(tmp_path):
    classes = ("Bleeding", "Normal", "Polyp")
    make_tree(tmp_path / "data", {c: 8 for c in classes})
    config = write_config(tmp_path, classes=classes, extra="epochs = 1\nimage_size = 32")
    config.write_text(config.read_text().replace("image_size = 64\nepochs = 2\n", ""))
    assert runner.invoke(app, ["fit", "-c", str(config)]).exit_code == 0
    before = verify_bundle(tmp_path / "Models", classes)
    result = runner.invoke(
        app,
        [
            "fit",
            "Normal",
            "-c",
            str(config),
        ],
    )
    assert result.exit_code == 0, result.output
    after = verify_bundle(tmp_path / "Models", classes)
    assert after.models["Bleeding"] == before.models["Bleeding"]
    assert after.models["Normal"].sha256 != before.models["Normal"].sha256
    assert after.bundle_id != before.bundle_id
    assert not (tmp_path / "Balanced_Data").exists()  # fit alone does not materialise


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("epoch = 3", "unknown key 'train.epoch'"),
        ('batch_size = "many"', "train.batch_size"),
        ('architecture = "vgg99"', "unknown architecture"),
        # seed_cnn applies only the classic layers: a capsule key would be silently ignored.
        ("[augment]\nzoom = 0.1", "key 'augment.zoom': architecture 'seed_cnn'"),
    ],
)
def test_config_errors_exit_2_and_write_nothing(tmp_path, extra, fragment):
    make_tree(tmp_path / "data", {c: 3 for c in ("A", "B")})
    config = write_config(tmp_path, extra=extra, classes=("A", "B"))
    result = runner.invoke(app, ["all", "-c", str(config)])
    assert result.exit_code == 2
    assert fragment in result.output
    assert nothing_written(tmp_path)


def test_missing_class_folder_is_named_and_nothing_written(tmp_path):
    make_tree(tmp_path / "data", {"A": 3})
    config = write_config(tmp_path, classes=("A", "B"))
    result = runner.invoke(app, ["all", "-c", str(config)])
    assert result.exit_code == 1
    assert "missing class folder(s): B" in result.output
    assert "Traceback" not in result.output
    assert nothing_written(tmp_path)


def test_unknown_condition_argument_is_refused(tmp_path):
    make_tree(tmp_path / "data", {c: 3 for c in ("A", "B")})
    config = write_config(tmp_path, classes=("A", "B"))
    result = runner.invoke(app, ["fit", "C", "-c", str(config)])
    assert result.exit_code == 1
    assert "unknown condition(s): C; known: A, B" in result.output
    assert nothing_written(tmp_path)


def test_missing_config_file_is_a_config_error(tmp_path):
    result = runner.invoke(app, ["all", "-c", str(tmp_path / "absent.toml")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_balance_writes_exact_counts(tmp_path):
    make_tree(tmp_path / "data", {c: 6 for c in ("A", "B", "C")})
    config = write_config(tmp_path, classes=("A", "B", "C"))
    result = runner.invoke(app, ["balance", "B", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "B: 40 positive, 40 negative" in result.output
    assert sorted(p.name for p in (tmp_path / "Balanced_Data").iterdir()) == ["B"]


def test_scan_reports_counts(tmp_path):
    make_tree(tmp_path / "data", {"A": 2, "B": 3})
    config = write_config(tmp_path, classes=("A", "B"))
    result = runner.invoke(app, ["scan", "-c", str(config)])
    assert result.exit_code == 0
    assert "skipped files: 0; duplicate groups: 0" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("method", ["none", "platt"])
def test_evaluate_writes_metrics_predictions_and_plots(tmp_path, method):
    import pandas as pd

    classes = ("Bleeding", "Normal", "Polyp")
    make_tree(tmp_path / "data", {c: 10 for c in classes})
    make_tree(tmp_path / "external", {c: 4 for c in classes}, seed=3)
    config = write_config(tmp_path, classes=classes)
    config.write_text(
        config.read_text().replace("image_size = 64\nepochs = 2\n", "image_size = 32\nepochs = 1\n")
        + f'[calibration]\nmethod = "{method}"\n'
    )
    assert runner.invoke(app, ["all", "-c", str(config)]).exit_code == 0
    manifest = verify_bundle(tmp_path / "Models", classes)
    assert (manifest.calibration is None) == (method == "none")
    assert (tmp_path / "Models" / "evaluation" / "confusion_matrix.png").exists()

    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        ["evaluate", "--data", str(tmp_path / "external"), "--out", str(out), "-c", str(config)],
    )
    assert result.exit_code == 0, result.output
    assert "Per class" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ORGANISER_KEYS
    assert set(metrics["class_wise_metrics"]) == set(classes)
    predictions = pd.read_excel(out / "predictions.xlsx")
    assert list(predictions.columns) == ["image_path", *classes, "predicted_class"]
    assert len(predictions) == 12
    for picture in ("confusion_matrix.png", "roc_curves.png", "review_tradeoff.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    # The held-out default replays the bundle's own split.
    held_out = runner.invoke(app, ["evaluate", "-c", str(config)])
    assert held_out.exit_code == 0, held_out.output
    replayed = tmp_path / "Models-evaluations" / manifest.bundle_id / "held-out"
    report = json.loads((replayed / "report.json").read_text())
    assert report["images"] == sum(manifest.data["validation_images"].values())
    assert ("calibrated" in report) == (method != "none")


def test_score_reproduces_an_official_score(tmp_path):
    from tests.conftest import shared_data

    root = shared_data("capsule-vision-2024")
    out = tmp_path / "m.json"
    result = runner.invoke(
        app,
        [
            "score",
            str(root / "test_data.xlsx"),
            str(root / "submissions" / "WueVision_predicted_test_dataset.xlsx"),
            "--json",
            str(out),
            "-c",
            str(write_config(tmp_path)),
        ],
    )
    assert result.exit_code == 0, result.output
    ours = json.loads(out.read_text())
    official = json.loads(
        (root / "official_metrics" / "WueVision_predicted_test_dataset_metrics.json").read_text()
    )
    assert ours["mean_auc"] == pytest.approx(official["mean_auc"], abs=1e-9)
    assert ours["avg_f1"] == pytest.approx(official["avg_f1"], abs=1e-9)


def test_score_bad_file_is_one_line_and_non_zero(tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("image_path,class_label\nC:\\x\\a.jpg,Bleeding\n")
    predictions = tmp_path / "pred.csv"
    predictions.write_text("image_path,Bleeding\na.jpg,0.5\n")
    result = runner.invoke(
        app, ["score", str(truth), str(predictions), "-c", str(write_config(tmp_path))]
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "Normal" in result.output  # a missing class column is named


@pytest.mark.parametrize("command", ["all", "evaluate"])
def test_a_gpu_asked_for_training_and_absent_stops_before_any_work(tmp_path, command):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    classes = ("Bleeding", "Normal", "Polyp")
    make_tree(tmp_path / "data", {c: 4 for c in classes})
    config = write_config(tmp_path, 'device = "gpu"', classes=classes)
    result = runner.invoke(app, [command, "-c", str(config)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: train.device = 'gpu', but TensorFlow sees no GPU")
    assert nothing_written(tmp_path)
