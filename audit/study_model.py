"""The inputs of a study report, built from the audit rows of one study and the model bundle.

Everything here is plain data (frozen dataclasses, one pandas frame of frames) so that the
renderer (``gicls.audit.study_report``) only lays it out. Rows are those ``gicls.audit``'s
reader yields (``AuditTable.table``, or its ``text`` frame): the columns of schema version 4
(``study``, ``source_path``, ``frames_scored``, ``duration_s``, ``outputs``) are read as empty
when a frame lacks them, so a log written before studies existed still renders.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gicls.audit.schema import decode_name
from gicls.audit.summary import SCORED_STATUSES
from gicls.models.bundle import HELD_OUT_OF_TRAINING, DeviceReference, Manifest, read_manifest

# The columns schema version 4 adds; older rows (and older readers' frames) lack them.
STUDY_COLUMNS = ("study", "source_path", "frames_scored", "duration_s", "outputs")
FRAMES_FOLDER = "_frames"
REPORT_NAME = "report.html"

# Headline figures of the held-out evaluation, in the order the report shows them.
HEADLINE_METRICS = (
    ("balanced_accuracy", "Balanced accuracy"),
    ("mean_auc", "Mean AUC"),
    ("avg_sensitivity", "Mean sensitivity"),
    ("avg_specificity", "Mean specificity"),
    ("avg_f1", "Mean F1"),
    ("accuracy", "Accuracy"),
)


@dataclass(frozen=True)
class HeldOutMetric:
    label: str
    value: float | None
    # 95 % bootstrap interval, when the evaluation computed one for this figure.
    interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class ClassMetric:
    name: str
    held_out_images: int | None
    sensitivity: float | None
    specificity: float | None
    auc: float | None


@dataclass(frozen=True)
class BundleSummary:
    """What a report says about the model bundle: its id and what its evaluation measured.

    ``measured_on`` names the data the figures were measured on (a report without it would
    invite reading them as a property of the models in general).
    """

    bundle_id: str
    created_at: str
    architecture: str
    measured_on: str
    scores: str  # which scores the figures are of: calibrated (how) or uncalibrated
    metrics: tuple[HeldOutMetric, ...]
    class_metrics: tuple[ClassMetric, ...]
    device_reference: DeviceReference | None = None

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> BundleSummary:
        validation = manifest.metrics.get("validation") or {}
        kind = "calibrated" if "calibrated" in validation else "uncalibrated"
        figures: Mapping[str, Any] = validation.get(kind) or {}
        intervals: Mapping[str, Any] = figures.get("intervals") or {}
        metrics = tuple(
            HeldOutMetric(label, _number(figures.get(key)), _interval(intervals.get(key)))
            for key, label in HEADLINE_METRICS
            if key in figures
        )
        per_class_images = manifest.data.get("validation_images") or {}
        class_wise: Mapping[str, Any] = figures.get("class_wise_metrics") or {}
        class_metrics = tuple(
            ClassMetric(
                name,
                per_class_images.get(name),
                _number(class_wise[name].get("recall")),
                _number(class_wise[name].get("specificity")),
                _number(class_wise[name].get("auc")),
            )
            for name in manifest.classes
            if name in class_wise
        )
        calibration = validation.get("calibration") or {}
        scores = (
            f"calibrated ({calibration.get('method')}, {calibration.get('figures')})"
            if kind == "calibrated"
            else "uncalibrated"
        )
        return cls(
            bundle_id=manifest.bundle_id,
            created_at=manifest.created_at,
            architecture=manifest.architecture,
            measured_on=_measured_on(manifest.data, validation.get("images")),
            scores=scores if validation else "no held-out evaluation in this bundle",
            metrics=metrics,
            class_metrics=class_metrics,
            device_reference=manifest.device_reference,
        )


def read_bundle_summary(models_dir: Path) -> BundleSummary:
    """The summary of the bundle in ``models_dir`` (raises ModelBundleError without one)."""
    return BundleSummary.from_manifest(read_manifest(models_dir))


def _measured_on(data: Mapping[str, Any], images: Any) -> str:
    if images is None:
        return "no held-out evaluation recorded in this bundle"
    where = data.get("validation")
    if where == HELD_OUT_OF_TRAINING:
        seed = data.get("split_seed")
        where = f"a held-out split of {data.get('training_dir')}" + (
            f" (split seed {seed})" if seed is not None else ""
        )
    elif where:
        where = f"the validation folder {where}"
    else:
        where = "held-out images"
    return f"{images} images of {where}, never used for training"


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = _number(value[0]), _number(value[1])
        if low is not None and high is not None:
            return low, high
    return None


@dataclass(frozen=True)
class ListedFile:
    """One file of the review or quarantine list, as the audit row names it."""

    file_name: str
    source_path: str
    predicted_class: str
    confidence: float | None
    reason: str
    destination: str


@dataclass(frozen=True)
class StudySummary:
    """One line of ``output/index.html``."""

    study: str
    report: str  # the report's path relative to output_dir, "/"-separated
    files: int
    frames: int
    frames_per_class: tuple[tuple[str, int], ...]
    review: int
    quarantined: int
    last_processed_at: str
    device_warning: bool = False


def with_study_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with every schema-4 column present (empty text where a frame lacks one)."""
    missing = {name: "" for name in STUDY_COLUMNS if name not in rows.columns}
    return rows.assign(**missing) if missing else rows


