"""Fixtures shared by every test module.

Bundles here are real Keras models (tiny, untrained or briefly trained) written through the
product's own bundle API, so the daemon and evaluation tests exercise the real loading path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gicls.config import PreprocessConfig
from gicls.models.transform_record import NO_TRANSFORMS

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
        guard_frames: np.ndarray | None = None,
        preprocess: PreprocessConfig | None = None,
    ) -> Path:
        from gicls.models.untrained import write_untrained_bundle

        return write_untrained_bundle(
            models_dir or tmp_path / "Models",
            classes,
            image_size,
            seed=seed,
            guard_frames=guard_frames,
            preprocess=preprocess or NO_TRANSFORMS,
        )

    return factory


ODD_IMAGE_SIZE = 33


@pytest.fixture
def pillow_chokes_on_odd_size(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pillow raises a KeyError (no OSError, no ValueError) on images of the returned size.

    Stands in for the unusual exception a hostile or odd file can raise deep in a decoder.
    """
    from PIL import ImageOps

    real = ImageOps.exif_transpose

    def exif_transpose(image, *args, **kwargs):
        if image.size == (ODD_IMAGE_SIZE, ODD_IMAGE_SIZE):
            raise KeyError("odd decoder state")
        return real(image, *args, **kwargs)

    monkeypatch.setattr(ImageOps, "exif_transpose", exif_transpose)
    return ODD_IMAGE_SIZE


def write_format1_bundle(
    models_dir: Path, classes: tuple[str, ...], image_size: int = 32, **manifest: object
) -> Path:
    """A bundle exactly as the release before format 2 wrote it (``gicls-train all`` at the
    commit before the format bump): tiny seed_cnn models, a format 1 manifest whose bundle id
    hashes the class order and model files only. ``manifest`` overrides top-level fields.
    """
    import hashlib
    import json

    import keras

    from gicls.hashing import file_sha256
    from gicls.models.architectures import CLASSIC_AUGMENT, build_model

    models_dir.mkdir(parents=True)
    keras.utils.set_random_seed(0)
    models, digest = {}, hashlib.sha256()
    for name in classes:
        path = models_dir / f"{name}_model.keras"
        build_model("seed_cnn", image_size, CLASSIC_AUGMENT).save(path)
        sha = file_sha256(path)
        models[name] = {
            "file": path.name,
            "sha256": sha,
            "best_val_accuracy": None,
            "best_val_loss": None,
            "epochs_trained": None,
            "trained_at": None,
        }
        digest.update(f"{name}\0{sha}\n".encode())
    (models_dir / "history").mkdir()
    (models_dir / "history" / f"{classes[0]}.csv").write_text("epoch,loss\n0,0.7\n")
    fields = {
        "format_version": 1,
        "bundle_id": digest.hexdigest()[:16],
        "classes": list(classes),
        "image_size": image_size,
        "preprocessing": {
            "decode": "pillow-rgb8-exif-bilinear-v1",
            "rescale": "in-graph Rescaling(1/255)",
            "input": "uint8 RGB, resized to image_size x image_size",
        },
        "architecture": "seed_cnn",
        "augment": CLASSIC_AUGMENT.model_dump(),
        "precision": "float32",
        "models": models,
        "calibration": None,
        "data": {},
        "metrics": {},
        "created_at": "2026-11-30T10:00:00+00:00",
        "code_version": "0.1.0",
        **manifest,
    }
    (models_dir / "manifest.json").write_text(json.dumps(fields, indent=2) + "\n")
    return models_dir


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A real two-node Ray cluster on this machine (one CPU per node), shared by the session.

    Started once: each start costs seconds. Tests reach it through ``cluster.address`` (from a
    gicls subprocess, or ``ray.init(address=...)`` in the test). A test that kills a node adds
    its own (``cluster.add_node(num_cpus=1)``) and removes that one, so the two nodes every
    other test expects stay up. Skips when the ``cluster`` extra is not installed.
    """
    pytest.importorskip("ray", reason="the 'cluster' extra (ray) is not installed")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()
