"""The journal: an fsynced, append-only record of every file the daemon owns.

One JSON object per line, each written with a single ``os.write`` on an O_APPEND descriptor:

- ``claim``: id, original name (hex of the raw bytes), settle time and attempt number; fsynced
  *before* the file is renamed into the work folder, so a crash can never strand a file there
  without its name.
- ``plan``: the audit cells (status, scores, sha256, ...) and the destination chosen; fsynced
  before the file is linked there, so recovery can finish the move and write the row without
  running the model again.
- ``done`` / ``drop``: the entry is finished (row in the audit log) or abandoned (the claim
  lost a race, the file is still where it was).

At start-up the journal is replayed into the open entries and compacted (rewritten with only
those). While running it is compacted too, so a daemon that ran for a month does not replay a
month at its next start: whenever a sync finds no entry open (the end of every batch) the file
is truncated to empty, and if entries stay open while it grows it is rewritten with only those.
A line that does not parse can only be the unsynced tail of a crash and is ignored: nothing
acts on a record before it is fsynced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gicls.fsutil import append_record, replace_file
from gicls.logs import get_logger

log = get_logger(__name__)

# With entries open, the journal is rewritten once it is past this size and 4x its size after
# the last rewrite, so rewrites stay rare however many entries remain open.
COMPACT_BYTES = 4 * 1024 * 1024


@dataclass
class Entry:
    """One file owned by the daemon, from claim until its audit row is durable."""

    id: str
    name: str  # original name in the inbox, os.fsdecode'd (surrogateescape keeps raw bytes)
    settled_at: float
    attempt: int = 1
    plan: dict[str, Any] | None = field(default=None)

    def claim_record(self) -> dict[str, Any]:
        return {
            "op": "claim",
            "id": self.id,
            "name_hex": os.fsencode(self.name).hex(),
            "settled_at": self.settled_at,
            "attempt": self.attempt,
        }

    def plan_record(self) -> dict[str, Any]:
        return {"op": "plan", "id": self.id, "plan": self.plan}


def _apply(entries: dict[str, Entry], record: dict[str, Any]) -> None:
    op, entry_id = record["op"], record["id"]
    if op == "claim":
        name = os.fsdecode(bytes.fromhex(record["name_hex"]))
        previous = entries.get(entry_id)
        entries[entry_id] = Entry(
            entry_id,
            name,
            float(record["settled_at"]),
            int(record["attempt"]),
            previous.plan if previous else None,
        )
    elif op == "plan" and entry_id in entries:
        entries[entry_id].plan = record["plan"]
    elif op in ("done", "drop"):
        entries.pop(entry_id, None)


def replay(path: Path) -> list[Entry]:
    """The open entries recorded in the journal at ``path``, in claim order."""
    entries: dict[str, Entry] = {}
    try:
        # Streamed as str: json.loads of bytes first guesses their encoding (a third of its
        # time), and a month-long journal read whole would sit in memory twice.
        handle = path.open(encoding="utf-8", errors="replace", newline="\n")
    except FileNotFoundError:
        return []
    with handle:
        for number, line in enumerate(handle, start=1):
            try:
                _apply(entries, json.loads(line))
            except (ValueError, KeyError, TypeError):
                log.warning("journal_line_skipped", path=str(path), line=number)
    return list(entries.values())


class Journal:
    """Appends records; ``sync`` makes everything appended so far durable, and compacts."""

    def __init__(
        self,
        path: Path,
        entries: Sequence[Entry] | None = None,
        compact_bytes: int = COMPACT_BYTES,
    ) -> None:
        """``entries``: the open entries recorded at ``path`` (None: replay the file to know)."""
        self.path = path
        self._open = {entry.id: entry for entry in (replay(path) if entries is None else entries)}
        self._compact_bytes = compact_bytes
        self._fd = self._open_for_appends()
        self._rewrite_at = max(compact_bytes, 4 * self._size)

    @classmethod
    def open(cls, path: Path) -> tuple[Journal, list[Entry]]:
        """Replay the journal, rewrite it with only the open entries, and open it for appends."""
        entries = replay(path)
        _rewrite(path, entries)
        return cls(path, entries), entries

    def reopen(self) -> list[Entry]:
        """``open`` again in place, after an append failed (a full disk) in a running daemon.

        Compacting drops the torn line a failed append may have left, before anything else is
        appended after it; the open entries are returned for recovery.
        """
        entries = replay(self.path)
        self._open = {entry.id: entry for entry in entries}
        self.compact()
        return entries

    @property
    def idle(self) -> bool:
        """No entry is open: every file claimed is finished or dropped."""
        return not self._open

    def claim(self, entry: Entry) -> None:
        self._open[entry.id] = entry
        self._append(entry.claim_record())

    def plan(self, entry: Entry, plan: dict[str, Any]) -> None:
        entry.plan = plan
        self._append(entry.plan_record())

    def done(self, entry: Entry) -> None:
        self._open.pop(entry.id, None)
        self._append({"op": "done", "id": entry.id})

    def drop(self, entry: Entry) -> None:
        self._open.pop(entry.id, None)
        self._append({"op": "drop", "id": entry.id})

    def sync(self) -> None:
        """Make everything appended durable; with no entry open, leave an empty journal.

        An empty journal and one holding only finished entries replay to the same nothing, so
        truncating before the fsync is crash-safe either way the crash falls, and costs no
        extra fsync. Open entries in a large file: rewritten like at start-up.
        """
        if not self._open and self._size > 0:
            os.ftruncate(self._fd, 0)
            self._size = 0
        os.fsync(self._fd)
        if self._size > self._rewrite_at:
            self.compact()

    def close(self) -> None:
        os.close(self._fd)

    def _append(self, record: dict[str, Any]) -> None:
        line = _line(record)
        append_record(self._fd, line, self.path)
        self._size += len(line)

    def _open_for_appends(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o660)
        self._size = os.fstat(fd).st_size
        return fd

    def compact(self) -> None:
        """Rewrite the file with only the open entries (the torn tail of a failed append goes)."""
        before = self._size
        # Rewrite first: if that fails (a full disk) the old file and descriptor still serve.
        _rewrite(self.path, list(self._open.values()))
        os.close(self._fd)  # it holds the replaced file: appends must go to the new one
        self._fd = self._open_for_appends()
        self._rewrite_at = max(self._compact_bytes, 4 * self._size)
        log.info("journal_compacted", open=len(self._open), bytes_before=before, bytes=self._size)


def _rewrite(path: Path, entries: Sequence[Entry]) -> None:
    """Replace the journal at ``path`` by the records of ``entries``."""
    replace_file(path, _records(entries))


def _records(entries: Sequence[Entry]) -> Iterator[bytes]:
    for entry in entries:
        yield _line(entry.claim_record())
        if entry.plan is not None:
            yield _line(entry.plan_record())


def _line(record: dict[str, Any]) -> bytes:
    # ensure_ascii keeps every record one line of plain bytes whatever the names hold.
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"
