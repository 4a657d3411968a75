"""Start-up recovery: finish, exactly once, whatever the journal says was in flight.

- planned entries (their audit row and destination were journaled): finish the move and write
  the row, unless the audit log already holds it (matched by sha256, destination and batch);
- claimed entries still in the work folder: processed again, one at a time, so a file that
  crashes the daemon can only take itself down; after ``MAX_ATTEMPTS`` crashes it goes to
  quarantine as ``poison`` without being read or decoded again;
- claimed entries not in the work folder: the rename never happened (or another daemon won
  the race), the file is wherever it was, nothing to do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gicls.audit.rows import iter_rows
from gicls.audit.schema import encode_name
from gicls.daemon.dedupe import SeenIndex
from gicls.daemon.journal import Entry, Journal
from gicls.daemon.pipeline import Pipeline
from gicls.daemon.reasons import POISON
from gicls.logs import get_logger

log = get_logger(__name__)

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class AuditScan:
    seen: SeenIndex
    logged: frozenset[str]  # ids of planned entries whose row is already in the audit log


def _row_key(sha256: str, destination: str, destination_hex: str, batch_id: str) -> tuple[str, ...]:
    return (sha256, destination, destination_hex, batch_id)


def scan_audit_log(path: Path, entries: Sequence[Entry]) -> AuditScan:
    """One pass over the audit log: what was seen before, and which planned rows exist."""
    wanted: dict[tuple[str, ...], str] = {}
    for entry in entries:
        if entry.plan is None:
            continue
        cells = entry.plan["cells"]
        text, hex_cell = encode_name(bytes.fromhex(entry.plan["destination_hex"]))
        wanted[_row_key(cells["sha256"], text, hex_cell, cells["batch_id"])] = entry.id
    seen = SeenIndex()
    logged: set[str] = set()
    for row in iter_rows(path):
        seen.add_row(row)
        key = _row_key(
            row.get("sha256", ""),
            row.get("destination", ""),
            row.get("destination_hex", ""),
            row.get("batch_id", ""),
        )
        if key in wanted:
            logged.add(wanted[key])
    return AuditScan(seen, frozenset(logged))


def recover(
    entries: Sequence[Entry],
    pipeline: Pipeline,
    journal: Journal,
    logged: frozenset[str],
    crashed: bool = True,
) -> int:
    """Resolve every open journal entry; returns how many files were finished.

    ``crashed``: the entries were left by a crash, which counts as an attempt towards poison
    (a batch stopped by a full disk was not the files' fault and does not count).
    """
    planned = [entry for entry in entries if entry.plan is not None]
    unplanned: list[Entry] = []
    for entry in entries:
        if entry.plan is not None:
            continue
        if not os.path.lexists(pipeline.work / entry.id):
            journal.drop(entry)
            continue
        if crashed:
            entry.attempt += 1
            journal.claim(entry)
        unplanned.append(entry)
    journal.sync()
    if entries:
        log.warning(
            "journal_recovery",
            planned=len(planned),
            reprocessed=len(unplanned),
            dropped=len(entries) - len(planned) - len(unplanned),
        )
    if planned:
        pipeline.complete(planned, logged)
    for entry in unplanned:
        poisoned = entry.attempt > MAX_ATTEMPTS
        if poisoned:
            log.error("file_poisoned", file_name=entry.name, crashes=entry.attempt - 1)
        pipeline.process([entry], POISON if poisoned else None)
    return len(planned) + len(unplanned)


def recover_running(pipeline: Pipeline) -> int:
    """Start-up recovery again in a running daemon, after a batch failed half-way (disk full).

    The journal is compacted and the audit log's torn row truncated before anything else is
    appended to them; what was seen is re-read from the log, since the failed batch may have
    remembered files it never logged.
    """
    entries = pipeline.journal.reopen()
    pipeline.audit.repair_tail()
    audit_scan = scan_audit_log(pipeline.audit.path, entries)
    pipeline.seen = audit_scan.seen
    return recover(entries, pipeline, pipeline.journal, audit_scan.logged, crashed=False)
