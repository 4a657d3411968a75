"""Inputs shared by every figure of the end-to-end benchmark: one bundle, one set of JPEGs.

The bundle is ten untrained ``seed_cnn`` models at 224 px written through the product's own
bundle API (speed does not depend on the weights). The images are the project's synthetic
capsule-like frames, saved as 224x224 JPEGs; every figure of one run reads the same files.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from gicls.config import DEFAULT_CLASSES

IMAGE_SIZE = 224
JPEG_QUALITY = 92


def write_bundle(models_dir: Path, image_size: int = IMAGE_SIZE) -> Path:
    """Ten untrained seed_cnn models + manifest, published like the trainer does."""
    from gicls.models.untrained import write_untrained_bundle

    return write_untrained_bundle(models_dir, DEFAULT_CLASSES, image_size)


def write_images(folder: Path, count: int, size: int = IMAGE_SIZE, seed: int = 0) -> list[Path]:
    """``count`` synthetic JPEGs named img_<n>.jpg, cycling through the classes' cues."""
    from PIL import Image

    from gicls.training.demo_data import seeded_synthetic_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        index = n % len(DEFAULT_CLASSES)
        path = folder / f"img_{n:06d}.jpg"
        pixels = seeded_synthetic_image(DEFAULT_CLASSES[index], index, n, size, seed)
        Image.fromarray(pixels).save(path, quality=JPEG_QUALITY)
        paths.append(path)
    return paths


def write_labelled_tree(root: Path, paths: list[Path], classes: tuple[str, str]) -> None:
    """Hard-link ``paths`` into root/<class>/ alternately (a two-class tree for training)."""
    for k, path in enumerate(paths):
        folder = root / classes[k % 2]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        if not target.exists():
            target.hardlink_to(path)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string (paths too)


def config_text(sections: dict[str, dict[str, Any]], classes=DEFAULT_CLASSES) -> str:
    lines = [f"classes = {toml_value(list(classes))}"]
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # fail here, not in a subprocess, if the text is not TOML
    return text
