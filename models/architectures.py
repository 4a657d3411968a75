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

from gicls.config import AugmentConfig, PreprocessConfig
from gicls.errors import ConfigError
from gicls.models.input_transforms import input_stage
from gicls.models.transform_record import NO_TRANSFORMS

Builder = Callable[[int, AugmentConfig, PreprocessConfig], keras.Model]

_REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        _REGISTRY[name] = builder
        return builder

    return decorate


def known_architectures() -> list[str]:
    return sorted(_REGISTRY)


# Architectures that apply only the classic flip and rotation, and the [augment] keys they
# would silently ignore: configuring one of those keys with them is an error, not a no-op.
# (rot90 is not among them: quarter turns happen in the input pipeline, for every network.)
CLASSIC_AUGMENTATION_ONLY = frozenset({"seed_cnn"})
CAPSULE_AUGMENT_KEYS = ("zoom", "brightness", "contrast", "saturation")
# The classic script's augmentation: flips and a random rotation of up to 0.2 of a turn,
# nothing else (examples/classic-config.toml; config.toml's defaults are another recipe).
CLASSIC_AUGMENT = AugmentConfig(
    flip="horizontal_and_vertical",
    rotation=0.2,
    rot90=False,
    zoom=0.0,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
)


def check_architecture(name: str, augment: AugmentConfig) -> None:
    """Raise ConfigError naming the key if ``name`` is unknown or ignores a configured key."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"key 'train.architecture': unknown architecture; allowed: "
            f"{', '.join(known_architectures())}; got {name!r}"
        )
    if name in CLASSIC_AUGMENTATION_ONLY:
        for key in CAPSULE_AUGMENT_KEYS:
            if getattr(augment, key) > 0:
                raise ConfigError(
                    f"key 'augment.{key}': architecture {name!r} applies only the classic "
                    f"flip and rotation, so it would ignore this key; use architecture "
                    f"'seed_cnn_capsule' (the same network) or set {key} = 0 (off); "
                    f"got {getattr(augment, key)!r}"
                )


def build_model(
    name: str,
    image_size: int,
    augment: AugmentConfig,
    preprocess: PreprocessConfig = NO_TRANSFORMS,
) -> keras.Model:
    check_architecture(name, augment)
    return _REGISTRY[name](image_size, augment, preprocess)


def augmentation_layers(augment: AugmentConfig) -> list[layers.Layer]:
    """The configured augmentation, in the classic order: flip, then rotation."""
    augmentation: list[layers.Layer] = []
    if augment.flip != "none":
        augmentation.append(layers.RandomFlip(augment.flip))
    if augment.rotation > 0:
        augmentation.append(layers.RandomRotation(augment.rotation))
    return augmentation


def classic_network(
    image_size: int,
    augmentation: list[layers.Layer],
    preprocess: PreprocessConfig,
    name: str,
) -> keras.Model:
    """The classic small CNN around the given augmentation: 3x Conv-MaxPool, Dense 64, sigmoid.

    With the default (empty) ``[preprocess]`` it is the classic network layer for layer.
    """
    return keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 3)),
            *input_stage(preprocess, augmentation),
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
        name=name,
    )


@register("seed_cnn")
def seed_cnn(image_size: int, augment: AugmentConfig, preprocess: PreprocessConfig) -> keras.Model:
    """The classic small CNN, layer for layer, with the classic flip and rotation."""
    return classic_network(image_size, augmentation_layers(augment), preprocess, "seed_cnn")


# --- Augmentation suited to capsule frames -------------------------------------------------
# The camera has no "up": any quarter turn or mirror image of a frame is an equally real frame,
# so the dihedral group is free augmentation. Arbitrary-angle rotation needs an affine resample
# per image (slow on CPU) and blackens the corners; quarter turns are only transposes, done on
# uint8 in the input pipeline (training/dataset.py), not by a layer.
# Colour is the main bleeding cue, so colour jitter stays mild and never shifts hue.


@keras.saving.register_keras_serializable(package="gicls")
class RandomZoomCrop(layers.Layer):
    """Per image, crop a random square of side (1 - zoom .. 1) x size and resize it back.

    Training only. The crop stays inside the frame, so it mostly trims the dark border around
    the circular field of view and shows lesions at slightly different scales.
    """

    def __init__(self, zoom: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.zoom = zoom
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.zoom <= 0:
            return inputs
        import tensorflow as tf

        shape = tf.shape(inputs)
        batch, size = shape[0], shape[1]
        side = 1.0 - self.zoom * keras.random.uniform((batch, 1), seed=self.seed_generator)
        corner = (1.0 - side) * keras.random.uniform((batch, 2), seed=self.seed_generator)
        boxes = tf.concat([corner, corner + side], axis=1)
        cropped = tf.image.crop_and_resize(
            tf.cast(inputs, tf.float32),
            boxes,
            tf.range(batch),
            tf.stack([size, size]),
        )
        return tf.cast(cropped, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "zoom": self.zoom, "seed": self.seed}


@keras.saving.register_keras_serializable(package="gicls")
class RandomColorJitter(layers.Layer):
    """Per image brightness shift, contrast and saturation scaling on [0, 1] pixels.

    Training only. Brightness adds U(-b, b); contrast scales around the image mean by
    U(1-c, 1+c); saturation scales around the grey value by U(1-s, 1+s); then clips to [0, 1].
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _factor(self, batch, spread: float):
        draw = keras.random.uniform((batch, 1, 1, 1), -spread, spread, seed=self.seed_generator)
        return draw

    def call(self, inputs, training=None):
        if not training:
            return inputs
        ops = keras.ops
        x = ops.cast(inputs, "float32")
        batch = ops.shape(x)[0]
        if self.brightness > 0:
            x = x + self._factor(batch, self.brightness)
        if self.contrast > 0:
            mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
            x = mean + (x - mean) * (1.0 + self._factor(batch, self.contrast))
        if self.saturation > 0:
            grey = ops.sum(x * ops.convert_to_tensor([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
            x = grey + (x - grey) * (1.0 + self._factor(batch, self.saturation))
        return ops.cast(ops.clip(x, 0.0, 1.0), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
            "seed": self.seed,
        }


def capsule_augmentation(augment: AugmentConfig) -> list[layers.Layer]:
    """The classic flip/rotation layers, then the capsule-specific ones that are switched on.

    With the capsule keys at their defaults this is exactly ``augmentation_layers``.
    """
    augmentation = augmentation_layers(augment)
    if augment.zoom > 0:
        augmentation.append(RandomZoomCrop(augment.zoom))
    if augment.brightness > 0 or augment.contrast > 0 or augment.saturation > 0:
        augmentation.append(
            RandomColorJitter(augment.brightness, augment.contrast, augment.saturation)
        )
    return augmentation


@register("seed_cnn_capsule")
def seed_cnn_capsule(
    image_size: int, augment: AugmentConfig, preprocess: PreprocessConfig
) -> keras.Model:
    """The classic small CNN layer for layer, with the capsule augmentation keys honoured.

    ``seed_cnn`` stays exactly the classic network (only flip and rotation); this one also
    applies zoom and colour jitter when they are configured.
    """
    return classic_network(
        image_size, capsule_augmentation(augment), preprocess, "seed_cnn_capsule"
    )


def _conv_bn(x, filters: int, strides: int = 1, activate: bool = True):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x) if activate else x


def _head(x, dropout: float):
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    # float32 output keeps the sigmoid exact under a mixed_bfloat16 policy.
    return layers.Dense(1, activation="sigmoid", dtype="float32")(x)


def _inputs(image_size: int, augment: AugmentConfig, preprocess: PreprocessConfig):
    inputs = keras.Input(shape=(image_size, image_size, 3))
    x = inputs
    for layer in input_stage(preprocess, capsule_augmentation(augment)):
        x = layer(x)
    return inputs, x


@register("bn_cnn")
def bn_cnn(image_size: int, augment: AugmentConfig, preprocess: PreprocessConfig) -> keras.Model:
    """A deeper VGG-style CNN: Conv-BN-ReLU pairs, max pooling, global average pool, dropout.

    A strided stem halves the resolution first (most of the CPU cost sits at full size).
    About 0.6 M parameters; widths 32-64-128-256.
    """
    inputs, x = _inputs(image_size, augment, preprocess)
    x = _conv_bn(x, 32, strides=2)
    x = _conv_bn(x, 32)
    for filters in (64, 128):
        x = layers.MaxPooling2D()(x)
        x = _conv_bn(x, filters)
        x = _conv_bn(x, filters)
    x = layers.MaxPooling2D()(x)
    x = _conv_bn(x, 256)
    return keras.Model(inputs, _head(x, 0.3), name="bn_cnn")


@register("res_cnn")
def res_cnn(image_size: int, augment: AugmentConfig, preprocess: PreprocessConfig) -> keras.Model:
    """A small residual net: strided stem, three stages of two basic blocks (64-128-256).

    Each stage after the first starts with a stride-2 block whose shortcut is a 1x1 conv.
    About 2.8 M parameters.
    """
    inputs, x = _inputs(image_size, augment, preprocess)
    x = _conv_bn(x, 32, strides=2)
    x = _conv_bn(x, 32)
    x = layers.MaxPooling2D()(x)
    for stage, filters in enumerate((64, 128, 256)):
        for block in range(2):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = _conv_bn(x, filters, strides=strides)
            y = _conv_bn(y, filters, activate=False)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut)
                shortcut = layers.BatchNormalization()(shortcut)
            x = layers.ReLU()(layers.Add()([shortcut, y]))
    return keras.Model(inputs, _head(x, 0.3), name="res_cnn")


@register("sep_cnn")
def sep_cnn(image_size: int, augment: AugmentConfig, preprocess: PreprocessConfig) -> keras.Model:
    """Depthwise-separable CNN (Xception-like entry flow, residual), cheap in FLOPs.

    Strided stem, then four separable stages (64-128-256-384) with 1x1-conv shortcuts.
    """
    inputs, x = _inputs(image_size, augment, preprocess)
    x = _conv_bn(x, 32, strides=2)
    for filters in (64, 128, 256, 384):
        shortcut = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
        y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
        y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        y = layers.MaxPooling2D(3, strides=2, padding="same")(y)
        x = layers.ReLU()(layers.Add()([shortcut, y]))
    return keras.Model(inputs, _head(x, 0.3), name="sep_cnn")
