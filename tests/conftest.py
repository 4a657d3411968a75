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
        from gicls.models.untrained import write_untrained_bundle

        return write_untrained_bundle(
            models_dir or tmp_path / "Models", classes, image_size, seed=seed
        )

    return factory
