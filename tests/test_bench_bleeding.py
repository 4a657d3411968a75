"""bench/bleeding.py writes configurations the normal CLI accepts (training is not run here)."""

import tomllib

import pytest

from bench import bleeding
from bench.recipes import RECIPES
from gicls.config import parse_config
from gicls.models.architectures import known_architectures
from gicls.training.scan import scan_labelled_tree
from tests.conftest import shared_data


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_a_valid_config_outside_the_repo_data(name, tmp_path):
    text = bleeding.config_text(RECIPES[name], tmp_path / "run", seed=7)
    config = parse_config(tomllib.loads(text), tmp_path / "config.toml")
    assert config.classes == ("bleeding", "non_bleeding")
    assert config.train.architecture in known_architectures()
    assert config.balance.seed == 7
    assert config.paths.models_dir == tmp_path / "run" / "Models"
    assert config.paths.training_dir == bleeding.DATA_DIR.resolve()


def test_the_shared_training_folder_is_read_in_place():
    data = shared_data("wcebleedgen", "train")
    scan = scan_labelled_tree(data, bleeding.CLASSES)
    counts = scan.per_class_counts()
    assert counts == {"bleeding": 1018, "non_bleeding": 934}
