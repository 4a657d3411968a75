"""Reading the audit log into pandas for gicls-audit, refusing logs that do not fit.

The log is read as one snapshot of its complete lines: the daemon may be appending while we
read, and a row it has not finished (or one torn by a crash, which the daemon repairs at its
next start) must not show up as a damaged row. Every segment (``gicls.audit.segments``) is
read, in order, as one log, whatever schema version each holds. Everything else that is wrong
with a file is an ``AuditError`` whose one-line message names the file and the line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from gicls.audit.schema import STATUSES, VERSION_COLUMN, audit_columns, encode_name, layout_version
from gicls.audit.segments import Segment, segment_paths
from gicls.errors import AuditError, listing

# Columns holding numbers (besides one score column per class); blank cells become NaN.
NUMBER_COLUMNS = ("bytes", "confidence", "margin", "latency_ms", "frames_scored", "duration_s")
# Given a chunk's cells as text, which rows to keep (a boolean per row).
RowFilter = Callable[[pd.DataFrame], np.ndarray | pd.Series]


@dataclass(frozen=True)
class AuditTable:
    """The complete rows of an audit log, every segment in order (index 0..n-1), in pandas.

    ``text`` holds every cell exactly as written (str), in the columns of the current schema
    version: a column that a row's version did not have reads as "", except ``schema_version``,
    which reads as the row's version. ``table`` holds the same rows typed: ``processed_at`` as
    datetime64 UTC, ``NUMBER_COLUMNS`` and the class score columns as float64 (blank = NaN),
    every other column as in ``text``. Row ``i`` is on physical line ``line_numbers[i]`` of
    ``segments[segment_of[i]]`` (the header is line 1). ``incomplete_tail`` tells that an
    unterminated last line was left out.
    """

    path: Path
    classes: tuple[str, ...]
    segments: tuple[Segment, ...]
    text: pd.DataFrame
    table: pd.DataFrame
    segment_of: tuple[int, ...]
    line_numbers: tuple[int, ...]
    incomplete_tail: bool

    def where(self, row: int) -> str:
        """Where row ``row`` is: its line, and its file when the log has several segments."""
        return _where(self.segments, self.segment_of[row], self.line_numbers[row])


@dataclass(frozen=True)
class AuditChunk:
    """Up to CHUNK_ROWS consecutive rows of one segment, as ``AuditTable`` holds them (index
    0..n-1 within the chunk); row ``i`` is on line ``line_numbers[i]`` of ``segments[segment]``.
    """

    segments: tuple[Segment, ...]
    segment: int
    text: pd.DataFrame
    table: pd.DataFrame
    line_numbers: list[int]

    def where(self, row: int) -> str:
        """Where row ``row`` of the chunk is, as ``AuditTable.where`` says it."""
        return _where(self.segments, self.segment, self.line_numbers[row])


def _where(segments: Sequence[Segment], segment: int, line: int) -> str:
    if len(segments) == 1:
        return f"line {line}"
    return f"{segments[segment].path.name} line {line}"


class _LineNumbers:
    """The physical line of each row of a segment, in memory that does not grow with the rows.

    Row ``k`` is on line ``k + 2`` (after the header) plus the extra lines of the quoted
    newlines in and before it. gicls writes none, so only a hand-edited log pays: one entry
    per row where that extra changes.
    """

    def __init__(self) -> None:
        self.rows = 0
        self._starts = [0]  # from row _starts[i] on, rows have _extra[i] extra lines
        self._extra = [0]

    def append(self, line: int) -> None:
        """Record the line (the last, for a row spanning several) of the next row."""
        extra = line - self.rows - 2
        if extra != self._extra[-1]:
            self._starts.append(self.rows)
            self._extra.append(extra)
        self.rows += 1

    def between(self, start: int, stop: int) -> list[int]:
        """Lines of rows ``start`` .. ``stop - 1``."""
        rows = np.arange(start, stop)
        run = np.searchsorted(self._starts, rows, side="right") - 1
        return (rows + 2 + np.asarray(self._extra)[run]).tolist()


@dataclass(frozen=True)
class _Scan:
    """One segment checked as a stream (structure and UTF-8): what reading its cells needs."""

    segment: Segment
    header: list[str]
    end: int  # where its complete lines end
    lines: _LineNumbers
    incomplete_tail: bool


@dataclass(frozen=True)
class AuditSource:
    """An audit log whose structure is checked, to be read a chunk at a time (``chunks``) or
    whole (``read``). ``rows`` counts the complete rows of every segment; ``incomplete_tail``
    as in ``AuditTable``."""

    path: Path
    classes: tuple[str, ...]
    _scans: tuple[_Scan, ...]

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(scan.segment for scan in self._scans)

    @property
    def rows(self) -> int:
        return sum(scan.lines.rows for scan in self._scans)

    @property
    def incomplete_tail(self) -> bool:
        return any(scan.incomplete_tail for scan in self._scans)

    def chunks(
        self, columns: Sequence[str] | None = None, rows: RowFilter | None = None
    ) -> Iterator[AuditChunk]:
        """Every row, CHUNK_ROWS at a time, each cell checked; ``columns`` (default: all) the
        ones kept. A segment with a header and no rows yields one empty chunk, so that every
        segment is seen.

        ``rows``, when given, sees each chunk's cells as text (every row, the current columns)
        and returns which rows to keep; only those are typed and checked and yielded (a chunk
        may then be empty). Parsing numbers and times is most of a read, so a caller after a
        few rows of a long log (one study's) should say so here.
        """
        kept = _kept_columns(self.classes, columns)
        segments = self.segments
        for index, scan in enumerate(self._scans):
            for text, table, lines in _read_cells(scan, self.classes, rows):
                yield AuditChunk(segments, index, text[kept], table[kept], lines)

    def read(self, columns: Sequence[str] | None = None) -> AuditTable:
        """All rows at once (memory grows with the rows: ``chunks`` does not)."""
        chunks = list(self.chunks(columns))
        return AuditTable(
            path=self.path,
            classes=self.classes,
            segments=self.segments,
            text=pd.concat([chunk.text for chunk in chunks], ignore_index=True),
            table=pd.concat([chunk.table for chunk in chunks], ignore_index=True),
            segment_of=tuple(chunk.segment for chunk in chunks for _ in chunk.line_numbers),
            line_numbers=tuple(line for chunk in chunks for line in chunk.line_numbers),
            incomplete_tail=self.incomplete_tail,
        )


def display(raw: bytes) -> str:
    """A name made safe for one terminal line, written the way the log writes names."""
    return encode_name(raw)[0]


def read_audit_log(
    path: Path, classes: Sequence[str], columns: Sequence[str] | None = None
) -> AuditTable:
    """Read and check the audit log configured as ``path``, written for ``classes``.

    Every cell of every row is checked; ``columns`` (default: all) are the ones kept in the
    table. A tool that needs a few columns names them, so that its memory grows by those
    columns per row and not by the whole row's text.
    """
    return open_audit_log(path, classes).read(columns)


def open_audit_log(path: Path, classes: Sequence[str]) -> AuditSource:
    """The audit log configured as ``path``, written for ``classes``, its structure checked
    (every segment: each line UTF-8, valid CSV, the header's field count, a known layout);
    its cells are checked as its chunks are read."""
    paths = segment_paths(path)
    if not paths:
        raise AuditError(
            f"audit log {path} does not exist (no file processed yet? --log PATH reads another)"
        )
    # A segment the daemon has only just created may not hold its header yet.
    scans = [_scan_segment(file, classes, alone=len(paths) == 1) for file in paths]
    found = tuple(scan for scan in scans if scan is not None)
    if not any(scan.lines.rows for scan in found):
        raise AuditError(f"audit log {path} has a header but no rows yet")
    return AuditSource(path, tuple(classes), found)


def _kept_columns(classes: Sequence[str], columns: Sequence[str] | None) -> list[str]:
    every = audit_columns(classes)
    if columns is None:
        return every
    unknown = set(columns) - set(every)
    if unknown:
        raise ValueError(f"not audit-log columns: {', '.join(sorted(unknown))}")
    return [column for column in every if column in columns]


def _scan_segment(path: Path, classes: Sequence[str], alone: bool) -> _Scan | None:
    """One segment's structure, checked as a stream, never read whole (a study's log holds a
    row per frame); None for a segment with no header yet unless it is ``alone``."""
    try:
        with path.open("rb") as file:
            end, incomplete_tail = _complete_end(file)
            if end == 0:
                if not alone:
                    return None
                raise AuditError(f"audit log {path} is empty (not even a header line)")
            header, first, lines = _check_structure(_lines(file, end, path), path)
    except OSError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc.strerror}") from None
    declared = first[header.index(VERSION_COLUMN)] if first and VERSION_COLUMN in header else None
    version = layout_version(header, classes, declared, path)
    return _Scan(Segment(path, version), header, end, lines, incomplete_tail)


def _read_cells(
    scan: _Scan, classes: Sequence[str], rows: RowFilter | None
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, list[int]]]:
    """A scanned segment's cells, CHUNK_ROWS rows at a time, the rows ``rows`` keeps (default:
    all), checked: text, typed, lines."""
    path, version = scan.segment.path, scan.segment.version
    if scan.lines.rows == 0:  # a header and no rows: the same columns and types, empty
        empty = _current_columns(pd.DataFrame(columns=scan.header, dtype=str), version, classes)
        yield empty, _typed(empty, classes, _Refuser(path, [])), []
        return
    try:
        with path.open("rb") as file:
            chunks = pd.read_csv(
                io.BufferedReader(_Prefix(file, scan.end)),
                dtype=str,
                keep_default_na=False,
                encoding="utf-8",
                chunksize=CHUNK_ROWS,
            )
            done = 0
            with chunks:
                for cells in chunks:
                    lines = scan.lines.between(done, done + len(cells))
                    done += len(cells)
                    if version > 1:
                        bad = cells[VERSION_COLUMN] != str(version)
                        _Refuser(path, lines)(bad, f"schema_version is not {version}")
                    text = _current_columns(cells, version, classes)
                    if rows is not None:
                        keep = np.asarray(rows(text), dtype=bool)
                        text = text[keep].reset_index(drop=True)
                        lines = [line for line, kept in zip(lines, keep, strict=True) if kept]
                    yield text, _typed(text, classes, _Refuser(path, lines)), lines
    except OSError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc.strerror}") from None


# Rows parsed at a time: the parse's own memory stays a few MiB whatever the log's length.
CHUNK_ROWS = 2000


def _current_columns(cells: pd.DataFrame, version: int, classes: Sequence[str]) -> pd.DataFrame:
    """One chunk's cells (as written in schema ``version``) in the current schema's columns."""
    cells = cells.reindex(columns=audit_columns(classes), fill_value="")
    cells[VERSION_COLUMN] = str(version)
    return cells


def _complete_end(file: BinaryIO) -> tuple[int, bool]:
    """Where the last complete line ends (0: none), and whether anything but NUL bytes follows.

    A crash after the file grew but before the data landed leaves NUL bytes at the end.
    """
    position = file.seek(0, io.SEEK_END)
    tail = False
    while position > 0:
        start = max(0, position - _TAIL_BLOCK)
        file.seek(start)
        block = file.read(position - start)
        newline = block.rfind(b"\n")
        after = block[newline + 1 :]
        tail = tail or after.strip(b"\0") != b""
        if newline >= 0:
            return start + newline + 1, tail
        position = start
    return 0, tail


_TAIL_BLOCK = 64 * 1024


class _Prefix(io.RawIOBase):
    """The first ``end`` bytes of ``file`` from where it stands: the complete lines only."""

    def __init__(self, file: BinaryIO, end: int) -> None:
        self._file = file
        self._left = end - file.tell()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        count = self._file.readinto(view) or 0
        self._left -= count
        return count


def _lines(file: BinaryIO, end: int, path: Path) -> Iterator[str]:
    """The first ``end`` bytes of ``file`` as text lines, ends kept; a line that is not UTF-8
    is an AuditError naming it (a character never spans a newline)."""
    file.seek(0)
    for number, raw in enumerate(io.BufferedReader(_Prefix(file, end)), start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AuditError(f"audit log {path} is not UTF-8 text (line {number})") from None


def _check_structure(lines: Iterator[str], path: Path) -> tuple[list[str], list[str], _LineNumbers]:
    """Header, first row ([] if none) and the line number of each row.

    Every row must have the header's field count: pandas pads a short row with empty cells
    without a word, so the count is checked here.
    """
    reader = csv.reader(lines, strict=True)
    first: list[str] = []
    try:
        header = next(reader)
        line_numbers = _LineNumbers()
        wrong: list[str] = []
        for record in reader:
            first = first or record
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
    return header, first, line_numbers


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
    # Shallow: the text columns are shared with ``cells`` (pandas copies on write), only the
    # parsed ones are new.
    table = cells.copy(deep=False)
    times = pd.to_datetime(cells["processed_at"], utc=True, format="ISO8601", errors="coerce")
    refuse(times.isna(), "processed_at is not an ISO 8601 time")
    table["processed_at"] = times
    refuse(~cells["status"].isin(STATUSES), f"status is not one of {', '.join(STATUSES)}")
    for column in (*NUMBER_COLUMNS, *classes):
        numbers = pd.to_numeric(cells[column], errors="coerce")
        refuse(numbers.isna() & (cells[column] != ""), f"{column!r} is not a number")
        table[column] = numbers.astype("float64")
    return table
