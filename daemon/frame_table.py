"""The per-frame score table of a video: ``output/<study>/_frames/<video stem>.parquet``.

Columns (the studies contract; the report renderer reads them): ``frame_index`` int64,
``frame_time_s`` float64, one float32 column per class named exactly as configured (calibrated
scores, class order), ``predicted_class`` string, ``flags`` string (``;``-joined). Frames are
appended batch by batch as row groups of a staging file, so a long video costs no memory
beyond the batch in hand; ``publish`` fsyncs it and renames it into place, so the final name
only ever holds a whole table (an abandoned staging file is the caller's to discard).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gicls.fsutil import fsync_dir

FRAMES_FOLDER = "_frames"
FRAME_TABLE_SUFFIX = ".parquet"
STAGING_SUFFIX = ".staging"


@dataclass(frozen=True)
class ScoredFrames:
    """One batch of a video's scored frames: a row group of its table.

    ``frame_index`` int64 (n,), ``frame_time_s`` float64 (n,), ``scores`` float32
    (n, n_classes) calibrated in class order, ``predicted_class`` and ``flags`` (``;``-joined)
    one string per frame.
    """

    frame_index: np.ndarray
    frame_time_s: np.ndarray
    scores: np.ndarray
    predicted_class: Sequence[str]
    flags: Sequence[str]


def frame_table_schema(classes: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [
            pa.field("frame_index", pa.int64()),
            pa.field("frame_time_s", pa.float64()),
            *(pa.field(name, pa.float32()) for name in classes),
            pa.field("predicted_class", pa.string()),
            pa.field("flags", pa.string()),
        ]
    )


def staging_path(path: Path) -> Path:
    """Where the table of ``path`` is written until it is complete (hidden, beside it)."""
    return path.with_name(f".{path.name}{STAGING_SUFFIX}")


class FrameTableWriter:
    """One video's frame table, written at ``staging_path(path)``, published at ``path``."""

    def __init__(self, path: Path, classes: Sequence[str]) -> None:
        self.path = path
        self.staging = staging_path(path)
        self.classes = tuple(classes)
        self.schema = frame_table_schema(self.classes)
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.staging, self.schema)

    def append(self, frames: ScoredFrames) -> None:
        if self._writer is None:
            raise ValueError(f"frame table {self.path} is already closed")
        if frames.scores.shape != (len(frames.frame_index), len(self.classes)):
            raise ValueError(
                f"scores of shape {frames.scores.shape} for {len(frames.frame_index)} frames of "
                f"{len(self.classes)} classes"
            )
        columns = [
            pa.array(frames.frame_index, pa.int64()),
            pa.array(frames.frame_time_s, pa.float64()),
            *(pa.array(frames.scores[:, k], pa.float32()) for k in range(len(self.classes))),
            pa.array(frames.predicted_class, pa.string()),
            pa.array(frames.flags, pa.string()),
        ]
        self._writer.write_batch(pa.record_batch(columns, schema=self.schema))
        self.rows += len(frames.frame_index)

    def publish(self) -> Path:
        """Close, fsync and rename the staging file onto ``path``; returns ``path``."""
        self._close()
        with self.staging.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.staging, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        self._close()
        self.staging.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> FrameTableWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        # Whatever was not published when the block ends (an error, a stop) is not kept.
        if self._writer is not None or self.staging.exists():
            self.discard()


def read_frame_table(path: Path) -> pa.Table:
    return pq.read_table(path)
