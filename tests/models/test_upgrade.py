"""Bundles this code cannot serve exactly are refused; format 1 bundles are migrated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gicls.errors import ModelBundleError
from gicls.hashing import file_sha256
from gicls.models.bundle import FORMAT_VERSION, read_manifest, verify_bundle
from gicls.models.ensemble import FusedEnsemble
from gicls.training.cli import app
from tests.conftest import write_format1_bundle

CLASSES = ("Bleeding", "Normal", "Polyp")


def _config(folder: Path) -> Path:
    path = folder / "config.toml"
    path.write_text(f'classes = {json.dumps(list(CLASSES))}\n[paths]\nmodels_dir = "Models"\n')
    return path


def _unwrapped(output: str) -> str:
    """Rich wraps long lines at the terminal width."""
    return " ".join(output.split())


def test_a_format_1_bundle_is_refused_with_the_command_that_migrates_it(tmp_path):
    folder = write_format1_bundle(tmp_path / "Models", CLASSES)
    with pytest.raises(ModelBundleError) as caught:
        verify_bundle(folder, CLASSES)
    message = str(caught.value)
    assert "format_version is 1" in message
    assert "serves format_version 2-3" in message
    assert "gicls-train upgrade-bundle" in message


def test_a_newer_format_is_refused_naming_both_versions(tmp_path):
    folder = write_format1_bundle(tmp_path / "Models", CLASSES, format_version=7)
    with pytest.raises(ModelBundleError, match=r"format_version is 7.*serves format_version 2-3"):
        verify_bundle(folder)


def test_another_preprocessing_is_refused_naming_field_value_and_rebuild(make_bundle):
    folder = make_bundle(CLASSES)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["preprocessing"]["decode"] = "opencv-bgr8-area-v3"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelBundleError) as caught:
        verify_bundle(folder)
    message = str(caught.value)
    assert "preprocessing.decode is 'opencv-bgr8-area-v3'" in message
    assert "'pillow-rgb8-exif-bilinear-v1'" in message
    assert "gicls-train all" in message


def test_upgrade_bundle_migrates_format_1_keeping_every_model(tmp_path):
    folder = write_format1_bundle(tmp_path / "Models", CLASSES)
    before = json.loads((folder / "manifest.json").read_text())
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    import keras

    expected = np.concatenate(
        [
            keras.models.load_model(folder / f"{name}_model.keras").predict(
                images.astype("float32"), verbose=0
            )
            for name in CLASSES
        ],
        axis=1,
    )

    result = CliRunner().invoke(app, ["upgrade-bundle", "-c", str(_config(tmp_path))])

    assert result.exit_code == 0, result.output
    assert f"bundle id {before['bundle_id']} -> " in _unwrapped(result.output)
    manifest = verify_bundle(folder, CLASSES)
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.migrated_from is not None
    assert manifest.migrated_from["bundle_id"] == before["bundle_id"]
    for name in CLASSES:
        assert file_sha256(folder / f"{name}_model.keras") == before["models"][name]["sha256"]
    assert (folder / "history" / "Bleeding.csv").read_text() == "epoch,loss\n0,0.7\n"
    served = FusedEnsemble.from_bundle(folder, CLASSES)(images)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Models", "config.toml"]

    again = CliRunner().invoke(app, ["upgrade-bundle", "-c", str(_config(tmp_path))])
    assert again.exit_code == 0 and f"already format {FORMAT_VERSION}" in _unwrapped(again.output)
    assert read_manifest(folder) == manifest


def test_upgrade_refuses_a_format_1_bundle_with_a_modified_model(tmp_path):
    folder = write_format1_bundle(tmp_path / "Models", CLASSES)
    with (folder / "Normal_model.keras").open("ab") as handle:
        handle.write(b"\0")
    before = (folder / "manifest.json").read_bytes()
    result = CliRunner().invoke(app, ["upgrade-bundle", "-c", str(_config(tmp_path))])
    assert result.exit_code != 0
    assert "Normal_model.keras has sha256" in result.output
    assert (folder / "manifest.json").read_bytes() == before
