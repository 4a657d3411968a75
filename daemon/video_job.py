"""One claimed capsule video, scored one batch per ``step`` and turned into a journal plan.

The video stays in the work folder (``work/<entry id>``) while it is decoded as a stream; its
outputs are staged beside it in ``work/<entry id>.video/``: the Parquet frame table, the key
frames, and a manifest of them when there are many. ``plan`` hashes the staged files and
returns what the pipeline journals and then completes like any file's plan: the staged outputs
renamed into ``output/<study>/...``, the video linked into ``<study>/_videos/`` (or
``<study>/_quarantine/video_unreadable/``), one audit row. Nothing is journaled per batch:
after a crash the video is simply done again from the start (the staging folder is cleared
first), which gives the same table and the same key frames as an uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gicls.audit.outputs import MAX_INLINE_OUTPUTS, OutputEntry, encode_outputs, manifest_bytes
from gicls.audit.schema import FLAG_SEPARATOR, neutralise
from gicls.config import DaemonConfig
from gicls.daemon.decide import ReviewPolicy, decide
from gicls.daemon.frame_reader import FrameMarks, read_frames
from gicls.daemon.frame_table import (
    FRAME_TABLE_SUFFIX,
    FRAMES_FOLDER,
    FrameTableWriter,
    ScoredFrames,
)
from gicls.daemon.journal import Entry
from gicls.daemon.key_frames import KeyFramePicker, Staged, stage_key_frames
from gicls.daemon.prefetch import Prefetcher
from gicls.daemon.studies import has_video_extension
from gicls.daemon.video_decode import (
    FrameBatch,
    VideoInfo,
    iter_frame_batches,
    probe_video,
)
from gicls.errors import UnreadableVideoError
from gicls.hashing import file_sha256
from gicls.models.ensemble import FusedEnsemble

VIDEOS_FOLDER = "_videos"
VIDEO_UNREADABLE = UnreadableVideoError.reason
STAGING_SUFFIX = ".video"
MANIFEST_SUFFIX = ".outputs.manifest.json"
# Batches decoded ahead of the one being scored: one is enough to keep the decoder busy while
# the ensemble scores; a second absorbs the variation of decode time between batches.
DECODE_AHEAD_BATCHES = 2


@dataclass(frozen=True)
class VideoSettings:
    """The ``[daemon]`` keys a video job needs."""

    max_batch: int
    frame_step: int
    key_frames_per_class: int
    key_frame_min_gap_s: float
    key_frames_skip_classes: tuple[str, ...]

    @classmethod
    def of(cls, settings: DaemonConfig) -> VideoSettings:
        return cls(
            settings.max_batch,
            settings.video_frame_step,
            settings.key_frames_per_class,
            settings.key_frame_min_gap_s,
            settings.key_frames_skip_classes,
        )


def is_video_entry(work: Path, entry: Entry) -> bool:
    """A claimed regular file with a video extension (a link or FIFO named .mp4 is not)."""
    if not has_video_extension(entry.name):
        return False
    try:
        return stat.S_ISREG(os.lstat(work / entry.id).st_mode)
    except OSError:
        return False


def staging_folder(work: Path, entry_id: str) -> Path:
    return work / f"{entry_id}{STAGING_SUFFIX}"


class VideoJob:
    """Scores the frames of ``source`` (a regular file in the work folder) batch by batch."""

    def __init__(
        self,
        source: Path,
        staging: Path,
        classes: tuple[str, ...],
        ensemble: FusedEnsemble,
        review: ReviewPolicy,
        settings: VideoSettings,
    ) -> None:
        self.source = source
        self.staging = staging
        self.classes = classes
        # One bundle for the whole video, even across a reload: one table, one model.
        self.ensemble = ensemble
        self.review = review
        self.settings = settings
        self.started = time.monotonic()
        self.error: UnreadableVideoError | None = None
        self.finished = False
        self.last_time_s = 0.0
        shutil.rmtree(staging, ignore_errors=True)  # what an interrupted earlier run left
        staging.mkdir()
        try:
            self.info = probe_video(source)
        except UnreadableVideoError as exc:
            self.info = VideoInfo(0, 0.0, 0.0)
            self.error = exc
            self.finished = True
        self.table = FrameTableWriter(staging / f"frames{FRAME_TABLE_SUFFIX}", classes)
        self.marks = FrameMarks()  # to read the key frames again by seeking
        self.picker = KeyFramePicker(
            classes,
            settings.key_frames_per_class,
            settings.key_frame_min_gap_s,
            settings.key_frames_skip_classes,
        )
        # The next batches are decoded while this one is scored (prefetch.py); a video that
        # cannot even be probed is never decoded.
        self._batches: Prefetcher[FrameBatch] | None = None
        if not self.finished:
            frames = iter_frame_batches(
                source, ensemble.image_size, settings.max_batch, settings.frame_step
            )
            self._batches = Prefetcher(
                frames, DECODE_AHEAD_BATCHES, name="video-decode", background=True
            )

    @property
    def frames_scored(self) -> int:
        return self.table.rows

    @property
    def frames_expected(self) -> int:
        """Frames this job will score, as far as the container says (0: unknown)."""
        step = self.settings.frame_step
        return (self.info.frames + step - 1) // step

    def step(self) -> int:
        """Decode and score one batch; returns its size (0 once the video is finished)."""
        if self.finished or self._batches is None:
            return 0
        try:
            batch = next(self._batches)
        except StopIteration:
            self.finished = True
            return 0
        except UnreadableVideoError as exc:
            self.error = exc
            self.finished = True
            return 0
        self._score(batch)
        return len(batch)

    def _score(self, batch: FrameBatch) -> None:
        scores = self.ensemble(batch.pixels)
        thresholds = self.ensemble.manifest.class_thresholds
        decisions = [decide(row, self.classes, self.review, thresholds) for row in scores]
        predicted = [d.predicted_class or "" for d in decisions]
        flags = [FLAG_SEPARATOR.join(d.flags) for d in decisions]
        frames = ScoredFrames(
            batch.frame_index, batch.frame_time_s, np.asarray(scores, np.float32), predicted, flags
        )
        self.table.append(frames)
        self.picker.offer(frames)
        self.marks.add(batch)
        self.last_time_s = float(batch.frame_time_s[-1])

    def duration_s(self) -> float:
        if self.info.duration_s > 0:
            return self.info.duration_s
        rate = self.info.fps
        return self.last_time_s + (1 / rate if rate > 0 else 0.0) if self.frames_scored else 0.0

    def stage_outputs(self, study: str, stem: str, destination: str) -> list[tuple[Staged, str]]:
        """Finish the staged files; each with its final path relative to output_dir.

        ``destination``: where the video itself goes (relative to output_dir); an unreadable
        video's frame table is published beside it, a good one's in ``<study>/_frames/``.
        """
        outputs: list[tuple[Staged, str]] = []
        if self.frames_scored == 0:
            self.table.discard()
        else:
            table = self.table.publish()  # complete, inside the staging folder
            folder = os.path.dirname(destination) if self.error else f"{study}/{FRAMES_FOLDER}"
            outputs.append((Staged(table, table), f"{folder}/{stem}{FRAME_TABLE_SUFFIX}"))
        if self.error is None:
            keys = self.staging / "key_frames"
            picks = self.picker.picks()
            marks = [self.marks[pick.frame_index] for pick in picks]
            frames = read_frames(self.source, marks, self.ensemble.image_size)
            for staged in stage_key_frames(picks, frames, keys, stem):
                final = staged.final.relative_to(keys).as_posix()
                outputs.append((staged, f"{study}/{final}"))
        return outputs

    def abandon(self) -> None:
        """Stop without a result (a stop or a full disk): nothing staged is kept."""
        if self._batches is not None:
            self._batches.close()
        self.table.discard()
        shutil.rmtree(self.staging, ignore_errors=True)


def plan_cells(
    job: VideoJob, outputs: list[tuple[Staged, str]], manifest_at: str
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The video's audit cells (besides the file's own) and its (staging, final) moves.

    ``manifest_at``: where the manifest goes when the outputs are too many for the cell.
    """
    entries = [OutputEntry(final, file_sha256(staged.staging)) for staged, final in outputs]
    moves = [(str(staged.staging), final) for staged, final in outputs]
    if len(entries) > MAX_INLINE_OUTPUTS:
        manifest = job.staging / "outputs.manifest.json"
        manifest.write_bytes(manifest_bytes(entries))
        entries = [OutputEntry(manifest_at, file_sha256(manifest))]
        moves.append((str(manifest), manifest_at))
    cells = {
        "frames_scored": str(job.frames_scored),
        "duration_s": f"{job.duration_s():.3f}",
        "outputs": encode_outputs(entries),
        "model_bundle": job.ensemble.bundle_id,
        "precision": job.ensemble.precision,
    }
    if job.error is not None:
        cells["reason"] = neutralise(f"{VIDEO_UNREADABLE}: {job.error.detail}")
    return cells, moves


def plan_extra(moves: list[tuple[str, str]]) -> dict[str, Any]:
    """The part of a journal plan that the pipeline's ``complete`` publishes."""
    return {"outputs_staged": [[os.fsencode(a).hex(), b] for a, b in moves]}
