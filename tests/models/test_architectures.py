import keras
import pytest
from keras import layers

from gicls.config import AugmentConfig
from gicls.errors import ConfigError
from gicls.models.architectures import build_model, known_architectures


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


def test_seed_cnn_is_the_classic_network_layer_by_layer():
    ours = build_model("seed_cnn", 64, AugmentConfig())
    classic = classic_network(64)
    assert [comparable(a) for a in ours.layers] == [comparable(b) for b in classic.layers]
    assert ours.count_params() == classic.count_params()
    assert ours.output_shape == (None, 1)


def test_augment_settings_drive_the_augmentation_layers():
    model = build_model("seed_cnn", 64, AugmentConfig(flip="none", rotation=0.0))
    names = [type(layer).__name__ for layer in model.layers]
    assert "RandomFlip" not in names and "RandomRotation" not in names
    flipped = build_model("seed_cnn", 64, AugmentConfig(flip="horizontal", rotation=0.1))
    flip = next(layer for layer in flipped.layers if type(layer).__name__ == "RandomFlip")
    assert flip.get_config()["mode"] == "horizontal"


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ConfigError) as raised:
        build_model("resnet9000", 64, AugmentConfig())
    message = str(raised.value)
    assert "train.architecture" in message and "'resnet9000'" in message
    for name in known_architectures():
        assert name in message
