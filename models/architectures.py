"""Registry of binary-classifier architectures.

Every builder takes the image size and augmentation settings and returns an uncompiled Keras
model mapping uint8-range RGB images of shape (batch, size, size, 3) to one sigmoid score of
shape (batch, 1). Rescaling lives inside the graph, so a saved model carries its own
preprocessing. Augmentation layers are only active while training.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from gicls.config import AugmentConfig
from gicls.errors import ConfigError

Builder = Callable[[int, AugmentConfig], keras.Model]

_REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        _REGISTRY[name] = builder
        return builder

    return decorate


def known_architectures() -> list[str]:
    return sorted(_REGISTRY)


def check_architecture(name: str) -> None:
    """Raise ConfigError naming ``train.architecture`` if ``name`` is not registered."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"key 'train.architecture': unknown architecture; allowed: "
            f"{', '.join(known_architectures())}; got {name!r}"
        )


def build_model(name: str, image_size: int, augment: AugmentConfig) -> keras.Model:
    check_architecture(name)
    return _REGISTRY[name](image_size, augment)


def augmentation_layers(augment: AugmentConfig) -> list[layers.Layer]:
    """The configured augmentation, in the classic order: flip, then rotation."""
    augmentation: list[layers.Layer] = []
    if augment.flip != "none":
        augmentation.append(layers.RandomFlip(augment.flip))
    if augment.rotation > 0:
        augmentation.append(layers.RandomRotation(augment.rotation))
    return augmentation


@register("seed_cnn")
def seed_cnn(image_size: int, augment: AugmentConfig) -> keras.Model:
    """The classic small CNN, layer for layer: 3x Conv-MaxPool, Dense 64, sigmoid."""
    return keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 3)),
            layers.Rescaling(1.0 / 255),
            *augmentation_layers(augment),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            # float32 output keeps the sigmoid exact under a mixed_bfloat16 policy; under the
            # default float32 policy this is what the classic layer was anyway.
            layers.Dense(1, activation="sigmoid", dtype="float32"),
        ],
        name="seed_cnn",
    )
