"""The fused ensemble: every model of a bundle combined into ONE graph called once per batch.

The classic script called ``predict`` ten times per image; here the ten binary models share
one input and their sigmoid outputs are concatenated (and optionally calibrated) inside a
single compiled ``tf.function``, so a batch costs one call into TensorFlow.

``precision="bfloat16"`` runs the convolutions in bfloat16 (AMX / AVX512-BF16 through oneDNN,
about 2-3x faster than float32 on such CPUs), ``precision="float16"`` in float16 (a GPU's
tensor cores), with the input rescaling and classifier head kept in float32. Such a reduced
precision is only served when it agrees with float32 on the bundle's guard frames (real
held-out frames stored at training, gicls.models.guard: every frame that is not a near-tie
picks the same class, and no score moves by more than a bound); otherwise, or if the bundle
has none, float32 is served and ``bfloat16_refused`` (``float16_refused``) is logged with the
reason. (``jit_compile`` was measured and not used: see BENCHMARKS.md.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import gicls.models.architectures  # noqa: F401  (registers gicls' custom layers for loading)
from gicls.errors import ModelBundleError
from gicls.logs import get_logger
from gicls.models.bundle import Manifest, verify_bundle
from gicls.models.guard import (
    AgreementVerdict,
    GuardSet,
    check_reproduced,
    judge_agreement,
    read_guard,
    write_guard,
)
from gicls.models.input_transforms import ColourNormalisation, FieldOfViewMask

log = get_logger(__name__)

# Keeps logit() finite for scores that saturate at exactly 0 or 1.
_LOGIT_EPSILON = 1e-7
# The precisions an ensemble can compute in, with the Keras policy of the reduced ones.
REDUCED_POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
PRECISIONS = ("float32", *REDUCED_POLICIES)
# Layers that stay float32 in a reduced-precision ensemble: the input rescaling (in bfloat16,
# 1/255 itself is rounded, a systematic error on every pixel) and the classifier head. They are a
# small share of the arithmetic (the convolutions are almost all of it) and keeping them exact
# measurably reduces how often close scores swap order. The in-graph input transforms stay
# float32 for the same reason as the rescaling: a per-frame scale applied to every pixel.
_FLOAT32_LAYERS = (
    keras.layers.Rescaling,
    ColourNormalisation,
    FieldOfViewMask,
    keras.layers.Flatten,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Dense,
    keras.layers.Dropout,
)


def argmax_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows of two (n, classes) score arrays whose argmax is the same (1.0 if n = 0)."""
    if len(a) == 0:
        return 1.0
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


