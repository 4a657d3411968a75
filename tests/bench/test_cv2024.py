"""bench/cv2024.py writes configurations the normal CLI accepts (training is not run here)."""

import tomllib

import pytest

from bench import cv2024
from bench.recipes import RECIPES
from gicls.config import DEFAULT_CLASSES, parse_config
from gicls.training.grouping import record_sources
from gicls.training.scan import scan_labelled_tree
from tests.conftest import shared_data


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_trains_on_the_challenge_training_frames_and_validates_on_its_own(
    name, tmp_path
):
    text = cv2024.config_text(RECIPES[name], tmp_path / "run", seed=3)
    config = parse_config(tomllib.loads(text), tmp_path / "config.toml")
    assert config.classes == DEFAULT_CLASSES
    assert config.paths.training_dir == (cv2024.DATA_DIR / "training").resolve()
    assert config.paths.validation_dir == (cv2024.DATA_DIR / "validation").resolve()
    assert config.paths.models_dir == tmp_path / "run" / "Models"
    assert config.balance.seed == 3 and config.balance.materialize == "none"


def test_the_left_out_sources_exist_in_the_training_frames_read_in_place():
    root = shared_data("capsule-vision-2024", "training")
    records = scan_labelled_tree(root, DEFAULT_CLASSES).records
    sources = set(record_sources(records, [root], DEFAULT_CLASSES, None))
    assert set(cv2024.DEFAULT_LOSO) <= sources == {"KID", "KVASIR", "SEE-AI", "AIIMS"}
