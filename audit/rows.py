"""The audit log's rows as plain dicts, for the daemon's start-up scan (no pandas needed)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path


def iter_rows(path: Path) -> Iterator[dict[str, str]]:
    """Every row of an audit log as a dict (nothing if it does not exist)."""
    try:
        handle = path.open(newline="", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with handle:
        yield from csv.DictReader(handle)
