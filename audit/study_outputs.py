"""Publishing a study's report: ``report.html``, the study's manifest, the index and its manifest.

The daemon calls ``publish_study`` when a study completes and ``gicls-audit report`` calls it
on demand; both pass the audit log as it is then, so a report is always built from every row of
the study, whichever daemon wrote them (daemons sharing an inbox share its log). The log is
read in one pass, a chunk at a time, keeping only the rows of the studies being published:
memory grows with those studies, not with the log. The index is assembled from each study's
kept line (``gicls.audit.study_index``); only lines missing or behind the log cost a second
pass. What was written (report, the study's line, index) is recorded
with its sha256 in the manifests at fixed places (``gicls.audit.outputs``), so
``gicls-audit verify`` checks them.

Two daemons may finish the same study at once: the report, the index and the manifests are
written under an exclusive ``flock`` on the output folder itself, so a manifest always
describes the report beside it.
"""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from gicls.audit.outputs import ROOT_MANIFEST, OutputEntry, study_manifest_path, write_manifest
from gicls.audit.reader import AuditSource
from gicls.audit.study_index import add_to_manifest, read_summary, write_summary
from gicls.audit.study_model import BundleSummary, StudySummary
from gicls.audit.study_report import study_summary, write_index, write_study_report
from gicls.errors import AuditError
from gicls.models.bundle import DeviceReference


class UnknownStudyError(AuditError):
    """A study was asked for that the log has no row of."""


def study_row_counts(source: AuditSource) -> dict[str, int]:
    """Rows per study id of the log, in study order (loose files, study "", left out); read
    a chunk at a time, no row kept."""
    counts, _rows = read_studies(source, ())
    return counts


def read_studies(
    source: AuditSource, studies: Collection[str]
) -> tuple[dict[str, int], dict[str, pd.DataFrame]]:
    """In one pass over the log, a chunk at a time: rows per study id (as
    ``study_row_counts``) and the typed rows of each of ``studies`` (those the log has).
    Memory grows with the rows of ``studies``, not with the log."""
    counts: Counter[str] = Counter()

    def count_and_keep(text: pd.DataFrame) -> pd.Series:
        # Every row is counted; only the studies' rows are typed and checked (the log's
        # other rows are what `gicls-audit verify` is for), which keeps this pass short.
        counts.update(text["study"])
        return text["study"].isin(studies)

    kept: list[pd.DataFrame] = []
    for chunk in source.chunks(rows=count_and_keep):
        if len(chunk.table) or not kept:  # the first chunk, even empty, gives the columns
            kept.append(chunk.table)
    counts.pop("", None)
    table = pd.concat(kept, ignore_index=True)
    rows = {
        study: table[table["study"] == study].reset_index(drop=True)
        for study in studies
        if study in counts
    }
    return dict(sorted(counts.items())), rows


@contextmanager
def _output_lock(output_dir: Path) -> Iterator[None]:
    fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def publish_study(
    output_dir: Path, source: AuditSource, studies: Sequence[str], bundle: BundleSummary
) -> list[Path]:
    """Write the report of each of ``studies`` from its rows in ``source``, then the index; the
    reports.

    Raises AuditError naming a study the log has no row of.
    """
    counts, rows_of = read_studies(source, studies)
    unknown = [study for study in studies if study not in counts]
    if unknown:
        raise UnknownStudyError(
            f"no audit rows for study {', '.join(map(repr, unknown))} in {source.path}"
            + (f" (studies: {', '.join(counts)})" if counts else " (it has no studies)")
        )
    reports = []
    reference = bundle.device_reference
    classes = source.classes
    with _output_lock(output_dir):
        lines = {}
        for study in studies:
            rows = rows_of[study]
            written = write_study_report(output_dir, study, rows, bundle, classes)
            lines[study] = study_summary(output_dir, study, rows, classes, reference)
            entries = [
                OutputEntry.of(output_dir, path)
                for path in (*written, write_summary(output_dir, lines[study]))
            ]
            write_manifest(output_dir, study_manifest_path(study), entries)
            reports += written
        lines |= _kept_lines(output_dir, counts, exclude=lines)
        stale = [study for study in counts if study not in lines]
        if stale:
            lines |= _rebuilt_lines(output_dir, source, stale, reference)
        index = write_index(output_dir, [lines[study] for study in counts])
        write_manifest(output_dir, ROOT_MANIFEST, [OutputEntry.of(output_dir, index)])
    return reports


def _kept_lines(
    output_dir: Path, counts: dict[str, int], exclude: Collection[str]
) -> dict[str, StudySummary]:
    """The lines studies' reports left that count at least as many rows as the log holds."""
    lines = {}
    for study, rows in counts.items():
        if study not in exclude:
            kept = read_summary(output_dir, study)
            if kept is not None and kept.files >= rows:
                lines[study] = kept
    return lines


def _rebuilt_lines(
    output_dir: Path,
    source: AuditSource,
    studies: list[str],
    reference: DeviceReference | None,
) -> dict[str, StudySummary]:
    """Lines missing or behind the log, rebuilt from their studies' rows (one more pass),
    written and added to each study's manifest beside its report."""
    _counts, rows_of = read_studies(source, studies)
    lines = {}
    for study, rows in rows_of.items():
        lines[study] = study_summary(output_dir, study, rows, source.classes, reference)
        add_to_manifest(output_dir, study, write_summary(output_dir, lines[study]))
    return lines
