"""The fused ensemble: every model of a bundle combined into ONE graph called once per batch.

The classic script called ``predict`` ten times per image; here the ten binary models share
one input and their sigmoid outputs are concatenated (and optionally calibrated) inside a
single compiled ``tf.function``, so a batch costs one call into TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gicls.config import AugmentConfig
from gicls.models.architectures import build_model
from gicls.models.bundle import Manifest, verify_bundle

# Keeps logit() finite for scores that saturate at exactly 0 or 1.
_LOGIT_EPSILON = 1e-7


class FusedEnsemble:
    """Scores uint8 images (batch, size, size, 3) -> float32 (batch, n_classes) in class order."""

    def __init__(self, models_dir: Path, manifest: Manifest, precision: str = "float32") -> None:
        self.manifest = manifest
        self.models_dir = models_dir
        self.classes = list(manifest.classes)
        self.image_size = manifest.image_size
        self.precision = precision
        members = [self._load_member(name) for name in self.classes]
        self._graph = self._build_graph(members)

    @classmethod
    def from_bundle(
        cls,
        models_dir: Path,
        classes: list[str] | tuple[str, ...] | None = None,
        precision: str = "float32",
    ) -> FusedEnsemble:
        """Verify the bundle's hashes, then load and fuse its models."""
        manifest = verify_bundle(models_dir, classes)
        return cls(models_dir, manifest, precision)

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    def _load_member(self, class_name: str) -> keras.Model:
        entry = self.manifest.models[class_name]
        model = keras.models.load_model(self.models_dir / entry.file, compile=False)
        if self.precision == "float32":
            return model
        # Rebuild the same architecture under a bfloat16 compute policy and copy the weights:
        # the saved layers carry an explicit float32 policy that loading would keep.
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            twin = build_model(
                self.manifest.architecture,
                self.image_size,
                AugmentConfig.model_validate(self.manifest.augment),
            )
        finally:
            keras.config.set_dtype_policy(previous)
        twin.set_weights(model.get_weights())
        return twin

    def _build_graph(self, members: list[keras.Model]) -> tf.types.experimental.Function:
        calibration = self.manifest.calibration
        if calibration is not None:
            scale = tf.constant([calibration.classes[c].scale for c in self.classes], tf.float32)
            shift = tf.constant([calibration.classes[c].shift for c in self.classes], tf.float32)
        size = self.image_size

        @tf.function(
            input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8)],
            reduce_retracing=True,
        )
        def fused(images: tf.Tensor) -> tf.Tensor:
            pixels = tf.cast(images, tf.float32)
            scores = tf.concat(
                [tf.cast(member(pixels, training=False), tf.float32) for member in members],
                axis=1,
            )
            if calibration is None:
                return scores
            clipped = tf.clip_by_value(scores, _LOGIT_EPSILON, 1.0 - _LOGIT_EPSILON)
            logits = tf.math.log(clipped) - tf.math.log1p(-clipped)
            return tf.sigmoid(scale * logits + shift)

        return fused

    def __call__(self, images: np.ndarray | tf.Tensor) -> np.ndarray:
        """Score a batch; returns float32 (batch, n_classes)."""
        return self._graph(tf.convert_to_tensor(images, dtype=tf.uint8)).numpy()

    def warm_up(self, batch_size: int = 1) -> None:
        """Trace and run the graph once so the first real batch pays no compilation cost."""
        self(np.zeros((batch_size, self.image_size, self.image_size, 3), np.uint8))
