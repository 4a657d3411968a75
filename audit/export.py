"""``gicls-audit export``: the audit log as CSV or Excel, or as a Capsule Vision 2024 submission.

Text cells are exported as the log holds them: names stay escaped and formula-neutralised, and
in Excel every text cell is stored as text, so nothing a file name says is ever evaluated. The
output appears complete or not at all (written beside it, then renamed over it).
"""

from __future__ import annotations

import math
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from gicls.audit.reader import NUMBER_COLUMNS, AuditTable
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


def export_log(log: AuditTable, export_format: ExportFormat, out: Path) -> int:
    """Write ``log`` to ``out`` in ``export_format``; returns the number of data rows written.

    capsule-vision keeps classified and review rows: ``image_path`` (the logged file name), one
    probability column per class (named as the class), ``predicted_class``; it is written as
    xlsx when ``out`` ends with ``.xlsx``, else as CSV.
    """
    if export_format is ExportFormat.CSV:
        frame, as_xlsx = log.text, False
    elif export_format is ExportFormat.XLSX:
        numbers = [*NUMBER_COLUMNS, *log.classes]
        frame, as_xlsx = log.text.assign(**{c: log.table[c] for c in numbers}), True
    else:
        frame, as_xlsx = _submission(log), out.suffix.lower() == ".xlsx"
    _write_atomically(frame, out, as_xlsx)
    return len(frame)


def _submission(log: AuditTable) -> pd.DataFrame:
    scored = log.table["status"].isin(SCORED_STATUSES)
    if not scored.any():
        raise AuditError(f"audit log {log.path} has no classified or review rows to export")
    rows = log.table[scored]
    return pd.DataFrame(
        {
            IMAGE_PATH: rows["file_name"],
            **{name: rows[name] for name in log.classes},
            PREDICTED_CLASS: rows["predicted_class"],
        }
    )


def _write_atomically(frame: pd.DataFrame, out: Path, as_xlsx: bool) -> None:
    if not out.parent.is_dir():
        raise AuditError(f"cannot write {out}: folder {out.parent} does not exist")
    partial = out.with_name(f".{out.name}.partial")
    try:
        if as_xlsx:
            _write_xlsx(frame, partial)
        else:
            # CRLF as RFC 4180 asks and as the daemon writes its log.
            frame.to_csv(partial, index=False, lineterminator="\r\n")
        os.replace(partial, out)
    except OSError as exc:
        raise AuditError(f"cannot write {out}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)


def _write_xlsx(frame: pd.DataFrame, path: Path) -> None:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("audit")
    sheet.append([_cell(sheet, name) for name in frame.columns])
    for row in frame.itertuples(index=False, name=None):
        sheet.append([_cell(sheet, value) for value in row])
    workbook.save(path)


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
