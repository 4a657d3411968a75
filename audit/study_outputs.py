"""Publishing a study's report: ``report.html``, the study's manifest, the index and its manifest.

The daemon calls ``publish_study`` when a study completes and ``gicls-audit report`` calls it
on demand; both pass the audit log as read then, so a report is always built from every row of
the study, whichever daemon wrote them (daemons sharing an inbox share its log). What was
written is recorded with its sha256 in the manifests at fixed places
(``gicls.audit.outputs``), so ``gicls-audit verify`` checks the reports and the index.

Two daemons may finish the same study at once: the report, the index and the manifests are
written under an exclusive ``flock`` on the output folder itself, so a manifest always
describes the report beside it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gicls.audit.outputs import ROOT_MANIFEST, OutputEntry, study_manifest_path, write_manifest
from gicls.audit.reader import AuditTable
from gicls.audit.study_model import BundleSummary
from gicls.audit.study_report import study_summaries, write_index, write_study_report
from gicls.errors import AuditError


def studies_in(log: AuditTable) -> list[str]:
    """The study ids of the log's rows, sorted (loose files, study "", left out)."""
    return sorted(set(log.text["study"]) - {""})


@contextmanager
def _output_lock(output_dir: Path) -> Iterator[None]:
    fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def publish_study(
    output_dir: Path, log: AuditTable, studies: Sequence[str], bundle: BundleSummary
) -> list[Path]:
    """Write the report of each of ``studies`` from ``log``, then the index; the reports.

    Raises AuditError naming a study the log has no row of.
    """
    known = set(studies_in(log))
    unknown = [study for study in studies if study not in known]
    if unknown:
        raise AuditError(
            f"no audit rows for study {', '.join(map(repr, unknown))} in {log.path}"
            + (f" (studies: {', '.join(sorted(known))})" if known else " (it has no studies)")
        )
    reports = []
    with _output_lock(output_dir):
        for study in studies:
            rows = log.table[log.text["study"] == study]
            written = write_study_report(output_dir, study, rows, bundle, log.classes)
            entries = [OutputEntry.of(output_dir, path) for path in written]
            write_manifest(output_dir, study_manifest_path(study), entries)
            reports += written
        summaries = study_summaries(output_dir, log.table, log.classes, bundle.device_reference)
        index = write_index(output_dir, summaries)
        write_manifest(output_dir, ROOT_MANIFEST, [OutputEntry.of(output_dir, index)])
    return reports
