"""Fixtures shared by every test module.

Bundles here are real Keras models (tiny, untrained or briefly trained) written through the
product's own bundle API, so the daemon and evaluation tests exercise the real loading path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data beside the clone)")
    return path


BundleFactory = Callable[..., Path]


@pytest.fixture
def make_bundle(tmp_path: Path) -> BundleFactory:
    """Write an untrained bundle of tiny seed_cnn models and return its folder."""

    def factory(
        classes: tuple[str, ...] = ("Bleeding", "Normal", "Polyp"),
        image_size: int = 32,
        models_dir: Path | None = None,
        seed: int = 0,
    ) -> Path:
        import keras

        from gicls.config import AugmentConfig
        from gicls.models.architectures import build_model
        from gicls.models.bundle import (
            file_sha256,
            model_file_name,
            new_manifest,
            publish_bundle,
            replace_in_stage,
            stage_bundle,
            write_manifest,
        )
        from gicls.models.preprocessing import PREPROCESSING_ID

        target = models_dir or tmp_path / "Models"
        staging = stage_bundle(target)
        augment = AugmentConfig()
        keras.utils.set_random_seed(seed)
        entries = {}
        for name in classes:
            path = replace_in_stage(staging / model_file_name(name))
            build_model("seed_cnn", image_size, augment).save(path)
            entries[name] = {"file": path.name, "sha256": file_sha256(path)}
        manifest = new_manifest(
            classes=list(classes),
            image_size=image_size,
            preprocessing={"decode": PREPROCESSING_ID, "rescale": "in-graph 1/255"},
            architecture="seed_cnn",
            augment=augment.model_dump(),
            precision="float32",
            models=entries,
        )
        write_manifest(manifest, staging)
        publish_bundle(staging, target)
        return target

    return factory
