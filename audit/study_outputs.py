"""Publishing a study's report: ``report.html``, the study's manifest, the index and its manifest.

The daemon calls ``publish_study`` when a study completes and ``gicls-audit report`` calls it
on demand; both pass the audit log as it is then, so a report is always built from every row of
the study, whichever daemon wrote them (daemons sharing an inbox share its log). The log is
read in one pass, a chunk at a time, keeping only the rows of the studies being published:
memory grows with those studies, not with the log. The index is assembled from each study's
kept line (``gicls.audit.study_index``); only lines missing or behind the log cost more
passes. Where many studies are read (every report rewritten, every line rebuilt after an
upgrade), they are read in passes of at most ``ROWS_PER_PASS`` rows. What was written
(report, the study's line, index) is recorded with its sha256 in the manifests at fixed
places (``gicls.audit.outputs``), so ``gicls-audit verify`` checks them.

Two daemons may finish the same study at once: the report, the index and the manifests are
written under an exclusive ``flock`` on the output folder itself, so a manifest always
describes the report beside it.
"""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from gicls.audit.outputs import ROOT_MANIFEST, OutputEntry, study_manifest_path, write_manifest
from gicls.audit.reader import AuditSource
from gicls.audit.study_index import add_to_manifest, read_summary, write_summary
from gicls.audit.study_model import BundleSummary, StudySummary
from gicls.audit.study_report import (
    build_study_report,
    render_study_report,
    report_summary,
    study_summary,
    write_index,
)
from gicls.errors import AuditError
from gicls.models.bundle import DeviceReference

# Rows one pass over the log keeps at most when it reads several studies (a larger study is
# read alone). Rewriting every report, or the first report after an upgrade (every study's
# index line rebuilt), would otherwise hold every study's rows at once.
ROWS_PER_PASS = 100_000


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
    reports. One pass reads the rows of all of them at once: for a study that completes.

    Raises AuditError naming a study the log has no row of.
    """
    counts, rows_of = read_studies(source, studies)
    unknown = [study for study in studies if study not in counts]
    if unknown:
        raise UnknownStudyError(
            f"no audit rows for study {', '.join(map(repr, unknown))} in {source.path}"
            + (f" (studies: {', '.join(counts)})" if counts else " (it has no studies)")
        )
    with _output_lock(output_dir):
        reports, lines = _write_reports(output_dir, rows_of, bundle, source.classes)
        _write_index(output_dir, source, counts, lines, bundle.device_reference)
    return reports


def publish_every_study(
    output_dir: Path, source: AuditSource, bundle: BundleSummary, counts: Mapping[str, int]
) -> list[Path]:
    """As ``publish_study`` for every study of ``counts`` (the log's ``study_row_counts``, from
    a pass the caller made), their rows read in passes of at most ``ROWS_PER_PASS``: one pass
    would hold the whole log at once."""
    reports: list[Path] = []
    lines: dict[str, StudySummary] = {}
    for rows_of in _rows_in_passes(source, counts, list(counts)):
        with _output_lock(output_dir):
            written, group_lines = _write_reports(output_dir, rows_of, bundle, source.classes)
        reports += written
        lines |= group_lines
    with _output_lock(output_dir):
        _write_index(output_dir, source, counts, lines, bundle.device_reference)
    return reports


def in_passes(counts: Mapping[str, int], studies: Sequence[str]) -> list[list[str]]:
    """``studies`` in order, in groups whose rows (by ``counts``) stay within
    ``ROWS_PER_PASS``; a study with more rows than that is a group alone."""
    groups: list[list[str]] = []
    rows = 0
    for study in studies:
        count = counts.get(study, 0)
        if groups and rows + count <= ROWS_PER_PASS:
            groups[-1].append(study)
            rows += count
        else:
            groups.append([study])
            rows = count
    return groups


def _rows_in_passes(
    source: AuditSource, counts: Mapping[str, int], studies: Sequence[str]
) -> Iterator[dict[str, pd.DataFrame]]:
    """The rows of ``studies``, by study, one pass over the log per group of ``in_passes``."""
    for group in in_passes(counts, studies):
        _counts, rows_of = read_studies(source, group)
        yield rows_of


def _write_reports(
    output_dir: Path,
    rows_of: Mapping[str, pd.DataFrame],
    bundle: BundleSummary,
    classes: Sequence[str],
) -> tuple[list[Path], dict[str, StudySummary]]:
    """Each study's report, index line and manifest (under the output lock); the reports
    written and the lines, by study."""
    reports = []
    lines = {}
    for study, rows in rows_of.items():
        report = build_study_report(output_dir, study, rows, bundle, classes)
        written = render_study_report(output_dir, report)
        lines[study] = report_summary(report)
        entries = [
            OutputEntry.of(output_dir, path)
            for path in (*written, write_summary(output_dir, lines[study]))
        ]
        write_manifest(output_dir, study_manifest_path(study), entries)
        reports += written
    return reports, lines


def _write_index(
    output_dir: Path,
    source: AuditSource,
    counts: Mapping[str, int],
    fresh: Mapping[str, StudySummary],
    reference: DeviceReference | None,
) -> None:
    """The index of every study in ``counts`` (under the output lock): the lines just written,
    the kept ones, and those missing or behind the log rebuilt from their rows."""
    lines = dict(fresh) | _kept_lines(output_dir, counts, exclude=fresh)
    stale = [study for study in counts if study not in lines]
    if stale:
        lines |= _rebuilt_lines(output_dir, source, stale, counts, reference)
    index = write_index(output_dir, [lines[study] for study in counts])
    write_manifest(output_dir, ROOT_MANIFEST, [OutputEntry.of(output_dir, index)])


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
    counts: Mapping[str, int],
    reference: DeviceReference | None,
) -> dict[str, StudySummary]:
    """Lines missing or behind the log, rebuilt from their studies' rows (more passes, each
    within ``ROWS_PER_PASS``: after an upgrade every line is missing), written and added to
    each study's manifest beside its report."""
    lines = {}
    for rows_of in _rows_in_passes(source, counts, studies):
        for study, rows in rows_of.items():
            lines[study] = study_summary(output_dir, study, rows, source.classes, reference)
            add_to_manifest(output_dir, study, write_summary(output_dir, lines[study]))
    return lines
