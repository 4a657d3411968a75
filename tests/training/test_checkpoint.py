"""A stopped `gicls-train all` keeps the conditions it finished for the next run of the same
training, and never touches the live bundle meanwhile."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gicls.hashing import file_sha256
from gicls.models.bundle import model_file_name, read_manifest
from gicls.training.cli import app

from .conftest import make_tree, record_fits, snapshot, tiny_config

runner = CliRunner()
CLASSES = ("Bleeding", "Normal", "Polyp")


@pytest.mark.slow
def test_a_stopped_training_goes_on_with_the_conditions_it_finished(tmp_path, monkeypatch):
    make_tree(tmp_path / "data", {c: 8 for c in CLASSES}, size=32)
    command = ["all", "-c", str(tiny_config(tmp_path, CLASSES))]
    assert runner.invoke(app, command).exit_code == 0  # the live bundle the daemon serves
    live = snapshot(tmp_path / "Models")
    unfinished = tmp_path / ".Models.unfinished"
    fitted, power_cut = record_fits(monkeypatch, stop_at="Normal")

    stopped = runner.invoke(app, command)
    assert stopped.exit_code != 0
    assert snapshot(tmp_path / "Models") == live
    kept_bleeding = file_sha256(unfinished / model_file_name("Bleeding"))

    fitted.clear()
    power_cut[0] = False
    resumed = runner.invoke(app, command)
    assert resumed.exit_code == 0, resumed.output
    assert fitted == ["Normal", "Polyp"]
    assert read_manifest(tmp_path / "Models").is_complete()
    assert file_sha256(tmp_path / "Models" / model_file_name("Bleeding")) == kept_bleeding
    assert not unfinished.exists()


@pytest.mark.slow
def test_kept_fits_of_other_settings_are_fitted_again(tmp_path, monkeypatch):
    make_tree(tmp_path / "data", {c: 8 for c in CLASSES}, size=32)
    fitted, power_cut = record_fits(monkeypatch, stop_at="Normal")
    assert runner.invoke(app, ["all", "-c", str(tiny_config(tmp_path, CLASSES))]).exit_code != 0
    assert (tmp_path / ".Models.unfinished" / model_file_name("Bleeding")).is_file()

    fitted.clear()
    power_cut[0] = False
    changed = runner.invoke(app, ["all", "-c", str(tiny_config(tmp_path, CLASSES, epochs=2))])
    assert changed.exit_code == 0, changed.output
    assert fitted == list(CLASSES)
    assert "unfinished_training_discarded" in changed.output
    assert not (tmp_path / ".Models.unfinished").exists()


@pytest.mark.slow
def test_a_partial_fit_leaves_the_other_kept_fits_for_the_next_run(tmp_path, monkeypatch):
    make_tree(tmp_path / "data", {c: 8 for c in CLASSES}, size=32)
    config = str(tiny_config(tmp_path, CLASSES))
    fitted, power_cut = record_fits(monkeypatch, stop_at="Normal")
    assert runner.invoke(app, ["all", "-c", config]).exit_code != 0  # Bleeding kept

    fitted.clear()
    assert runner.invoke(app, ["fit", "Polyp", "-c", config]).exit_code == 0
    assert fitted == ["Polyp"]
    power_cut[0] = False
    assert runner.invoke(app, ["all", "-c", config]).exit_code == 0
    assert fitted == ["Polyp", "Normal", "Polyp"]  # Bleeding was still kept
    assert not (tmp_path / ".Models.unfinished").exists()
