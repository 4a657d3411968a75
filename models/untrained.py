"""A bundle of untrained models, written exactly as the trainer writes a real one.

For benchmarks (speed does not depend on the weights) and tests of everything that loads a
bundle; never for classifying anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras

from gicls.config import AugmentConfig
from gicls.hashing import file_sha256
from gicls.models.architectures import build_model
from gicls.models.bundle import (
    model_file_name,
    new_manifest,
    publish_bundle,
    replace_in_stage,
    stage_bundle,
    write_manifest,
)
from gicls.models.preprocessing import PREPROCESSING_INFO


def write_untrained_bundle(
    models_dir: Path,
    classes: Sequence[str],
    image_size: int,
    architecture: str = "seed_cnn",
    seed: int = 0,
) -> Path:
    """Publish one randomly initialised model per class, with a verified manifest."""
    staging = stage_bundle(models_dir)
    augment = AugmentConfig()
    keras.utils.set_random_seed(seed)
    entries = {}
    for name in classes:
        path = replace_in_stage(staging / model_file_name(name))
        build_model(architecture, image_size, augment).save(path)
        entries[name] = {"file": path.name, "sha256": file_sha256(path)}
    manifest = new_manifest(
        classes=list(classes),
        image_size=image_size,
        preprocessing=PREPROCESSING_INFO,
        architecture=architecture,
        augment=augment.model_dump(),
        precision="float32",
        models=entries,
    )
    write_manifest(manifest, staging)
    publish_bundle(staging, models_dir)
    return models_dir
