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
import threading
import time
from collections.abc import Sequence

from gicls.audit.schema import encode_name
from gicls.daemon.journal import Entry, Journal
from gicls.daemon.notify import Notifier
from gicls.daemon.pipeline import Pipeline
from gicls.daemon.reasons import POISON
from gicls.daemon.seen_store import RowKey, SeenStore
from gicls.daemon.storage import StorageBackoff, is_storage_full, wait_for_retry
from gicls.daemon.video_job import is_video_entry
from gicls.logs import get_logger

log = get_logger(__name__)

MAX_ATTEMPTS = 3


def planned_rows(entries: Sequence[Entry]) -> dict[RowKey, str]:
    """The audit-row key of each planned entry -> its id, to find the rows already written."""
    wanted: dict[RowKey, str] = {}
    for entry in entries:
        if entry.plan is None:
            continue
        cells = entry.plan["cells"]
        text, hex_cell = encode_name(bytes.fromhex(entry.plan["destination_hex"]))
        wanted[(cells["sha256"], text, hex_cell, cells["batch_id"])] = entry.id
    return wanted


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
    queued = 0
    for entry in unplanned:
        poisoned = entry.attempt > MAX_ATTEMPTS
        if poisoned:
            log.error(
                "file_poisoned",
                file_name=pipeline.studies.display(entry.name),
                crashes=entry.attempt - 1,
            )
        elif is_video_entry(pipeline.work, entry):
            # Scored again from its first frame by the loop, batch by batch (video_job.py).
            pipeline.videos.setdefault(entry.id, entry)
            queued += 1
            continue
        pipeline.process([entry], POISON if poisoned else None)
    return len(planned) + len(unplanned) - queued


def recover_at_start(
    entries: Sequence[Entry],
    pipeline: Pipeline,
    store: SeenStore,
    notifier: Notifier,
    stop: threading.Event,
) -> int:
    """Compact the journal and ``recover`` its ``entries``; on a full disk retry as the loop
    does (storage.py), with STATUS saying so and the watchdog pinged, until it succeeds or
    ``stop`` is set. Returns how many files were finished."""
    backoff = StorageBackoff()
    journal = pipeline.journal
    try:
        journal.compact()
        recovered = recover(entries, pipeline, journal, store.find_logged(planned_rows(entries)))
        store.quiet()
        return recovered
    except OSError as exc:
        if not is_storage_full(exc):
            raise
        failure = exc
    while True:
        backoff.failed(failure, time.monotonic())
        notifier.status(f"storage full: {failure.filename}; retrying start-up recovery")
        if not wait_for_retry(backoff, notifier, stop):
            return 0
        try:
            recovered = recover_running(pipeline, store)
        except OSError as exc:
            if not is_storage_full(exc):
                raise
            failure = exc
            continue
        backoff.recovered(time.monotonic())
        return recovered


def recover_running(pipeline: Pipeline, store: SeenStore) -> int:
    """Start-up recovery again in a running daemon, after a batch failed half-way (disk full).

    The journal is compacted and the audit log's torn row truncated before anything else is
    appended to them; what was planned but never logged is forgotten once recovery is through.
    """
    entries = pipeline.journal.reopen()
    pipeline.audit.repair_tail()
    logged = store.find_logged(planned_rows(entries))
    recovered = recover(entries, pipeline, pipeline.journal, logged, crashed=False)
    store.quiet()
    return recovered