class FusedEnsemble:
    """Scores uint8 images (batch, size, size, 3) -> float32 (batch, n_classes) in class order."""

    def __init__(
        self,
        models_dir: Path,
        manifest: Manifest,
        precision: str = "float32",
        guard: GuardSet | None = None,
    ) -> None:
        """Load and fuse the models of ``manifest`` from ``models_dir``.

        ``precision``: one of ``PRECISIONS``. ``guard``: frames with their training-time
        scores. float32 must reproduce the scores (else ModelBundleError), and a reduced
        ``precision`` is served only if it agrees with float32 on the frames (see
        gicls.models.guard.judge_agreement); without frames it is refused. ``precision`` then
        says what is served, ``verdict`` what the guard measured and ``refused`` why the
        reduced precision asked for is not served.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.manifest = manifest
        self.classes = list(manifest.classes)
        self.image_size = manifest.image_size
        self.precision = "float32"
        self.verdict: AgreementVerdict | None = None
        self.refused: str | None = None
        members = [self._load_member(models_dir, name) for name in self.classes]
        self._graph = self._build_graph(members)
        if guard is not None and len(guard.frames) == 0:
            guard = None
        exact = None
        if guard is not None:
            exact = _score_in_batches(self._graph, guard.frames)
            check_reproduced(guard, exact)
        if precision != "float32":
            self._serve_reduced_if_it_agrees(precision, members, guard, exact)

    def _serve_reduced_if_it_agrees(
        self,
        precision: str,
        members: list[keras.Model],
        guard: GuardSet | None,
        exact: np.ndarray | None,
    ) -> None:
        if guard is None or exact is None:
            self.refused = "no_guard_frames"
            log.warning(f"{precision}_refused", reason=self.refused, serving="float32")
            return
        policy = REDUCED_POLICIES[precision]
        fast = self._build_graph([reduced_precision_twin(m, policy) for m in members])
        self.verdict = judge_agreement(exact, _score_in_batches(fast, guard.frames), precision)
        figures = {
            "frames": self.verdict.frames,
            "decided": self.verdict.decided,
            "agreeing": self.verdict.agreeing,
            "agreeing_all": self.verdict.agreeing_all,
            "largest_difference": round(self.verdict.largest_difference, 5),
        }
        self.refused = self.verdict.refused
        if self.refused is not None:
            log.warning(f"{precision}_refused", reason=self.refused, serving="float32", **figures)
            return
        log.info(f"{precision}_accepted", **figures)
        self.precision = precision
        self._graph = fast

    @classmethod
    def from_bundle(
        cls,
        models_dir: Path,
        classes: list[str] | tuple[str, ...] | None = None,
        precision: str = "float32",
    ) -> FusedEnsemble:
        """Verify the bundle, then load and fuse the very files that were verified, checked
        and guarded with the bundle's own guard frames.

        They are loaded from a private copy made while hashing: a bundle published into
        ``models_dir`` between the check and the load can never be half-served.
        """
        with tempfile.TemporaryDirectory(prefix="gicls-verified-") as private:
            manifest = verify_bundle(models_dir, classes, copy_to=Path(private))
            guard = None
            if manifest.guard is not None:
                guard = read_guard(
                    Path(private), manifest.guard, manifest.image_size, len(manifest.classes)
                )
            try:
                return cls(Path(private), manifest, precision, guard)
            except ModelBundleError as exc:
                raise ModelBundleError(f"bundle {models_dir}: {exc}") from None

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    def _load_member(self, models_dir: Path, class_name: str) -> keras.Model:
        entry = self.manifest.models[class_name]
        return keras.models.load_model(models_dir / entry.file, compile=False)

    def _build_graph(self, members: list[keras.Model]) -> tf.types.experimental.Function:
        calibration = self.manifest.calibration
        if calibration is not None:
            scale = tf.constant([calibration.classes[c].scale for c in self.classes], tf.float32)
            shift = tf.constant([calibration.classes[c].shift for c in self.classes], tf.float32)
        size = self.image_size

        # autograph=False: the body is plain tensor code with a Python-level branch, and
        # AutoGraph cannot convert a closure over the member list (it warns, then runs as-is).
        @tf.function(
            input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8)],
            reduce_retracing=True,
            autograph=False,
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

    def score_rows(self, pixels: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Scores (len(rows), n_classes) of ``pixels[rows]``, gathered and scored batch by batch.

        Never copies all of ``pixels[rows]`` at once: a cache of decoded images can be gigabytes.
        """
        if len(rows) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return _score_in_batches(self._graph, pixels, rows)

    def warm_up(self, batch_size: int = 1) -> None:
        """Trace and run the graph once so the first real batch pays no compilation cost."""
        self(np.zeros((batch_size, self.image_size, self.image_size, 3), np.uint8))


def guard_fields(folder: Path, manifest: Manifest, frames: np.ndarray) -> dict[str, Any]:
    """The manifest field ``guard``: ``frames`` (uint8 (n, size, size, 3)) and the scores the
    float32 fused ensemble of ``manifest`` in the staging ``folder`` gives them, written there.
    """
    scores = FusedEnsemble(folder, manifest).score_rows(frames, np.arange(len(frames)))
    return {"guard": write_guard(folder, frames, scores)}


# Images per graph call when scoring many at once: all of them in one call would hold the
# activations of every image together (gigabytes at 224 px).
_SCORING_BATCH = 32


def _score_in_batches(
    graph: tf.types.experimental.Function, images: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """Scores of ``images`` (or of ``images[rows]``) in batches of ``_SCORING_BATCH``."""
    count = len(images) if rows is None else len(rows)
    batches = []
    for start in range(0, count, _SCORING_BATCH):
        stop = start + _SCORING_BATCH
        batch = images[start:stop] if rows is None else images[rows[start:stop]]
        batches.append(graph(tf.convert_to_tensor(batch, tf.uint8)).numpy())
    return np.concatenate(batches)


def reduced_precision_twin(model: keras.Model, policy: str) -> keras.Model:
    """The same model with its feature extractor under a mixed ``policy`` (``REDUCED_POLICIES``).

    Saved layers carry an explicit float32 policy, so each layer is re-created from its config
    with the policy replaced (rescaling and head keep float32, see ``_FLOAT32_LAYERS``) and
    the weights are copied. Variables stay float32; the convolutions compute in bfloat16
    (AMX/AVX512-BF16 through oneDNN) or float16 (a GPU's tensor cores), and each layer casts
    its input to its own compute dtype.
    """

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        layer_policy = "float32" if isinstance(layer, _FLOAT32_LAYERS) else policy
        return layer.__class__.from_config({**layer.get_config(), "dtype": layer_policy})

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin
