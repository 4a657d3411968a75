"""Claiming: take ownership of settled files by an atomic rename into the work folder.

rename(2) within one file system is atomic, so when two claimers (duplicate events, or two
daemons sharing an inbox) race for one name exactly one succeeds and the others get
FileNotFoundError. The journal's claim record is fsynced before the rename, so a crash right
after it leaves a file in the work folder whose original name is known.

A rename refused with EPERM/EACCES/EBUSY (another user's file in a sticky inbox, a file
locked by a network file system) means the file is not ours to take: its claim is dropped, it
stays where it is, and the caller is told, so it can leave the file alone for a while.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gicls.daemon.faults import Faults
from gicls.daemon.journal import Entry, Journal
from gicls.daemon.settle import Settled, stat_signature
from gicls.fsutil import fsync_dir
from gicls.logs import get_logger

log = get_logger(__name__)


def new_entry_id() -> str:
    return uuid.uuid4().hex


REFUSING_ERRNOS = frozenset({errno.EPERM, errno.EACCES, errno.EBUSY})


@dataclass
class Claims:
    """What one claim of settled files found."""

    entries: list[Entry] = field(default_factory=list)  # claimed: in the work folder now
    changed: list[Settled] = field(default_factory=list)  # changed since settling: track again
    # Not ours to take: leave alone. With the errno's name (EPERM, ...).
    refused: list[tuple[Settled, str]] = field(default_factory=list)


def claim_one(inbox: Path, name: str, work: Path, entry_id: str) -> bool:
    """Rename ``inbox/name`` (``name`` may be a path in a study folder) to ``work/entry_id``;
    False if another claimer got it first.

    Raises PermissionError (or OSError EBUSY) when the file may not be taken at all.
    """
    try:
        os.rename(inbox / name, work / entry_id)
    except FileNotFoundError:
        return False
    return True


def claim_batch(
    settled: Sequence[Settled],
    inbox: Path,
    work: Path,
    journal: Journal,
    faults: Faults,
    display: Callable[[str], str] = str,
) -> Claims:
    """Claim the settled files that are still unchanged.

    Files that vanished are simply gone: someone else claimed them. ``display`` turns a name
    into what logs may show (a pseudonymised study).
    """
    candidates: list[tuple[Settled, Entry]] = []
    claims = Claims()
    for item in settled:
        current = stat_signature(inbox, item.name)
        if current is None:
            continue
        if current != item.signature:
            claims.changed.append(item)
            continue
        candidates.append((item, Entry(new_entry_id(), item.name, item.settled_at)))
    if not candidates:
        return claims
    for _item, entry in candidates:
        journal.claim(entry)
    journal.sync()
    faults.reached("claim_journaled")
    for item, entry in candidates:
        try:
            taken = claim_one(inbox, item.name, work, entry.id)
        except OSError as exc:
            if exc.errno not in REFUSING_ERRNOS:
                raise
            claims.refused.append((item, errno.errorcode.get(exc.errno or 0, str(exc.errno))))
            journal.drop(entry)
            continue
        if taken:
            claims.entries.append(entry)
        else:
            log.debug("claim_lost", file_name=display(item.name))
            journal.drop(entry)
    fsync_dir(work)
    # The folders the files left: the inbox, or a study folder at any depth in it.
    for folder in {os.path.dirname(entry.name) for entry in claims.entries}:
        fsync_dir(inbox / folder)
    faults.reached("claimed")
    return claims
