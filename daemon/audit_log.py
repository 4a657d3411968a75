"""The audit log writer: one CSV row per file, crash-safe, shared safely between processes.

Each row is formatted with the csv module (RFC 4180 quoting, CRLF line ends) into one string
and written with a single ``os.write`` on an O_APPEND descriptor, so concurrent writers never
interleave inside a row. Rows are fsynced once per batch. A crash or power cut can still leave a
torn last line (no final newline, or trailing NUL bytes where the file system had allocated but
not written blocks); it is truncated at start-up, before anything is appended, under an
exclusive flock that writers respect with a shared one.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from gicls.daemon.audit_schema import audit_columns
from gicls.errors import DaemonError
from gicls.fsutil import append_record
from gicls.logs import get_logger

log = get_logger(__name__)
_BLOCK = 64 * 1024


def format_row(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    # Cells arrive escaped (audit_schema); this only guards the one-line-per-row promise.
    safe = [cell.replace("\r", "\\r").replace("\n", "\\n") for cell in cells]
    csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerow(safe)
    return buffer.getvalue().encode("utf-8")


def torn_tail_offset(fd: int) -> int | None:
    """Where the complete lines of the file end, or None if the last line is complete."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) == b"\n":
        return None
    end = size
    while end > 0:
        start = max(0, end - _BLOCK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def iter_rows(path: Path) -> Iterator[dict[str, str]]:
    """Every row of an audit log as a dict (nothing if it does not exist)."""
    try:
        handle = path.open(newline="", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with handle:
        yield from csv.DictReader(handle)


class AuditLog:
    """Appends rows to the audit log at ``path`` with the columns for ``classes``."""

    def __init__(self, path: Path, classes: Sequence[str]) -> None:
        self.path = path
        self.columns = audit_columns(classes)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o660)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._repair()
            self._check_header()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _repair(self) -> None:
        keep = torn_tail_offset(self._fd)
        if keep is None:
            return
        removed = os.fstat(self._fd).st_size - keep
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)
        log.warning("audit_log_repaired", path=str(self.path), bytes_removed=removed)

    def _check_header(self) -> None:
        if os.fstat(self._fd).st_size == 0:
            os.write(self._fd, format_row(self.columns))
            os.fsync(self._fd)
            return
        first = os.pread(self._fd, _BLOCK, 0).split(b"\n", 1)[0].decode("utf-8", "replace")
        header = next(csv.reader([first.rstrip("\r")]))
        if header != self.columns:
            raise DaemonError(
                f"audit log {self.path} has the columns {header}, the configured classes need "
                f"{self.columns}; set daemon.audit_log to a new file"
            )

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold a shared lock while a batch appends rows; fsync them at the end."""
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            yield
            os.fsync(self._fd)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def append(self, row: Mapping[str, str]) -> None:
        append_record(
            self._fd, format_row([row.get(column, "") for column in self.columns]), self.path
        )

    def repair_tail(self) -> None:
        """Truncate a torn last row (an append that failed half-way) before appending again."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._repair()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
