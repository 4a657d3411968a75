"""The bundle's held-out split is recorded, replayed by `evaluate` and guarded by `fit CLASS`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gicls.hashing import file_sha256
from gicls.models.bundle import read_manifest
from gicls.training.cli import app

from .conftest import make_tree, write_image

runner = CliRunner()
CLASSES = ("Bleeding", "Normal", "Polyp")


def small_config(folder: Path, extra: str = "") -> Path:
    path = folder / "config.toml"
    path.write_text(
        f"classes = {json.dumps(list(CLASSES))}\n"
        '[paths]\ntraining_dir = "data"\n'
        f"[balance]\ntarget_count = 20\n{extra}\n"
        "[train]\nimage_size = 32\nepochs = 1\n"
        '[calibration]\nmethod = "platt"\n'
    )
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its inode and mtime: any write shows."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def held_out_paths(tmp_path: Path) -> list[Path]:
    with (tmp_path / "Models" / "split.csv").open() as handle:
        wanted = {row["sha256"] for row in csv.DictReader(handle)}
    return [p for p in sorted((tmp_path / "data").rglob("*.png")) if file_sha256(p) in wanted]


@pytest.mark.slow
def test_the_split_is_recorded_replayed_exactly_and_guards_partial_fits(tmp_path):
    make_tree(tmp_path / "data", {c: 10 for c in CLASSES})
    config = small_config(tmp_path)
    trained = runner.invoke(app, ["all", "-c", str(config)])
    assert trained.exit_code == 0, trained.output
    models = tmp_path / "Models"
    manifest = read_manifest(models)
    record = manifest.data["split"]
    assert record["settings"]["balance.seed"] == 42
    assert record["settings"]["balance.near_duplicate_bits"] == 10
    assert record["fractions"]["Normal"] == {"requested": 0.2, "achieved": 0.2}
    assert len(held_out_paths(tmp_path)) == record["held_out_images"]
    assert record["held_out_images"] == manifest.metrics["validation"]["images"]

    # New data and another grouping setting since training: a re-split would now differ.
    write_image(tmp_path / "data" / "Bleeding" / "new.png", "Bleeding", 0, seed=999)
    config.write_text(
        config.read_text().replace(
            "target_count = 20", "target_count = 20\nnear_duplicate_bits = 30"
        )
    )
    before = snapshot(models)
    result = runner.invoke(app, ["evaluate", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert snapshot(models) == before  # nothing written into the live bundle
    out = tmp_path / "Models-evaluations" / manifest.bundle_id / "held-out"
    report = json.loads((out / "report.json").read_text())
    recorded = manifest.metrics["validation"]
    for variant in ("uncalibrated", "calibrated"):
        for key in ("accuracy", "mean_auc", "balanced_accuracy"):
            assert report[variant][key] == recorded[variant][key], (variant, key)
    assert report["images"] == recorded["images"]

    # A partial fit refuses models validated on another split, naming what changed.
    refused = runner.invoke(app, ["fit", "Normal", "-c", str(small_config(tmp_path, "seed = 7"))])
    assert refused.exit_code != 0
    assert "balance.seed changed from 42 to 7" in refused.output
    assert "gicls-train all" in refused.output
    assert snapshot(models) == before

    # Same settings, but a held-out image is gone: fit names the data, evaluate the count.
    config = small_config(tmp_path)
    held_out_paths(tmp_path)[0].unlink()
    refused = runner.invoke(app, ["fit", "Normal", "-c", str(config)])
    assert refused.exit_code != 0
    assert "held-out images differ" in refused.output
    missing = runner.invoke(app, ["evaluate", "-c", str(config)])
    assert missing.exit_code == 1
    total = record["held_out_images"]
    assert f"1 of the bundle's {total} held-out images are not in" in missing.output
    assert snapshot(models) == before
