"""The audit log writer: one CSV row per file, crash-safe, shared safely between processes.

Each row is formatted with the csv module (RFC 4180 quoting, CRLF line ends) into one string
and written with a single ``os.write`` on an O_APPEND descriptor, so concurrent writers never
interleave inside a row. Rows are fsynced once per batch. A crash or power cut can still leave a
torn last line (no final newline, or trailing NUL bytes where the file system had allocated but
not written blocks); it is truncated at start-up, before anything is appended, under an
exclusive flock that writers respect with a shared one.

Rows are appended to the log's newest segment in the current schema version; when that holds an
older version, a new segment is started beside it (``gicls.audit.segments``) and the old file
is left exactly as it is.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from gicls.audit.schema import SCHEMA_VERSION, VERSION_COLUMN, audit_columns
from gicls.audit.segments import HEAD_BYTES, Segment, head_version, read_segments, segment_path
from gicls.errors import AuditError, DaemonError
from gicls.fsutil import append_record, fsync_dir
from gicls.logs import get_logger

log = get_logger(__name__)
_BLOCK = 64 * 1024


def format_row(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    # Cells arrive escaped (gicls.audit.schema); this only guards the one-line-per-row promise.
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


def repair_torn_tail(fd: int, path: Path) -> None:
    """Cut off a torn last line (call under an exclusive lock)."""
    keep = torn_tail_offset(fd)
    if keep is None:
        return
    removed = os.fstat(fd).st_size - keep
    os.ftruncate(fd, keep)
    os.fsync(fd)
    log.warning("audit_log_repaired", path=str(path), bytes_removed=removed)


@contextmanager
def _locked(fd: int, operation: int) -> Iterator[None]:
    fcntl.flock(fd, operation)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _repair_closed_segment(path: Path) -> None:
    """Cut a torn last line off a segment no longer appended to; a whole one is only read.

    The older writer may have crashed mid-row; an archived log may well be read-only.
    """
    with path.open("rb") as handle:
        if torn_tail_offset(handle.fileno()) is None:
            return
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        with _locked(fd, fcntl.LOCK_EX):
            repair_torn_tail(fd, path)
    finally:
        os.close(fd)


def log_segments(log_path: Path, classes: Sequence[str]) -> list[Segment]:
    """The existing segments of the log configured as ``log_path``, oldest first.

    Raises DaemonError when one does not fit ``classes`` or is of a newer schema version.
    """
    try:
        return read_segments(log_path, classes)
    except AuditError as exc:
        raise DaemonError(
            f"{exc}; to start a new log, set daemon.audit_log to a new file"
        ) from None


def append_target(log_path: Path, segments: Sequence[Segment]) -> Path:
    """The file new rows go to: the newest segment, unless it holds an older schema version."""
    if not segments:
        return log_path
    newest = segments[-1]
    if newest.version in (None, SCHEMA_VERSION):
        return newest.path
    return segment_path(log_path, SCHEMA_VERSION)


class AuditWriter:
    """Appends rows to the audit log configured as ``log_path``, with the columns for ``classes``.

    ``path`` is the segment the rows go to (``append_target``). The file an older version left
    is only repaired (a torn last line cut off), never appended to.
    """

    def __init__(
        self,
        log_path: Path,
        classes: Sequence[str],
        on_append: Callable[[Mapping[str, str]], None] | None = None,
    ) -> None:
        self.columns = audit_columns(classes)
        self._on_append = on_append  # told of every row written (the daemon's metrics)
        self._classes = tuple(classes)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        segments = log_segments(log_path, self._classes)
        self.path = append_target(log_path, segments)
        previous = segments[-1] if segments and segments[-1].path != self.path else None
        if previous is not None:
            _repair_closed_segment(previous.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o660)
        version, started = self._prepare()
        if version != SCHEMA_VERSION:
            os.close(self._fd)
            raise DaemonError(
                f"audit log segment {self.path} holds schema version {version}, not "
                f"{SCHEMA_VERSION}; move it away or set daemon.audit_log to a new file"
            )
        if started and previous is not None:
            log.info(
                "audit_log_segment_started",
                path=str(self.path),
                previous=str(previous.path),
                previous_version=previous.version,
                version=SCHEMA_VERSION,
            )

    def _prepare(self) -> tuple[int, bool]:
        """Under an exclusive lock: repair a torn tail, write the header of an empty file.

        Returns the file's schema version and whether its header was written now.
        """
        with _locked(self._fd, fcntl.LOCK_EX):
            repair_torn_tail(self._fd, self.path)
            try:
                version = head_version(os.pread(self._fd, HEAD_BYTES, 0), self._classes, self.path)
            except AuditError as exc:  # another process wrote a header since we looked
                raise DaemonError(str(exc)) from None
            if version is not None:
                return version, False
            os.write(self._fd, format_row(self.columns))
            os.fsync(self._fd)
            fsync_dir(self.path.parent)
            return SCHEMA_VERSION, True

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold a shared lock while a batch appends rows; fsync them at the end."""
        with _locked(self._fd, fcntl.LOCK_SH):
            yield
            os.fsync(self._fd)

    def append(self, row: Mapping[str, str]) -> None:
        cells = {**row, VERSION_COLUMN: str(SCHEMA_VERSION)}
        append_record(
            self._fd, format_row([cells.get(column, "") for column in self.columns]), self.path
        )
        if self._on_append is not None:
            self._on_append(row)

    def repair_tail(self) -> None:
        """Truncate a torn last row (an append that failed half-way) before appending again."""
        with _locked(self._fd, fcntl.LOCK_EX):
            repair_torn_tail(self._fd, self.path)

    def close(self) -> None:
        os.close(self._fd)
