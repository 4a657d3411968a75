"""Reading the audit log into pandas for gicls-audit, refusing logs that do not fit.

The log is read as one snapshot of its complete lines: the daemon may be appending while we
read, and a row it has not finished (or one torn by a crash, which the daemon repairs at its
next start) must not show up as a damaged row. Everything else that is wrong with the file is
an ``AuditError`` whose one-line message names the file and the line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gicls.audit.schema import STATUSES, audit_columns, encode_name
from gicls.errors import AuditError, listing

# Columns holding numbers (besides one score column per class); blank cells become NaN.
NUMBER_COLUMNS = ("bytes", "confidence", "margin", "latency_ms")


@dataclass(frozen=True)
class AuditTable:
    """The complete rows of an audit log, in file order (index 0..n-1).

    ``text`` holds every cell exactly as written (str). ``table`` holds the same rows typed:
    ``processed_at`` as datetime64 UTC, ``NUMBER_COLUMNS`` and the class score columns as float64
    (blank = NaN), every other column as in ``text``. ``line_numbers[i]`` is the physical line
    of row ``i`` (the header is line 1). ``incomplete_tail`` tells that an unterminated last
    line was left out.
    """

    path: Path
    classes: tuple[str, ...]
    text: pd.DataFrame
    table: pd.DataFrame
    line_numbers: tuple[int, ...]
    incomplete_tail: bool


def display(raw: bytes) -> str:
    """A name made safe for one terminal line, written the way the log writes names."""
    return encode_name(raw)[0]


def read_audit_log(path: Path, classes: Sequence[str]) -> AuditTable:
    """Read and check the audit log at ``path`` written for ``classes`` (config order)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AuditError(
            f"audit log {path} does not exist (no file processed yet? --log PATH reads another)"
        ) from None
    except OSError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc.strerror}") from None
    # A crash after the file grew but before the data landed leaves NUL bytes at the end.
    data = data.rstrip(b"\0")
    end = data.rfind(b"\n") + 1
    if end == 0:
        raise AuditError(f"audit log {path} is empty (not even a header line)")
    try:
        text = data[:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AuditError(f"audit log {path} is not UTF-8 text (line {line})") from None

    header, line_numbers = _check_structure(text, path)
    _check_header(header, classes, path)
    if not line_numbers:
        raise AuditError(f"audit log {path} has a header but no rows yet")
    cells = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    refuse = _Refuser(path, line_numbers)
    return AuditTable(
        path=path,
        classes=tuple(classes),
        text=cells,
        table=_typed(cells, classes, refuse),
        line_numbers=tuple(line_numbers),
        incomplete_tail=end < len(data),
    )


def _check_structure(text: str, path: Path) -> tuple[list[str], list[int]]:
    """Header and the line number of each row; every row must have the header's field count.

    pandas pads a short row with empty cells without a word, so the count is checked here.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        line_numbers: list[int] = []
        wrong: list[str] = []
        for record in reader:
            line_numbers.append(reader.line_num)
            if len(record) != len(header):
                wrong.append(f"{reader.line_num} ({len(record)} fields)")
    except csv.Error as exc:
        raise AuditError(f"audit log {path} line {reader.line_num}: not valid CSV: {exc}") from None
    if wrong:
        raise AuditError(
            f"audit log {path}: {len(wrong)} row(s) do not have the header's {len(header)} "
            f"fields, on line(s) {listing(wrong)}"
        )
    return header, line_numbers


def _check_header(header: list[str], classes: Sequence[str], path: Path) -> None:
    expected = audit_columns(classes)
    if header == expected:
        return
    problems = []
    missing = [name for name in expected if name not in header]
    unexpected = [name for name in header if name not in expected]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if missing:
        problems.append(f"missing column(s) {_quoted(missing)}")
    if unexpected:
        problems.append(f"unexpected column(s) {_quoted(unexpected)}")
    if repeated:
        problems.append(f"repeated column(s) {_quoted(repeated)}")
    if not problems:
        logged = [name for name in header if name in classes]
        if logged != list(classes):
            problems.append(
                f"class columns in another order: log {_quoted(logged)}, "
                f"configuration {_quoted(list(classes))}"
            )
        else:
            problems.append(f"columns in another order: {_quoted(header)}")
    raise AuditError(
        f"audit log {path} does not match the configured classes: " + "; ".join(problems)
    )


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


@dataclass(frozen=True)
class _Refuser:
    """Raises AuditError for the rows flagged in a boolean mask, naming their lines."""

    path: Path
    line_numbers: Sequence[int]

    def __call__(self, bad: pd.Series, problem: str) -> None:
        if bad.any():
            lines = [self.line_numbers[i] for i in bad.to_numpy().nonzero()[0]]
            raise AuditError(f"audit log {self.path}: {problem} on line(s) {listing(lines)}")


def _typed(cells: pd.DataFrame, classes: Sequence[str], refuse: _Refuser) -> pd.DataFrame:
    """``cells`` with times and numbers parsed, refusing cells that do not parse."""
    table = cells.copy()
    times = pd.to_datetime(cells["processed_at"], utc=True, format="ISO8601", errors="coerce")
    refuse(times.isna(), "processed_at is not an ISO 8601 time")
    table["processed_at"] = times
    refuse(~cells["status"].isin(STATUSES), f"status is not one of {', '.join(STATUSES)}")
    for column in (*NUMBER_COLUMNS, *classes):
        numbers = pd.to_numeric(cells[column], errors="coerce")
        refuse(numbers.isna() & (cells[column] != ""), f"{column!r} is not a number")
        table[column] = numbers.astype("float64")
    return table
