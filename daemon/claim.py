"""Claiming: take ownership of settled files by an atomic rename into the work folder.

rename(2) within one file system is atomic, so when two claimers (duplicate events, or two
daemons sharing an inbox) race for one name exactly one succeeds and the others get
FileNotFoundError. The journal's claim record is fsynced before the rename, so a crash right
after it leaves a file in the work folder whose original name is known.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from gicls.daemon.faults import Faults
from gicls.daemon.journal import Entry, Journal
from gicls.daemon.settle import Settled, stat_signature
from gicls.fsutil import fsync_dir
from gicls.logs import get_logger

log = get_logger(__name__)


def new_entry_id() -> str:
    return uuid.uuid4().hex


def claim_one(inbox: Path, name: str, work: Path, entry_id: str) -> bool:
    """Rename ``inbox/name`` to ``work/entry_id``; False if another claimer got it first."""
    try:
        os.rename(inbox / name, work / entry_id)
    except FileNotFoundError:
        return False
    return True


def claim_batch(
    settled: Sequence[Settled], inbox: Path, work: Path, journal: Journal, faults: Faults
) -> tuple[list[Entry], list[Settled]]:
    """Claim the settled files that are still unchanged.

    Returns the claimed entries and the files that changed since they settled (the caller
    tracks those again). Files that vanished are simply gone: someone else claimed them.
    """
    candidates: list[tuple[Settled, Entry]] = []
    changed: list[Settled] = []
    for item in settled:
        current = stat_signature(inbox, item.name)
        if current is None:
            continue
        if current != item.signature:
            changed.append(item)
            continue
        candidates.append((item, Entry(new_entry_id(), item.name, item.settled_at)))
    if not candidates:
        return [], changed
    for _item, entry in candidates:
        journal.claim(entry)
    journal.sync()
    faults.reached("claim_journaled")
    claimed: list[Entry] = []
    for item, entry in candidates:
        if claim_one(inbox, item.name, work, entry.id):
            claimed.append(entry)
        else:
            log.debug("claim_lost", file_name=item.name)
            journal.drop(entry)
    fsync_dir(work)
    fsync_dir(inbox)
    faults.reached("claimed")
    return claimed, changed
