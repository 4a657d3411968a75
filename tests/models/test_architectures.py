import tomllib
from pathlib import Path

import keras
import pytest
from keras import layers

from gicls.config import AugmentConfig, parse_config
from gicls.errors import ConfigError
from gicls.models.architectures import CLASSIC_AUGMENT, build_model, known_architectures

CLASSIC_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "classic-config.toml"


def classic_network(size: int) -> keras.Model:
    """The classic script's network, written out as it had it."""
    return keras.Sequential(
        [
            keras.Input(shape=(size, size, 3)),
            layers.Rescaling(1.0 / 255),
            layers.RandomFlip("horizontal_and_vertical"),
            layers.RandomRotation(0.2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ]
    )


def comparable(layer: keras.layers.Layer) -> dict:
    config = dict(layer.get_config())
    config.pop("name", None)
    config.pop("seed", None)  # random layers draw a fresh seed per instance
    return {"type": type(layer).__name__, **config}


def test_seed_cnn_with_the_classic_settings_is_the_classic_network_layer_by_layer():
    classic_config = parse_config(
        tomllib.loads(CLASSIC_CONFIG.read_text()), CLASSIC_CONFIG
    )  # examples/classic-config.toml
    ours = build_model(
        classic_config.train.architecture,
        64,
        classic_config.augment,
        classic_config.preprocess,
    )
    classic = classic_network(64)
    assert [comparable(a) for a in ours.layers] == [comparable(b) for b in classic.layers]
    assert ours.count_params() == classic.count_params()
    assert ours.output_shape == (None, 1)


def test_augment_settings_drive_the_augmentation_layers():
    model = build_model(
        "seed_cnn", 64, CLASSIC_AUGMENT.model_copy(update={"flip": "none", "rotation": 0.0})
    )
    names = [type(layer).__name__ for layer in model.layers]
    assert "RandomFlip" not in names and "RandomRotation" not in names
    flipped = build_model(
        "seed_cnn", 64, CLASSIC_AUGMENT.model_copy(update={"flip": "horizontal", "rotation": 0.1})
    )
    flip = next(layer for layer in flipped.layers if type(layer).__name__ == "RandomFlip")
    assert flip.get_config()["mode"] == "horizontal"


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ConfigError) as raised:
        build_model("resnet9000", 64, CLASSIC_AUGMENT)
    message = str(raised.value)
    assert "train.architecture" in message and "'resnet9000'" in message
    for name in known_architectures():
        assert name in message


@pytest.mark.parametrize("key", ["zoom", "brightness", "contrast", "saturation"])
def test_seed_cnn_refuses_augment_keys_it_would_ignore(key):
    changed = CLASSIC_AUGMENT.model_copy(update={key: 0.1})
    with pytest.raises(ConfigError, match=f"key 'augment.{key}'"):
        build_model("seed_cnn", 64, changed)
    model = build_model("seed_cnn_capsule", 64, changed)  # the same network honours it
    assert len(model.layers) > len(build_model("seed_cnn", 64, CLASSIC_AUGMENT).layers)


def test_quarter_turns_need_no_layer_and_are_allowed_with_every_architecture():
    turned = CLASSIC_AUGMENT.model_copy(update={"rot90": True})  # done by training/dataset.py
    for name in known_architectures():
        plain = [type(x).__name__ for x in build_model(name, 32, CLASSIC_AUGMENT).layers]
        assert [type(x).__name__ for x in build_model(name, 32, turned).layers] == plain


# --- Architectures and capsule augmentation added for the bleeding benchmark ---------------

import numpy as np  # noqa: E402

from gicls.models.architectures import (  # noqa: E402
    RandomColorJitter,
    RandomZoomCrop,
    augmentation_layers,
    capsule_augmentation,
)

NEW_ARCHITECTURES = ["bn_cnn", "res_cnn", "sep_cnn", "seed_cnn_capsule"]
CAPSULE = AugmentConfig(rotation=0.0, rot90=True, zoom=0.2, brightness=0.1, contrast=0.1)


def test_capsule_keys_switched_off_add_no_layer():
    default = CLASSIC_AUGMENT
    assert [type(x) for x in capsule_augmentation(default)] == [
        type(x) for x in augmentation_layers(default)
    ]


@pytest.mark.parametrize("name", NEW_ARCHITECTURES)
def test_new_architectures_map_uint8_images_to_one_float32_score(name, tmp_path):
    model = build_model(name, 32, CAPSULE)
    assert model.output_shape == (None, 1)
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    scores = np.asarray(model(images, training=False))
    assert scores.shape == (4, 1) and np.all((scores >= 0) & (scores <= 1))
    # Custom layers survive a save/load round trip and inference is deterministic.
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(np.asarray(loaded(images, training=False)), scores, atol=1e-6)


@pytest.mark.parametrize("name", NEW_ARCHITECTURES)
def test_new_architectures_build_under_mixed_bfloat16(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(name, 32, CAPSULE)
    finally:
        keras.config.set_dtype_policy(previous)
    images = np.zeros((2, 32, 32, 3), np.float32)
    assert model(images, training=True).dtype == "float32"


def images_01(n: int = 6, size: int = 8) -> np.ndarray:
    return np.random.default_rng(1).random((n, size, size, 3)).astype(np.float32)


def test_zoom_crop_keeps_the_shape_and_is_identity_at_inference():
    x = images_01()
    layer = RandomZoomCrop(0.3, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    out = np.asarray(layer(x, training=True))
    assert out.shape == x.shape and not np.allclose(out, x)


def test_colour_jitter_stays_in_range_and_is_identity_at_inference():
    x = images_01()
    layer = RandomColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, seed=2)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    out = np.asarray(layer(x, training=True))
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, x)


def test_capsule_augment_keys_switch_their_layers_on():
    names = [type(x).__name__ for x in build_model("bn_cnn", 32, CAPSULE).layers]
    assert {"RandomFlip", "RandomZoomCrop", "RandomColorJitter"} <= set(names)
    assert "RandomRotation" not in names