def cell(value: Any) -> str:
    """A text cell as a string: NaN and None (blank cells) read as ""."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key reading runs of digits as numbers: frame2 before frame10."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
        for part in re.split(r"(\d+)", name)
        if part
    )


def destination_path(output_dir: Path, row: Mapping[str, Any]) -> Path | None:
    """The file a row's ``destination`` names, or None when it names none inside output_dir."""
    text = cell(row.get("destination"))
    if not text:
        return None
    relative = Path(
        decode_name(text, cell(row.get("destination_hex"))).decode("utf-8", "surrogateescape")
    )
    if relative.is_absolute() or ".." in relative.parts:
        return None
    return output_dir / relative


def frame_tables(output_dir: Path, study: str) -> list[Path]:
    """The Parquet frame tables of the study's videos (``output/<study>/_frames/*.parquet``)."""
    folder = output_dir / study / FRAMES_FOLDER
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.parquet"), key=lambda path: natural_key(path.name))


def study_frames(
    output_dir: Path, study: str, rows: pd.DataFrame, classes: Sequence[str]
) -> pd.DataFrame:
    """Every scored frame of the study, image files first (in natural order of their paths),
    then each video's frames (from its Parquet frame table, in frame order).

    Columns: one float64 score per class, ``status`` (the row's; "classified" for video
    frames), ``predicted_class``, ``flags``, ``series`` (the
    video's stem, "" for image files), ``position`` (0.. within its series), ``time_s`` (frame
    time, NaN for image files), ``name`` (source path or file name; "" for video frames),
    ``frame_index`` (-1 for image files) and ``destination`` (relative, for image files).
    """
    rows = with_study_columns(rows)
    scores = rows[list(classes)].apply(pd.to_numeric, errors="coerce")
    is_image = (
        rows["status"].isin(SCORED_STATUSES)
        & scores.notna().all(axis=1)
        & (rows["frames_scored"].map(cell) == "")
    )
    images = rows[is_image]
    names = [
        cell(s) or cell(f) for s, f in zip(images["source_path"], images["file_name"], strict=True)
    ]
    order = sorted(range(len(names)), key=lambda i: natural_key(names[i]))
    image_frames = pd.DataFrame(
        {
            **{name: scores.loc[images.index, name].to_numpy()[order] for name in classes},
            "status": images["status"].map(cell).to_numpy()[order],
            "predicted_class": images["predicted_class"].map(cell).to_numpy()[order],
            "flags": images["flags"].map(cell).to_numpy()[order]
            if "flags" in images
            else [""] * len(order),
            "series": "",
            "position": range(len(order)),
            "time_s": float("nan"),
            "name": [names[i] for i in order],
            "frame_index": -1,
            "destination": [cell(images["destination"].iloc[i]) for i in order],
            "destination_hex": [
                cell(images["destination_hex"].iloc[i]) if "destination_hex" in images else ""
                for i in order
            ],
        }
    )
    parts = [image_frames]
    for table_path in frame_tables(output_dir, study):
        parts.append(_video_frames(table_path, classes))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else image_frames


def _video_frames(table_path: Path, classes: Sequence[str]) -> pd.DataFrame:
    table = pd.read_parquet(table_path).sort_values("frame_index", kind="stable")
    return pd.DataFrame(
        {
            **{name: table[name].astype("float64").to_numpy() for name in classes},
            "status": "classified",
            "predicted_class": table["predicted_class"].astype(str).to_numpy(),
            "flags": table["flags"].fillna("").astype(str).to_numpy(),
            "series": table_path.stem,
            "position": range(len(table)),
            "time_s": table["frame_time_s"].astype("float64").to_numpy(),
            "name": "",
            "frame_index": table["frame_index"].astype("int64").to_numpy(),
            "destination": "",
            "destination_hex": "",
        }
    )
