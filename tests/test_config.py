from pathlib import Path

import pytest

from gicls.config import (
    CONFIG_ENV_VAR,
    DEFAULT_CLASSES,
    GiclsConfig,
    default_config_path,
    load_config,
    parse_config,
)
from gicls.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_documented_config_file_holds_exactly_the_defaults():
    documented = load_config(REPO_ROOT / "config.toml")
    defaults = parse_config({}, REPO_ROOT / "config.toml")
    assert documented == defaults
    assert documented.classes == DEFAULT_CLASSES


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    sub = tmp_path / "site"
    sub.mkdir()
    config = load_config(write(sub, '[paths]\ntraining_dir = "data/train"\nmodels_dir = "/abs/M"'))
    assert config.paths.training_dir == sub / "data" / "train"
    assert config.paths.models_dir == Path("/abs/M")
    assert config.paths.validation_dir is None
    assert config.daemon.inbox == sub / "inbox"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[train]\nepoch = 3", ["unknown key 'train.epoch'", "epochs"]),
        ("[trian]\nepochs = 3", ["unknown key 'trian'", "train"]),
        ('[train]\nimage_size = "big"', ["train.image_size", "integer", "'big'"]),
        ("[train]\nepochs = true", ["train.epochs", "True"]),
        ("[train]\nimage_size = 8", ["train.image_size", "greater than or equal to 32", "8"]),
        ('[balance]\nmaterialize = "link"', ["balance.materialize", "'hardlink'", "'link'"]),
        ("[balance]\nvalidation_fraction = 1.5", ["balance.validation_fraction", "1.5"]),
        ('classes = ["Only"]', ["classes", "at least 2"]),
        ('classes = ["A", "A"]', ["classes", "unique"]),
        ('classes = ["A", "../escape"]', ["classes", "'../escape'"]),
        ('classes = ["A", "_review"]', ["classes", "'_review'"]),
        ('classes = ["Ulcer", "status"]', ["classes", "['status']", "audit-log columns"]),
        ('[daemon]\nobserver = "fanotify"', ["daemon.observer", "'inotify'", "'fanotify'"]),
        ('[inference]\nprecision = "fp8"', ["inference.precision", "'float16'", "'fp8'"]),
        ('[inference]\nbackend = "dask"', ["inference.backend", "'ray'", "'dask'"]),
        ("[inference]\nactors = 0", ["inference.actors", "greater than or equal to 1", "0"]),
        ("[inference]\ncpus_per_actor = 0", ["inference.cpus_per_actor", "greater than 0"]),
        ("[inference]\ngpus_per_actor = -1", ["inference.gpus_per_actor", "-1"]),
        ('[balance]\ntarget_count = "most"', ["balance.target_count", "'all'", "'most'"]),
        ('[balance]\nnegatives = "random"', ["balance.negatives", "'prevalence'", "'random'"]),
        (
            '[balance]\ntarget_count = "all"\nnegatives = "sources"',
            ["balance.negatives", "no effect with target_count = 'all'"],
        ),
        ('[preprocess]\nfield_of_view = "octagon"', ["preprocess.field_of_view", "'circle'"]),
        ("[preprocess]\nfield_of_view_radius = 0.7", ["preprocess.field_of_view_radius", "0.7"]),
        ('[preprocess]\ncolour = "sepia"', ["preprocess.colour", "'grey_world'", "'sepia'"]),
        ("[daemon]\nstudy_quiet_seconds = 0", ["daemon.study_quiet_seconds", "greater than 0"]),
        (
            "[daemon]\nstudy_quiet_seconds = 1.0\nstability_seconds = 2.0",
            ["daemon.study_quiet_seconds", "daemon.stability_seconds", "longer"],
        ),
        ('[daemon]\npseudonymise_studies = "yes"', ["daemon.pseudonymise_studies", "'yes'"]),
        ('[cluster]\nbackend = "dask"', ["cluster.backend", "'ray'", "'dask'"]),
        ("[cluster]\ncpus_per_fit = 0", ["cluster.cpus_per_fit", "greater than 0", "0"]),
        ("[cluster]\ngpus_per_fit = -1", ["cluster.gpus_per_fit", "greater than or equal to 0"]),
    ],
)
def test_bad_values_name_the_key_what_is_allowed_and_what_was_received(tmp_path, text, expected):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text))
    message = str(raised.value)
    assert raised.value.exit_code == 2
    for fragment in expected:
        assert fragment in message


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[train\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_environment_variable_names_the_default_config(tmp_path, monkeypatch):
    path = write(tmp_path, 'classes = ["Cats", "Dogs"]')
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    assert default_config_path() == path
    assert load_config().classes == ("Cats", "Dogs")
    monkeypatch.delenv(CONFIG_ENV_VAR)
    assert default_config_path() == Path("config.toml")


def test_config_is_frozen():
    config = GiclsConfig()
    with pytest.raises(Exception, match="frozen"):
        config.train.epochs = 3  # type: ignore[misc]


def test_decision_targets_and_review_keys_are_read(tmp_path):
    config = load_config(
        write(
            tmp_path,
            "[decision]\ntarget_sensitivity = { Bleeding = 0.95, Ulcer = 1 }\n"
            "[daemon]\nreview_margin = 0.1\nreview_on_flag = true\n",
        )
    )
    assert config.decision.target_sensitivity == {"Bleeding": 0.95, "Ulcer": 1.0}
    assert (config.daemon.review_margin, config.daemon.review_on_flag) == (0.1, True)
    defaults = parse_config({})
    assert defaults.decision.target_sensitivity == {}
    assert (defaults.daemon.review_margin, defaults.daemon.review_on_flag) == (0.0, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[decision]\ntarget_sensitivity = { Bleding = 0.9 }",
            ["key 'decision.target_sensitivity.Bleding'", "not a configured class", "Bleeding"],
        ),
        (
            "[decision]\ntarget_sensitivity = { Bleeding = 0.0 }",
            ["decision.target_sensitivity.Bleeding", "greater than 0", "0.0"],
        ),
        (
            "[decision]\ntarget_sensitivity = { Ulcer = 1.5 }",
            ["decision.target_sensitivity.Ulcer", "less than or equal to 1", "1.5"],
        ),
        ("[daemon]\nreview_margin = 1.0", ["daemon.review_margin", "less than 1", "1.0"]),
        ("[daemon]\nreview_margin = -0.1", ["daemon.review_margin", "-0.1"]),
        ('[daemon]\nreview_on_flag = "yes"', ["daemon.review_on_flag", "'yes'"]),
        ("[daemon]\nvideo_frame_step = 0", ["daemon.video_frame_step", "greater than or", "0"]),
        ("[daemon]\nkey_frames_per_class = -1", ["daemon.key_frames_per_class", "-1"]),
        ("[daemon]\nkey_frame_min_gap_s = -5.0", ["daemon.key_frame_min_gap_s", "-5.0"]),
        (
            '[daemon]\nkey_frames_skip_classes = ["Normall"]',
            ["key 'daemon.key_frames_skip_classes'", "'Normall'", "Normal"],
        ),
    ],
)
def test_bad_decision_settings_name_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text))
    for fragment in expected:
        assert fragment in str(raised.value)
