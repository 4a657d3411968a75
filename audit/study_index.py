"""The index's line of each study, kept beside its report as ``<study>/_summary.json``.

``output/index.html`` lists every study of the audit log. Building every line from its study's
rows would make each study's completion read, and hold in memory, every row of every study
before it: a daemon that runs for months would read an ever longer log each time. So a study's
line is written when its report is, recorded in the study's manifest (``gicls-audit verify``
checks it as it checks the report), and the index is assembled from these files. A line is
trusted only while it counts at least as many rows as the log holds for its study; otherwise,
or when the file is missing or unreadable (a site written before these files existed), it is
rebuilt from that study's rows alone, and written.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from gicls.audit.outputs import OutputEntry, parse_manifest, study_manifest_path, write_manifest
from gicls.audit.study_model import StudySummary
from gicls.errors import AuditError
from gicls.fsutil import replace_file

SUMMARY_NAME = "_summary.json"


def summary_file(output_dir: Path, study: str) -> Path:
    return output_dir / study / SUMMARY_NAME


def write_summary(output_dir: Path, summary: StudySummary) -> Path:
    """Write ``summary`` as its study's ``_summary.json``; the path written."""
    path = summary_file(output_dir, summary.study)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dataclasses.asdict(summary), indent=1, ensure_ascii=True)
    replace_file(path, [text.encode("ascii") + b"\n"])
    return path


def read_summary(output_dir: Path, study: str) -> StudySummary | None:
    """The summary ``write_summary`` left for ``study``; None when there is none or the file
    holds something else (it is then rebuilt, never trusted)."""
    try:
        document = json.loads(summary_file(output_dir, study).read_bytes())
        summary = StudySummary(
            **{
                **document,
                "frames_per_class": tuple(
                    (str(name), int(count)) for name, count in document["frames_per_class"]
                ),
            }
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return summary if summary.study == study else None


def add_to_manifest(output_dir: Path, study: str, written: Path) -> None:
    """Record ``written`` (a file under ``output_dir/study``) in the study's manifest, keeping
    what it lists of other files (its report, written earlier)."""
    relative = study_manifest_path(study)
    path = output_dir / relative
    entries: list[OutputEntry] = []
    if path.exists():
        try:
            entries = parse_manifest(path.read_bytes(), relative)
        except AuditError:
            entries = []  # a damaged manifest is rewritten with what was just written
    fresh = OutputEntry.of(output_dir, written)
    write_manifest(output_dir, relative, [e for e in entries if e.path != fresh.path] + [fresh])
