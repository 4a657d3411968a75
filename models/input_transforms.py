"""In-graph input transforms that take the capturing device out of the models' reach.

Each capsule system draws its own field of view (round, octagonal, clipped corners, black
borders of different widths, text overlays) and its own colour cast. Trained on frames where
some conditions come from one device only, a model can learn the device instead of the
lesion. The transforms here are Keras layers inside every saved model, so training, the
daemon and evaluation apply exactly the same arithmetic, and a bundle that needs them cannot
be served by code that lacks them (the layers must deserialise, and the bundle's format
version says so: gicls.models.bundle).

Order in a model (``input_stage``): rescale to [0, 1] -> colour normalisation -> augmentation
-> field-of-view mask. The mask comes last so that rotated or zoomed borders are masked again
and every training frame shows the model the same black surround the served frames have.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from gicls.config import PreprocessConfig

# Any change to the arithmetic below must raise TRANSFORMS_VERSION (gicls.models.transform_record),
# so that bundles trained with the old arithmetic are refused instead of served differently.

# The brightness every frame is scaled to by colour = "brightness" (mean over the field of view
# and channels, on [0, 1] pixels): about that of a well-exposed capsule frame.
TARGET_BRIGHTNESS = 0.4
# Keeps a black frame from dividing by zero.
EPSILON = 1e-3


def disc_mask(size: int, radius: float) -> np.ndarray:
    """(size, size, 1) float32: 1 inside the centred disc of ``radius`` x size, else 0."""
    centre = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size]
    inside = (ys - centre) ** 2 + (xs - centre) ** 2 <= (radius * size) ** 2
    return inside.astype(np.float32)[..., None]


@keras.saving.register_keras_serializable(package="gicls")
class FieldOfViewMask(layers.Layer):
    """Sets every pixel outside a centred disc to black (in training and inference alike)."""

    def __init__(self, radius: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.radius = radius

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self._mask = ops.convert_to_tensor(disc_mask(int(input_shape[1]), self.radius))

    def call(self, images):
        return images * ops.cast(self._mask, images.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "radius": self.radius}


@keras.saving.register_keras_serializable(package="gicls")
class ColourNormalisation(layers.Layer):
    """Per frame, statistics inside the field-of-view disc set the frame's colour scale.

    ``mode = "brightness"`` scales all channels by one factor to ``TARGET_BRIGHTNESS``
    (colour ratios, the redness of blood, are kept); ``"grey_world"`` scales each channel to
    the frame's mean brightness, removing a colour cast (and some of the redness with it).
    Results are clipped to [0, 1].
    """

    def __init__(self, mode: str, radius: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("brightness", "grey_world"):
            raise ValueError(f"unknown colour normalisation {mode!r}")
        self.mode = mode
        self.radius = radius

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        mask = disc_mask(int(input_shape[1]), self.radius)
        self._mask = ops.convert_to_tensor(mask)
        self._area = float(mask.sum())

    def call(self, images):
        mask = ops.cast(self._mask, images.dtype)
        channel_means = ops.sum(images * mask, axis=(1, 2), keepdims=True) / self._area
        brightness = ops.mean(channel_means, axis=-1, keepdims=True)
        if self.mode == "brightness":
            scale = TARGET_BRIGHTNESS / (brightness + EPSILON)
        else:
            scale = brightness / (channel_means + EPSILON)
        return ops.clip(images * scale, 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "radius": self.radius}


def colour_layers(preprocess: PreprocessConfig) -> list[layers.Layer]:
    if preprocess.colour == "none":
        return []
    return [ColourNormalisation(preprocess.colour, preprocess.field_of_view_radius)]


def mask_layers(preprocess: PreprocessConfig) -> list[layers.Layer]:
    if preprocess.field_of_view == "none":
        return []
    return [FieldOfViewMask(preprocess.field_of_view_radius)]


def input_stage(
    preprocess: PreprocessConfig, augmentation: list[layers.Layer]
) -> list[layers.Layer]:
    """Rescaling, colour normalisation, the given augmentation, then the field-of-view mask."""
    return [
        layers.Rescaling(1.0 / 255),
        *colour_layers(preprocess),
        *augmentation,
        *mask_layers(preprocess),
    ]
