"""Small labelled trees made with the project's own synthetic generator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from gicls.training.demo_data import synthetic_image


def write_image(path: Path, class_name: str, index: int, seed: int, size: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = synthetic_image(class_name, index, size, np.random.default_rng([seed, index]))
    Image.fromarray(pixels).save(path)
    return path


def make_tree(root: Path, counts: dict[str, int], size: int = 48, seed: int = 0) -> Path:
    """root/<Class>/img_<n>.png with distinct content per file (and per ``seed``)."""
    for index, (name, count) in enumerate(counts.items()):
        for n in range(count):
            write_image(
                root / name / f"img_{n:03d}.png", name, index, seed=seed * 100_000 + n, size=size
            )
    return root


def sort_into_sources(root: Path, source_of: Callable[[str, int], str | None]) -> Path:
    """Move the n-th image of root/<Class>/ into root/<Class>/<source>/ (None: left loose),
    named <source>_<Class>_<name> so that every file name in the tree is unique."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for n, image in enumerate(sorted(folder.glob("*.png"))):
            source = source_of(folder.name, n)
            if source is not None:
                (folder / source).mkdir(exist_ok=True)
                image.rename(folder / source / f"{source}_{folder.name}_{image.name}")
    return root
