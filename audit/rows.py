"""The audit log's rows without pandas: a few columns, read from an offset on.

The daemon reads its log at every start and after every batch; ``LogCursor`` lets it read
only what was appended since it last looked. A cursor remembers, per segment, the file's
identity (path, inode), how far it was read (always the end of a complete line: each row is
one line, written by one ``os.write``) and a fingerprint of the bytes just before that point,
so a log that was replaced, truncated or rewritten since is noticed rather than read from
the middle of a row.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gicls.audit.segments import segment_paths

_BLOCK = 8 * 1024 * 1024
FINGERPRINT_BYTES = 4096


@dataclass(frozen=True)
class Mark:
    """How far one segment has been read: ``size`` bytes of the file ``path`` with ``inode``."""

    path: str
    inode: int
    size: int
    fingerprint: str  # sha256 (hex) of the FINGERPRINT_BYTES before ``size``


def _fingerprint(fd: int, size: int) -> str:
    start = max(0, size - FINGERPRINT_BYTES)
    return hashlib.sha256(os.pread(fd, size - start, start)).hexdigest()


class LogCursor:
    """Reads the rows of an audit log appended since ``marks`` (None: from the beginning)."""

    def __init__(self, log: Path, marks: Sequence[Mark] | None = None) -> None:
        self.log = log
        self.marks: tuple[Mark, ...] = tuple(marks or ())

    @property
    def offset(self) -> int:
        """Bytes read so far over all segments."""
        return sum(mark.size for mark in self.marks)

    def starts(self) -> list[tuple[Path, int]] | None:
        """Each current segment with the offset to read it from; None when ``marks`` do not
        describe the beginning of the log as it is now (replaced, truncated, rewritten, or a
        segment appeared before the last one read)."""
        paths = segment_paths(self.log)
        if len(paths) < len(self.marks):
            return None
        starts = []
        for position, path in enumerate(paths):
            if position >= len(self.marks):
                starts.append((path, 0))
                continue
            mark = self.marks[position]
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            try:
                st = os.fstat(fd)
                if (
                    os.fspath(path) != mark.path
                    or st.st_ino != mark.inode
                    or st.st_size < mark.size
                    or _fingerprint(fd, mark.size) != mark.fingerprint
                ):
                    return None
            finally:
                os.close(fd)
            starts.append((path, mark.size))
        return starts

    def read(
        self, columns: Sequence[str], starts: Sequence[tuple[Path, int]]
    ) -> Iterator[tuple[str, ...]]:
        """The ``columns`` of every complete row from ``starts`` (see ``starts``) on, in order;
        "" for a column a segment does not have. ``marks`` move on as rows are read."""
        marks = list(self.marks)
        for position, (path, start) in enumerate(starts):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                end = yield from _read_segment(fd, start, columns)
                mark = Mark(os.fspath(path), os.fstat(fd).st_ino, end, _fingerprint(fd, end))
            finally:
                os.close(fd)
            marks[position : position + 1] = [mark]
            self.marks = tuple(marks)


def _read_segment(
    fd: int, start: int, columns: Sequence[str]
) -> Generator[tuple[str, ...], None, int]:
    """Yield the rows after ``start``; return the offset after the last complete line read."""
    header = _header(fd)
    if header is None:
        return start
    header_end, names = header
    indices = [names.index(column) if column in names else None for column in columns]
    offset = max(start, header_end)
    size = os.fstat(fd).st_size  # rows appended after this are for the next read
    while offset < size:
        block = os.pread(fd, min(_BLOCK, size - offset), offset)
        if not block:
            break
        complete = block.rfind(b"\n") + 1
        if complete == 0:
            if len(block) < _BLOCK:
                break  # a row being written, or a torn tail: not a row yet
            complete = len(block)  # a line longer than a block is no row of ours: skip on
        text = block[:complete].decode("utf-8", "replace")
        for row in csv.reader(text.split("\n")):
            if row:
                yield tuple(row[i] if i is not None and i < len(row) else "" for i in indices)
        offset += complete
    return offset


def _header(fd: int) -> tuple[int, list[str]] | None:
    """Where the header line ends and its column names; None while it is incomplete."""
    head = os.pread(fd, 64 * 1024, 0)
    newline = head.find(b"\n")
    if newline < 0:
        return None
    names = next(csv.reader([head[:newline].decode("utf-8", "replace").rstrip("\r")]), [])
    return newline + 1, names
