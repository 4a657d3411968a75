"""Small labelled trees made with the project's own synthetic generator."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from gicls.training import pipeline
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


def record_fits(monkeypatch, stop_at: str) -> tuple[list[str], list[bool]]:
    """The conditions fitted, recorded around gicls' real fit; while the switch (the second
    value) is on, the fit of ``stop_at`` dies as a power cut would end it."""
    fitted: list[str] = []
    power_cut = [True]
    real_fit = pipeline.fit_into

    def recording(*args, **kwargs):
        condition = args[2].class_name
        if condition == stop_at and power_cut[0]:
            raise RuntimeError("power cut")
        fitted.append(condition)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fit_into", recording)
    return fitted, power_cut


def tiny_config(folder: Path, classes: Sequence[str], epochs: int = 1) -> Path:
    """``folder/config.toml``: ``classes`` from ``folder/data`` into ``folder/Models`` at 32 px,
    10 images a side, a quarter held out."""
    path = folder / "config.toml"
    path.write_text(
        f"classes = {json.dumps(list(classes))}\n"
        '[paths]\ntraining_dir = "data"\nmodels_dir = "Models"\n'
        "[balance]\ntarget_count = 10\nvalidation_fraction = 0.25\n"
        f"[train]\nimage_size = 32\nepochs = {epochs}\nbatch_size = 8\n"
    )
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }
