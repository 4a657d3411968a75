"""``gicls-audit export``: the audit log as CSV or Excel, or as a Capsule Vision 2024 submission.

Text cells are exported as the log holds them: names stay escaped and formula-neutralised, and
in Excel every text cell is stored as text, so nothing a file name says is ever evaluated. The
output appears complete or not at all (written beside it, then renamed over it).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from gicls.audit.reader import NUMBER_COLUMNS, AuditChunk, AuditSource
from gicls.audit.summary import SCORED_STATUSES
from gicls.errors import AuditError

if TYPE_CHECKING:
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

IMAGE_PATH = "image_path"
PREDICTED_CLASS = "predicted_class"


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    CAPSULE_VISION = "capsule-vision"


def export_log(source: AuditSource, export_format: ExportFormat, out: Path) -> int:
    """Write the log to ``out`` in ``export_format``; returns the number of data rows written.
    The log is read and written a chunk at a time: memory does not grow with the log.

    capsule-vision keeps classified and review rows: ``image_path`` (the logged file name), one
    probability column per class (named as the class), ``predicted_class``; it is written as
    xlsx when ``out`` ends with ``.xlsx``, else as CSV.
    """
    submission = export_format is ExportFormat.CAPSULE_VISION
    as_xlsx = export_format is ExportFormat.XLSX or (submission and out.suffix.lower() == ".xlsx")
    frames = (_frame(chunk, export_format, source.classes) for chunk in source.chunks())
    empty = (
        f"audit log {source.path} has no classified or review rows to export"
        if submission
        else None
    )
    return _write_atomically(frames, out, as_xlsx, empty)


def _frame(chunk: AuditChunk, export_format: ExportFormat, classes: Sequence[str]) -> pd.DataFrame:
    """What ``export_format`` writes of one chunk of the log."""
    if export_format is ExportFormat.CSV:
        return chunk.text
    if export_format is ExportFormat.XLSX:
        numbers = [*NUMBER_COLUMNS, *classes]
        return chunk.text.assign(**{c: chunk.table[c] for c in numbers})
    rows = chunk.table[chunk.table["status"].isin(SCORED_STATUSES)]
    return pd.DataFrame(
        {
            IMAGE_PATH: rows["file_name"],
            **{name: rows[name] for name in classes},
            PREDICTED_CLASS: rows["predicted_class"],
        }
    )


def _write_atomically(
    frames: Iterator[pd.DataFrame], out: Path, as_xlsx: bool, empty: str | None
) -> int:
    """Write ``frames`` (the first gives the header) beside ``out``, then rename it into place;
    the rows written. With ``empty`` set, no rows is that AuditError and nothing is left."""
    if not out.parent.is_dir():
        raise AuditError(f"cannot write {out}: folder {out.parent} does not exist")
    partial = out.with_name(f".{out.name}.partial")
    try:
        rows = _write_xlsx(frames, partial) if as_xlsx else _write_csv(frames, partial)
        if rows == 0 and empty is not None:
            raise AuditError(empty)
        os.replace(partial, out)
    except OSError as exc:
        raise AuditError(f"cannot write {out}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    return rows


def _write_csv(frames: Iterator[pd.DataFrame], path: Path) -> int:
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        for number, frame in enumerate(frames):
            # CRLF as RFC 4180 asks and as the daemon writes its log.
            frame.to_csv(handle, index=False, header=number == 0, lineterminator="\r\n")
            rows += len(frame)
    return rows


def _write_xlsx(frames: Iterator[pd.DataFrame], path: Path) -> int:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("audit")
    rows = 0
    for number, frame in enumerate(frames):
        if number == 0:
            sheet.append([_cell(sheet, name) for name in frame.columns])
        for row in frame.itertuples(index=False, name=None):
            sheet.append([_cell(sheet, value) for value in row])
        rows += len(frame)
    workbook.save(path)
    return rows


def _cell(sheet: WriteOnlyWorksheet, value: object) -> object:
    """An Excel cell for ``value``: text always stored as text, NaN as an empty cell."""
    if isinstance(value, str):
        # openpyxl refuses control characters; a hand-edited log may hold some.
        cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub(_escape, value))
        # openpyxl would store text starting with "=" as a formula.
        cell.data_type = "s"
        return cell
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _escape(match: re.Match[str]) -> str:
    return "".join(f"\\x{ord(ch):02x}" for ch in match.group(0))
