"""Where an audit log's rows are: the configured file, then one segment per newer schema version.

A log is never rewritten and one file never mixes layouts. When the daemon opens a log whose
newest segment has an older schema version, it leaves that file as it is and starts a segment
beside it, ``<stem>.v<N><suffix>`` for schema version N (``audit_log.csv`` ->
``audit_log.v2.csv``); rows are always appended to the newest segment. Readers take the
configured file, then the ``.v<N>`` segments by increasing N, which is the order the rows were
written in, and read them as one log.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gicls.audit.schema import VERSION_COLUMN, layout_version
from gicls.errors import AuditError

# Enough for the header and the first row of any log gicls writes.
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Segment:
    """One file of an audit log; ``version`` is None while it has no complete header."""

    path: Path
    version: int | None


def segment_path(log: Path, version: int) -> Path:
    """The file that rows of schema ``version`` go to once ``log`` holds an older version."""
    return log.with_name(f"{log.stem}.v{version}{log.suffix}")


def segment_paths(log: Path) -> list[Path]:
    """The files of the log configured as ``log`` that exist, oldest first."""
    pattern = re.compile(re.escape(log.stem) + r"\.v([0-9]+)" + re.escape(log.suffix))
    try:
        names = os.listdir(log.parent)
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise AuditError(f"cannot list the folder of audit log {log}: {exc.strerror}") from None
    numbered = sorted(
        (int(match[1]), log.parent / name)
        for name in names
        if (match := pattern.fullmatch(name)) is not None
    )
    return ([log] if log.exists() else []) + [path for _, path in numbered]


def head_version(head: bytes, classes: Sequence[str], path: Path) -> int | None:
    """The schema version of a file that starts with ``head``; None if it has no header yet.

    Raises AuditError when the header fits no version for ``classes`` (see layout_version).
    """
    lines = head.rstrip(b"\0").split(b"\n")[:-1]  # complete lines only
    if not lines:
        return None
    records = list(csv.reader(line.decode("utf-8", "replace").rstrip("\r") for line in lines[:2]))
    header = records[0]
    declared = None
    if VERSION_COLUMN in header and len(records) > 1:
        row = records[1]
        position = header.index(VERSION_COLUMN)
        declared = row[position] if position < len(row) else None
    return layout_version(header, classes, declared, path)


def read_segments(log: Path, classes: Sequence[str]) -> list[Segment]:
    """Every existing segment of ``log`` with its version, checked against ``classes``."""
    found = []
    for path in segment_paths(log):
        try:
            with path.open("rb") as handle:
                head = handle.read(HEAD_BYTES)
        except OSError as exc:
            raise AuditError(f"cannot read audit log {path}: {exc.strerror}") from None
        found.append(Segment(path, head_version(head, classes, path)))
    return found
