"""Guard frames: real held-out images stored in the bundle with their training-time scores.

Training stores up to ``GUARD_FRAMES`` held-out frames (uint8, at the bundle's image size,
spread over the classes) and the scores the float32 fused ensemble gave them. When a bundle
is loaded, the float32 ensemble must reproduce those scores (``REPRODUCTION_TOLERANCE``):
other scores mean the models are not computing what was trained and evaluated (another decode,
another Keras). The same frames decide whether a reduced precision (bfloat16, float16) may be
served instead of float32 (``judge_agreement``, used by gicls.models.ensemble).
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


# A reduced precision is judged where float32's decision is not a coin toss. A frame whose two
# best float32 scores are within DECIDED_MARGIN of each other is a near-tie: any rounding may
# swap them (the daemon's review_margin exists for such frames), so a swap there says nothing
# about the reduced precision. On every other frame the reduced precision must pick float32's
# class. Independently, no score of any frame may move by more than MAX_SCORE_DIFFERENCE, so a
# reduced precision cannot keep the winners while corrupting the scores that thresholds,
# calibration and the audit log use. Measured here (bench/precision.py, guard frames of a
# seed_cnn bundle trained 3 epochs at 96 px, and of an untrained one at 128 px): bfloat16
# moved a score by at most 0.0033 (untrained: 0.00025), float16 by 0.00012 (0.00004). The
# bound is 6x the largest of those; a swap needs the two best scores to move half the margin
# each (0.01, 3x what was measured), yet a margin of 0.02 leaves frames between it and twice
# the bound, where only the argmax check can catch a swap.
DECIDED_MARGIN = 0.02
MAX_SCORE_DIFFERENCE = 0.02


@dataclass(frozen=True)
class AgreementVerdict:
    """How a reduced precision's scores of the guard frames compare with float32's."""

    precision: str  # the reduced precision judged ("bfloat16", "float16")
    frames: int
    decided: int  # frames whose float32 top-two margin exceeds DECIDED_MARGIN
    agreeing: int  # of those, the frames where ``precision`` picks float32's class
    agreeing_all: int  # frames where it picks float32's class, near-ties included
    largest_difference: float  # the largest |reduced - float32| over every score of every frame

    @property
    def refused(self) -> str | None:
        """Why ``precision`` may not be served (None when it may)."""
        if self.agreeing < self.decided:
            return "disagrees_with_float32"
        if not self.largest_difference <= MAX_SCORE_DIFFERENCE:  # NaN too
            return "scores_differ"
        return None

    def describe(self) -> str:
        within = "<=" if self.largest_difference <= MAX_SCORE_DIFFERENCE else ">"
        return (
            f"{self.precision} agrees with float32 on {self.agreeing}/{self.decided} frames with "
            f"top-two margin > {DECIDED_MARGIN:g}; largest score difference "
            f"{self.largest_difference:.3g} {within} {MAX_SCORE_DIFFERENCE:g}"
        )


def judge_agreement(exact: np.ndarray, reduced: np.ndarray, precision: str) -> AgreementVerdict:
    """Compare (n, classes) float32 ``exact`` scores with ``reduced`` ones of the same frames."""
    top_two = np.sort(exact, axis=1)[:, -2:]
    decided = top_two[:, 1] - top_two[:, 0] > DECIDED_MARGIN
    same = np.argmax(exact, axis=1) == np.argmax(reduced, axis=1)
    return AgreementVerdict(
        precision=precision,
        frames=len(exact),
        decided=int(decided.sum()),
        agreeing=int((same & decided).sum()),
        agreeing_all=int(same.sum()),
        largest_difference=float(np.max(np.abs(reduced - exact), initial=0.0)),
    )
