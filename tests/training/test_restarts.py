"""A condition whose fit never learns is fitted again from new weights, and one that never
learns at all is published as it is, marked, rather than ending hours of training."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gicls.models.bundle import read_manifest
from gicls.training import pipeline
from gicls.training.cli import app
from gicls.training.fit import RESTART_SEED_STRIDE

from .conftest import make_tree, tiny_config
from .test_fit import constant_model

runner = CliRunner()
CLASSES = ("Bleeding", "Normal", "Polyp")


@pytest.mark.slow
def test_fits_that_never_learn_are_started_again_and_a_hopeless_one_is_marked(
    tmp_path, monkeypatch
):
    make_tree(tmp_path / "data", {c: 8 for c in CLASSES}, size=32)
    # What each condition is given to fit, in order: Bleeding's first network is dead, every
    # one of Normal's is; the rest are the real networks.
    dead = {"Bleeding": 1, "Normal": 99}
    built: list[str] = []
    real_fit, real_new_model = pipeline.fit_into, pipeline.new_model

    def fit_into(config, data, balanced, *args, **kwargs):
        built.append(balanced.class_name)
        return real_fit(config, data, balanced, *args, **kwargs)

    def new_model(architecture, image_size, *args, **kwargs):
        condition = built[-1]
        if dead.get(condition, 0) > 0:
            dead[condition] -= 1
            return constant_model(image_size)
        return real_new_model(architecture, image_size, *args, **kwargs)

    monkeypatch.setattr(pipeline, "fit_into", fit_into)
    monkeypatch.setattr(pipeline, "new_model", new_model)
    result = runner.invoke(app, ["all", "-c", str(tiny_config(tmp_path, CLASSES, epochs=3))])
    assert result.exit_code == 0, result.output

    models = read_manifest(tmp_path / "Models").models
    assert (models["Bleeding"].restarts, models["Bleeding"].never_learned) == (1, False)
    assert (models["Normal"].restarts, models["Normal"].never_learned) == (2, True)
    assert (models["Polyp"].restarts, models["Polyp"].never_learned) == (0, False)
    assert models["Bleeding"].epochs_trained == 3  # the restart's own epochs
    # Logged for each attempt that never learned, with its seed: Bleeding's first, and all
    # three of Normal's (index 1: a new seed each time).
    assert result.output.count("fit_never_learned") == 4
    normal_seeds = [42 + 1 + restart * RESTART_SEED_STRIDE for restart in range(3)]
    assert all(f'"seed": {seed}' in result.output for seed in normal_seeds)  # JSON log lines
    table, _ = result.output.split("Normal never learned (after 2 restarts")
    assert "┃ restarts" in table  # the column shown when a fit restarted
