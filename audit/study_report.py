"""The study report (``output/<study>/report.html``) and the index (``output/index.html``).

Both are rendered from Jinja2 templates shipped in the package (``templates/``) with
autoescaping on: file and study names come from whoever filled the inbox. A report is one
self-contained HTML file (plots and thumbnails embedded as base64), so it opens from a USB
stick without network; both files are replaced atomically, so a reader never sees half a page.

Callers: the daemon when a study completes, ``gicls-audit report`` on demand. They pass the
audit rows of the study (a slice of ``AuditTable.table``) and the bundle's summary.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

from gicls import __version__
from gicls.audit.device_check import DeviceCheck, device_check
from gicls.audit.key_frames import KeyFrameGroup, key_frames
from gicls.audit.study_model import (
    REPORT_NAME,
    BundleSummary,
    ListedFile,
    StudySummary,
    cell,
    study_frames,
    with_study_columns,
)
from gicls.audit.timeline import Timeline, timelines
from gicls.fsutil import replace_file
from gicls.logs import get_logger
from gicls.models.bundle import DeviceReference

log = get_logger(__name__)

INDEX_NAME = "index.html"
KEY_FRAMES_PER_CLASS = 50
# The README's wording, word for word: the report travels without the README.
DISCLAIMER = (
    "Research use only. gicls is not a medical device. It has not been validated for clinical "
    "use and must not be used for diagnosis or treatment decisions. Every figure it prints is "
    "a measurement on the data you gave it, not a claim of diagnostic accuracy."
)


@dataclass(frozen=True)
class ClassCount:
    name: str
    frames: int
    share: float  # of the study's scored frames, 0..1
    review: int


@dataclass(frozen=True)
class StudyReport:
    """Everything ``study_report.html.j2`` shows."""

    study: str
    generated_at: str
    code_version: str
    first_processed_at: str
    last_processed_at: str
    files: int
    statuses: tuple[tuple[str, int], ...]
    frames: int
    unreadable_frame_tables: tuple[str, ...]
    class_counts: tuple[ClassCount, ...]
    review: tuple[ListedFile, ...]
    quarantine: tuple[ListedFile, ...]
    bundle: BundleSummary
    device: DeviceCheck
    timelines: tuple[Timeline, ...]
    key_frames: tuple[KeyFrameGroup, ...]
    key_frames_per_class: int


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("gicls.audit", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(template: str, **context: Any) -> bytes:
    page = _environment().get_template(template).render(disclaimer=DISCLAIMER, **context)
    return page.encode("utf-8")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def render_study_report(output_dir: Path, report: StudyReport) -> list[Path]:
    """Write ``output_dir/<study>/report.html`` from a built report (``build_study_report``).
    Returns the files written (the report)."""
    path = output_dir / report.study / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, [_render("study_report.html.j2", report=report)])
    log_event = log.warning if report.device.warning else log.info
    log_event(
        "study_report_written",
        study=report.study,
        path=str(path),
        frames=report.frames,
        device_check=str(report.device.status),
        device_message=report.device.message,
    )
    return [path]


def build_study_report(
    output_dir: Path,
    study: str,
    table: pd.DataFrame,
    bundle: BundleSummary,
    classes: Sequence[str],
    key_frames_per_class: int = KEY_FRAMES_PER_CLASS,
) -> StudyReport:
    """Everything the report shows, computed from the study's rows and frame tables;
    ``.device`` is its device check (``gicls.audit.device_check``)."""
    rows = with_study_columns(table)
    read = study_frames(output_dir, study, rows, classes)
    frames = read.table
    first, last = _processed_span(rows)
    return StudyReport(
        study=study,
        generated_at=_now(),
        code_version=__version__,
        first_processed_at=first,
        last_processed_at=last,
        files=len(rows),
        statuses=tuple(
            (str(status), int(count)) for status, count in rows["status"].value_counts().items()
        ),
        frames=len(frames),
        unreadable_frame_tables=read.unreadable,
        class_counts=_class_counts(frames, rows, classes),
        review=_listed(rows[rows["status"] == "review"]),
        quarantine=_listed(rows[rows["status"] == "quarantined"]),
        bundle=bundle,
        device=device_check(frames, classes, bundle.device_reference),
        timelines=timelines(frames, classes),
        key_frames=key_frames(output_dir, study, frames, classes, key_frames_per_class),
        key_frames_per_class=key_frames_per_class,
    )


def _processed_span(rows: pd.DataFrame) -> tuple[str, str]:
    times = pd.to_datetime(rows["processed_at"], utc=True, errors="coerce").dropna()
    if times.empty:
        return "", ""
    return (
        times.min().strftime("%Y-%m-%d %H:%M:%S"),
        times.max().strftime("%Y-%m-%d %H:%M:%S"),
    )


def _class_counts(
    frames: pd.DataFrame, rows: pd.DataFrame, classes: Sequence[str]
) -> tuple[ClassCount, ...]:
    predicted = frames["predicted_class"].value_counts()
    review = rows.loc[rows["status"] == "review", "predicted_class"].map(cell).value_counts()
    total = max(len(frames), 1)
    return tuple(
        ClassCount(
            name,
            int(predicted.get(name, 0)),
            predicted.get(name, 0) / total,
            int(review.get(name, 0)),
        )
        for name in classes
    )


def _listed(rows: pd.DataFrame) -> tuple[ListedFile, ...]:
    def number(value: Any) -> float | None:
        parsed = pd.to_numeric(value, errors="coerce")
        return None if pd.isna(parsed) else float(parsed)

    return tuple(
        ListedFile(
            file_name=cell(row["file_name"]),
            source_path=cell(row["source_path"]),
            predicted_class=cell(row["predicted_class"]),
            confidence=number(row["confidence"]),
            reason=cell(row["reason"]),
            destination=cell(row["destination"]),
        )
        for row in rows.to_dict("records")
    )


def study_summary(
    output_dir: Path,
    study: str,
    table: pd.DataFrame,
    classes: Sequence[str],
    reference: DeviceReference | None = None,
) -> StudySummary:
    """The index line of one study from its audit rows (``reference``: the bundle's, for the
    device check column)."""
    rows = with_study_columns(table)
    frames = study_frames(output_dir, study, rows, classes).table
    counts = frames["predicted_class"].value_counts()
    _first, last = _processed_span(rows)
    return StudySummary(
        study=study,
        report=f"{study}/{REPORT_NAME}",
        files=len(rows),
        frames=len(frames),
        frames_per_class=tuple(
            (name, int(counts[name])) for name in classes if counts.get(name, 0)
        ),
        review=int((rows["status"] == "review").sum()),
        quarantined=int((rows["status"] == "quarantined").sum()),
        last_processed_at=last,
        device_warning=device_check(frames, classes, reference).warning,
    )


def report_summary(report: StudyReport) -> StudySummary:
    """The index line of a built report: ``study_summary``'s figures, without reading the
    study's frames a second time (for a long video, a tenth of the report's time)."""
    return StudySummary(
        study=report.study,
        report=f"{report.study}/{REPORT_NAME}",
        files=report.files,
        frames=report.frames,
        frames_per_class=tuple(
            (count.name, count.frames) for count in report.class_counts if count.frames
        ),
        review=len(report.review),
        quarantined=len(report.quarantine),
        last_processed_at=report.last_processed_at,
        device_warning=report.device.warning,
    )


def write_index(output_dir: Path, studies: Sequence[StudySummary]) -> Path:
    """Write ``output_dir/index.html`` listing ``studies`` with their counts and report links."""
    path = output_dir / INDEX_NAME
    output_dir.mkdir(parents=True, exist_ok=True)
    page = _render(
        "index.html.j2", studies=list(studies), generated_at=_now(), code_version=__version__
    )
    replace_file(path, [page])
    return path
