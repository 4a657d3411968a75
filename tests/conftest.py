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
