"""The seen-index kept current with the audit log, and its snapshot in ``state_dir``.

Re-reading a million rows at every start would make start-up grow with the log. Instead the
index is saved now and then (``SAVE_BYTES`` of log read since the last save, and at a clean
stop) with the log's position it is valid up to (``gicls.audit.rows.Mark`` per segment); a
start loads it and reads only the rows appended after that position, which includes rows other
daemons sharing the log wrote meanwhile. Anything that does not match (the log replaced,
truncated or rewritten, a segment added before the last one, a damaged snapshot) falls back to
reading the whole log, and the snapshot is written again.

A snapshot is only saved while the journal has no entry open, so the row of any entry open at
a later start lies after the snapshot's position: the rows read then also tell which planned
entries already have their row (``find_logged``).

File format (little-endian, written by ``gicls.fsutil.replace_file``): the magic line, one
JSON line (version, marks, count, names length, sha256 of the payload), then the payload:
``count`` 32-byte digests, then the ``count`` references, UTF-8, NUL-separated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path

from gicls.audit.rows import LogCursor, Mark
from gicls.daemon.dedupe import SeenIndex
from gicls.fsutil import replace_file
from gicls.logs import get_logger

log = get_logger(__name__)

SNAPSHOT_NAME = "seen_index.bin"
MAGIC = b"gicls seen-index 1\n"
# About 55,000 rows: a save (some 100 bytes a known file) stays a small share of the work done.
SAVE_BYTES = 16 * 1024 * 1024
COLUMNS = ("sha256", "destination", "file_name", "destination_hex", "batch_id")

RowKey = tuple[str, str, str, str]  # sha256, destination, destination_hex, batch_id


class SeenStore:
    """``index`` holds every row of the log up to ``cursor``; saved to ``snapshot``.

    ``index`` stays the same object for the store's life (the pipeline holds it too).
    """

    def __init__(self, log_path: Path, snapshot: Path) -> None:
        self.snapshot = snapshot
        loaded = _load(snapshot)
        self.index = SeenIndex(loaded[0] if loaded else None)
        self.cursor = LogCursor(log_path, loaded[1] if loaded else None)
        self._saved_at = self.cursor.offset if loaded else 0
        self._quiet = self.cursor.marks  # no entry was open when the log was read this far

    def find_logged(self, wanted: Mapping[RowKey, str]) -> frozenset[str]:
        """Read the log to its end; the ids in ``wanted`` (row key -> entry id) found in it.

        Rows are looked for from the last point where no journal entry was open, so a row
        written by a batch that failed half-way is found however often recovery is retried.
        """
        logged = set()
        rows = 0
        for sha256, destination, file_name, destination_hex, batch_id in self._read(self._quiet):
            rows += 1
            self.index.add_row(sha256, destination, file_name)
            found = wanted.get((sha256, destination, destination_hex, batch_id))
            if found is not None:
                logged.add(found)
        log.info("audit_log_read", rows=rows, files_known=len(self.index.logged))
        return frozenset(logged)

    def quiet(self, save: bool = False) -> None:
        """No journal entry is open: read what was appended, forget what was planned, and
        save the snapshot if enough was read since the last save (or ``save``)."""
        for sha256, destination, file_name, *_ in self._read(self.cursor.marks):
            self.index.add_row(sha256, destination, file_name)
        self.index.settle()
        self._quiet = self.cursor.marks
        if save or self.cursor.offset - self._saved_at >= SAVE_BYTES:
            self._save()

    def _save(self) -> None:
        try:
            replace_file(self.snapshot, _encode(self.index.logged, self._quiet))
        except OSError as exc:
            # Only start-up speed depends on it: the next start reads more of the log.
            log.warning("seen_index_not_saved", path=str(self.snapshot), error=str(exc))
            return
        self._saved_at = sum(mark.size for mark in self._quiet)
        log.info("seen_index_saved", files=len(self.index.logged), log_bytes=self._saved_at)

    def _read(self, since: tuple[Mark, ...]) -> Iterator[tuple[str, ...]]:
        self.cursor.marks = since
        starts = self.cursor.starts()
        if starts is None:
            log.warning("seen_index_rebuilt", audit_log=str(self.cursor.log))
            self.index.forget()
            self.cursor = LogCursor(self.cursor.log)
            self._saved_at = 0
            starts = self.cursor.starts() or []
        return self.cursor.read(COLUMNS, starts)


def _encode(logged: Mapping[bytes, str], marks: tuple[Mark, ...]) -> Iterator[bytes]:
    digests = b"".join(logged)
    names = "\0".join(name.replace("\0", "\ufffd") for name in logged.values()).encode(
        "utf-8", "surrogatepass"
    )
    payload = hashlib.sha256(digests)
    payload.update(names)
    header = {
        "marks": [asdict(mark) for mark in marks],
        "count": len(logged),
        "digest_bytes": len(digests),
        "payload_sha256": payload.hexdigest(),
    }
    yield MAGIC
    yield json.dumps(header).encode() + b"\n"
    yield digests
    yield names


def _load(path: Path) -> tuple[dict[bytes, str], list[Mark]] | None:
    """The snapshot's index and marks; None if there is none or it cannot be trusted."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        if not data.startswith(MAGIC):
            raise ValueError("not a seen-index snapshot")
        header_end = data.index(b"\n", len(MAGIC)) + 1
        header = json.loads(data[len(MAGIC) : header_end].decode())
        payload = memoryview(data)[header_end:]
        if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
            raise ValueError("payload does not match its checksum")
        count, split = int(header["count"]), int(header["digest_bytes"])
        digests = payload[:split].tobytes()
        names = payload[split:].tobytes().decode("utf-8", "surrogatepass").split("\0")
        if split != 32 * count or len(names) != max(count, 1):
            raise ValueError("counts do not match")
        marks = [Mark(**mark) for mark in header["marks"]]
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("seen_index_ignored", path=str(path), error=str(exc))
        return None
    keys = [digests[start : start + 32] for start in range(0, split, 32)]
    return dict(zip(keys, names, strict=False)), marks
