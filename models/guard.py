"""Guard frames: real held-out images stored in the bundle with their training-time scores.

Training stores up to ``GUARD_FRAMES`` held-out frames (uint8, at the bundle's image size,
spread over the classes) and the scores the float32 fused ensemble gave them. When a bundle
is loaded, the float32 ensemble must reproduce those scores (``REPRODUCTION_TOLERANCE``):
other scores mean the models are not computing what was trained and evaluated (another decode,
another Keras). The same frames decide whether bfloat16 may be served (gicls.models.ensemble).
The daemon has no labelled images of its own, and must not import training to make some.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gicls.errors import ModelBundleError
from gicls.hashing import file_sha256
from gicls.models.bundle import GuardFrames, replace_in_stage

# With 128 frames, bfloat16's required 99.5 % agreement means every argmax must agree.
GUARD_FRAMES = 128
FRAMES_FILE = "guard/frames.npy"
SCORES_FILE = "guard/scores.npy"
# float32 on the same CPU reproduces its scores to ~1e-7; 1e-5 leaves room for another thread
# split of a reduction, and is far below what another decode or Keras changes (~1e-2).
REPRODUCTION_TOLERANCE = 1e-5


@dataclass(frozen=True)
class GuardSet:
    """Frames uint8 (n, size, size, 3) and their expected float32 scores (n, n_classes)."""

    frames: np.ndarray
    scores: np.ndarray


def spread_over_classes(labels: Sequence[int], count: int = GUARD_FRAMES) -> list[int]:
    """Up to ``count`` positions into ``labels``, taken in turn from each class (in the order
    the positions come), so that a rare class is not left out."""
    by_class: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    queues = [by_class[label] for label in sorted(by_class)]
    picked: list[int] = []
    for turn in range(max((len(q) for q in queues), default=0)):
        picked += [queue[turn] for queue in queues if turn < len(queue)]
    return sorted(picked[:count])


def write_guard(folder: Path, frames: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Write frames and scores as .npy into a staging ``folder``; returns the manifest field."""
    written = {}
    for key, name, array in (("frames", FRAMES_FILE, frames), ("scores", SCORES_FILE, scores)):
        path = replace_in_stage(folder / name)
        np.save(path, array, allow_pickle=False)
        written[key] = {"file": name, "sha256": file_sha256(path)}
    return {**written, "images": len(frames)}


def read_guard(folder: Path, entry: GuardFrames, image_size: int, n_classes: int) -> GuardSet:
    """The guard set of a verified bundle folder, checked for shape and dtype."""
    frames = _load(folder, entry.frames.file)
    scores = _load(folder, entry.scores.file)
    count = entry.images
    if frames.dtype != np.uint8 or frames.shape != (count, image_size, image_size, 3):
        raise ModelBundleError(
            f"{entry.frames.file}: expected uint8 {(count, image_size, image_size, 3)}, "
            f"found {frames.dtype} {frames.shape}"
        )
    if scores.dtype != np.float32 or scores.shape != (count, n_classes):
        raise ModelBundleError(
            f"{entry.scores.file}: expected float32 {(count, n_classes)}, "
            f"found {scores.dtype} {scores.shape}"
        )
    return GuardSet(frames, scores)


def _load(folder: Path, name: str) -> np.ndarray:
    try:
        return np.load(folder / name, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelBundleError(f"cannot read the guard file {name}: {exc}") from None


def check_reproduced(guard: GuardSet, scores: np.ndarray) -> None:
    """Refuse a bundle whose float32 ``scores`` of the guard frames are not the stored ones."""
    worst = float(np.max(np.abs(scores - guard.scores), initial=0.0))
    if not worst <= REPRODUCTION_TOLERANCE:  # NaN too
        raise ModelBundleError(
            f"its models score the stored guard frames up to {worst:.2g} "
            f"away from the scores recorded at training (tolerance {REPRODUCTION_TOLERANCE:g}):"
            " another decode or Keras/TensorFlow version computes differently; rebuild it with "
            "gicls-train all -c CONFIG"
        )
