"""A bundle of untrained models, written exactly as the trainer writes a real one.

For benchmarks (speed does not depend on the weights) and tests of everything that loads a
bundle; never for classifying anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from gicls.config import PreprocessConfig
from gicls.hashing import file_sha256
from gicls.models.architectures import CLASSIC_AUGMENT, build_model
from gicls.models.bundle import (
    model_file_name,
    new_manifest,
    publish_bundle,
    replace_in_stage,
    stage_bundle,
    write_manifest,
)
from gicls.models.ensemble import guard_fields
from gicls.models.transform_record import NO_TRANSFORMS, preprocessing_info

# An untrained bundle has no held-out images: random frames stand in as its guard frames.
UNTRAINED_GUARD_FRAMES = 32


def write_untrained_bundle(
    models_dir: Path,
    classes: Sequence[str],
    image_size: int,
    architecture: str = "seed_cnn",
    seed: int = 0,
    guard_frames: np.ndarray | None = None,
    preprocess: PreprocessConfig = NO_TRANSFORMS,
) -> Path:
    """Publish one randomly initialised model per class, with a verified manifest.

    ``guard_frames`` (uint8 (n, image_size, image_size, 3)) are stored with their float32
    scores as the bundle's guard frames; by default ``UNTRAINED_GUARD_FRAMES`` random ones.
    """
    staging = stage_bundle(models_dir)
    augment = CLASSIC_AUGMENT
    keras.utils.set_random_seed(seed)
    entries = {}
    for name in classes:
        path = replace_in_stage(staging / model_file_name(name))
        build_model(architecture, image_size, augment, preprocess).save(path)
        entries[name] = {"file": path.name, "sha256": file_sha256(path)}
    fields = {
        "classes": list(classes),
        "image_size": image_size,
        "preprocessing": preprocessing_info(preprocess),
        "architecture": architecture,
        "augment": augment.model_dump(),
        "precision": "float32",
        "models": entries,
    }
    if guard_frames is None:
        shape = (UNTRAINED_GUARD_FRAMES, image_size, image_size, 3)
        guard_frames = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    manifest = new_manifest(**fields)
    manifest = new_manifest(**fields, **guard_fields(staging, manifest, guard_frames))
    write_manifest(manifest, staging)
    publish_bundle(staging, models_dir)
    return models_dir
