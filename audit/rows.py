"""The audit log's rows as plain dicts, for the daemon's start-up scan (no pandas needed)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from gicls.audit.segments import segment_paths


def iter_rows(log: Path) -> Iterator[dict[str, str]]:
    """Every row of the audit log configured as ``log``, all segments in order, as dicts.

    Nothing if the log does not exist. A column a row's schema version did not have is absent
    from its dict (read it with ``row.get(column, "")``).
    """
    for path in segment_paths(log):
        try:
            handle = path.open(newline="", encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        with handle:
            yield from csv.DictReader(handle)
