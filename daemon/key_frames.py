"""Key frames of a video: the best-scoring frames of each condition, spread over the study.

A frame is a candidate for a condition when the condition won its argmax or flagged it (its
score reached the bundle's threshold). Per condition the candidates are taken by score,
highest first, skipping any within ``min_gap_s`` of one already taken, until ``per_class``
are chosen: a long bleed gives one or two frames, not fifty neighbours. Candidates are kept
as three numbers per frame while the video streams past (50,000 frames: a few MB); the pixels
of the chosen frames are read again afterwards at the video's own resolution, which is what a
reader wants to look at (the model sees a downscaled copy): frame_reader.py.

The JPEG names carry the frame index and time: ``<stem>_f<index:07d>_t<seconds:09.2f>s.jpg``.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gicls.audit.schema import FLAG_SEPARATOR
from gicls.daemon.frame_table import ScoredFrames
from gicls.errors import UnreadableVideoError
from gicls.fsutil import fsync_dir

KEY_FRAME_QUALITY = 90
_NAME = re.compile(r"^(?P<stem>.*)_f(?P<index>\d{7,})_t(?P<time>\d{6,}\.\d{2})s\.jpg$")


@dataclass(frozen=True)
class KeyFrame:
    class_name: str
    frame_index: int
    frame_time_s: float
    score: float


def key_frame_name(stem: str, frame_index: int, frame_time_s: float) -> str:
    return f"{stem}_f{frame_index:07d}_t{frame_time_s:09.2f}s.jpg"


def parse_key_frame_name(name: str) -> tuple[str, int, float] | None:
    """(video stem, frame index, frame time in s) of a key-frame file name, else None."""
    match = _NAME.match(name)
    if match is None:
        return None
    return match["stem"], int(match["index"]), float(match["time"])


class KeyFramePicker:
    def __init__(
        self, classes: Sequence[str], per_class: int, min_gap_s: float, skip: Sequence[str] = ()
    ) -> None:
        self.classes = tuple(classes)
        self.per_class = per_class
        self.min_gap_s = min_gap_s
        self._wanted = [k for k, name in enumerate(self.classes) if name not in set(skip)]
        self._candidates: dict[int, list[np.ndarray]] = {k: [] for k in self._wanted}

    def offer(self, frames: ScoredFrames) -> None:
        if self.per_class == 0:
            return
        flagged = [set(cell.split(FLAG_SEPARATOR)) if cell else set() for cell in frames.flags]
        for k in self._wanted:
            name = self.classes[k]
            rows = [
                row
                for row in range(len(frames.frame_index))
                if frames.predicted_class[row] == name or name in flagged[row]
            ]
            if rows:
                # (index, time, score) as float64: frame indices stay exact far beyond 2**31.
                candidates = [frames.frame_index[rows], frames.frame_time_s[rows]]
                candidates.append(frames.scores[rows, k])
                self._candidates[k].append(np.stack(candidates, axis=1).astype(np.float64))

    def picks(self) -> list[KeyFrame]:
        """The chosen frames, by class order then score (highest first)."""
        chosen: list[KeyFrame] = []
        for k in self._wanted:
            if not self._candidates[k]:
                continue
            table = np.concatenate(self._candidates[k])
            # Highest score first; ties go to the earlier frame, so reruns pick alike.
            order = np.lexsort((table[:, 0], -table[:, 2]))
            taken_times: list[float] = []
            for row in order:
                index, time_s, score = table[row]
                at = bisect.bisect_left(taken_times, time_s)
                near_before = at > 0 and time_s - taken_times[at - 1] < self.min_gap_s
                near_after = at < len(taken_times) and taken_times[at] - time_s < self.min_gap_s
                if near_before or near_after:
                    continue
                taken_times.insert(at, time_s)
                chosen.append(KeyFrame(self.classes[k], int(index), float(time_s), float(score)))
                if len(taken_times) == self.per_class:
                    break
        return chosen


@dataclass(frozen=True)
class Staged:
    """A file written at ``staging`` that becomes ``final`` when published."""

    staging: Path
    final: Path


def key_frame_path(study_dir: Path, stem: str, pick: KeyFrame) -> Path:
    """``<study_dir>/<Class>/<stem>_f..._t...s.jpg``."""
    return study_dir / pick.class_name / key_frame_name(stem, pick.frame_index, pick.frame_time_s)


def stage_key_frames(
    picks: Sequence[KeyFrame],
    frames: Iterable[tuple[int, Image.Image]],
    study_dir: Path,
    stem: str,
) -> list[Staged]:
    """Write each picked frame as a JPEG beside its final path (hidden staging name).

    ``frames``: (frame index, RGB image at the video's own size) of the picked frames, in any
    order (frame_reader.read_frames). Staged in frame order, the order the audit row lists.
    """
    wanted: dict[int, list[KeyFrame]] = {}
    for pick in picks:
        wanted.setdefault(pick.frame_index, []).append(pick)
    if not wanted:
        return []
    staged: dict[int, list[Staged]] = {}
    for index, image in frames:
        if index in wanted and index not in staged:
            paths = [key_frame_path(study_dir, stem, pick) for pick in wanted[index]]
            staged[index] = [_stage_jpeg(image, path) for path in paths]
    written = [item for index in sorted(staged) for item in staged[index]]
    missing = sorted(set(wanted) - set(staged))
    if missing:
        discard(written)
        raise UnreadableVideoError(f"frames {missing[:5]} not found when read again", 0)
    return written


def _stage_jpeg(image: Image.Image, final: Path) -> Staged:
    staging = final.with_name(f".{final.name}.staging")
    final.parent.mkdir(parents=True, exist_ok=True)
    with staging.open("wb") as handle:
        image.save(handle, format="JPEG", quality=KEY_FRAME_QUALITY)
        handle.flush()
        os.fsync(handle.fileno())
    return Staged(staging, final)


def publish(staged: Sequence[Staged]) -> None:
    """Rename every staged file onto its final name, then fsync the folders."""
    for item in staged:
        os.replace(item.staging, item.final)
    for folder in {item.final.parent for item in staged}:
        fsync_dir(folder)


def discard(staged: Sequence[Staged]) -> None:
    for item in staged:
        item.staging.unlink(missing_ok=True)
