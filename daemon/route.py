"""Routing: move a claimed file into its folder under ``output_dir`` without clobbering.

rename(2) silently replaces an existing file, so files are linked into place (link(2) fails
with EEXIST instead) and only then unlinked from the work folder. A file the daemon may not
link (with ``fs.protected_hardlinks = 1`` an unprivileged process cannot link a file it neither
owns nor can read: a ``cp -p`` of someone else's 0600 file) is renamed with RENAME_NOREPLACE
instead, which also fails with EEXIST rather than clobber. Either way the file is, at every
instant, in the work folder or at its journaled destination, which is all recovery needs.
On a name collision a unique suffix derived from the entry id is added, trimming the stem so
the name stays within the 255-byte limit. Links are made with ``follow_symlinks=False``: a
quarantined symbolic link is moved as the link itself, never as its target. Destinations are
relative to ``output_dir``; a study's files go to the same folders under ``output/<study>/``.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from gicls.daemon.reasons import Reason
from gicls.fsutil import RENAME_NOREPLACE, fsync_dir, renameat2

REVIEW_FOLDER = "_review"
QUARANTINE_FOLDER = "_quarantine"
DUPLICATES_FOLDER = "_duplicates"
NAME_MAX = 255
# Longer "extensions" are part of the name (e.g. "report.2024-01-01 final scan").
_MAX_SUFFIX_BYTES = 16


def destination_folder(status: str, predicted_class: str | None, reason: Reason | None) -> str:
    """The folder (relative to output_dir) for a file with this audit status."""
    if status == "quarantined":
        if reason is None:
            raise ValueError("a quarantined file needs a reason")
        return f"{QUARANTINE_FOLDER}/{reason.word}"
    if status == "review":
        return REVIEW_FOLDER
    if status == "duplicate":
        return DUPLICATES_FOLDER
    if predicted_class is None:
        raise ValueError("a classified file needs a predicted class")
    return predicted_class


def _split(name: bytes) -> tuple[bytes, bytes]:
    stem, dot, suffix = name.rpartition(b".")
    if not dot or not stem or len(suffix) + 1 > _MAX_SUFFIX_BYTES:
        return name, b""
    return stem, b"." + suffix


def _trim_utf8(raw: bytes, limit: int) -> bytes:
    """Cut to ``limit`` bytes, backing off so a UTF-8 sequence is not split in half."""
    cut = raw[:limit]
    while cut and len(cut) < len(raw) and (raw[len(cut)] & 0xC0) == 0x80:
        cut = cut[:-1]
    return cut


def candidate_names(name: str, token: str) -> Iterator[str]:
    """The original name first, then ones with a unique suffix, all at most NAME_MAX bytes."""
    raw = os.fsencode(name)
    stem, suffix = _split(raw)
    yield name  # an inbox entry's name is within NAME_MAX already
    # dict.fromkeys: a short token would otherwise be tried twice.
    tags = itertools.chain(
        dict.fromkeys((token[:8], token)), (f"{token}-{n}" for n in itertools.count(2))
    )
    for tag in tags:
        tail = b"-" + tag.encode("ascii") + suffix
        yield os.fsdecode(_trim_utf8(stem, NAME_MAX - len(tail)) + tail)


class Router:
    """Owns the folder layout under ``output_dir``."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def prepare(self, classes: Sequence[str]) -> None:
        for folder in (*classes, REVIEW_FOLDER, QUARANTINE_FOLDER, DUPLICATES_FOLDER):
            (self.output_dir / folder).mkdir(parents=True, exist_ok=True)
        fsync_dir(self.output_dir)

    def choose(self, folder: str, name: str, token: str, reserved: Collection[str]) -> str:
        """A destination for ``name`` in ``folder`` that neither exists nor is ``reserved``.

        ``reserved`` holds destinations chosen for the same batch but not linked yet.
        """
        target = self.output_dir / folder
        if not target.is_dir():
            _make_folders(target)
        for candidate in candidate_names(name, token):
            destination = f"{folder}/{candidate}"
            if destination not in reserved and not os.path.lexists(target / candidate):
                return destination
        raise AssertionError("candidate_names is infinite")  # pragma: no cover

    def place(self, source: Path, destination: str) -> bool:
        """Put ``source`` at ``destination``; True if it is there now (also if it already was).

        False when another file holds the name: ``source`` is untouched, choose another.
        """
        target = self.output_dir / destination
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            return _same_inode(source, target)
        except PermissionError as exc:
            if exc.errno != errno.EPERM:
                raise
            try:
                renameat2(source, target, RENAME_NOREPLACE)
            except FileExistsError:
                return False
        return True

    def present(self, destination: str) -> bool:
        return os.path.lexists(self.output_dir / destination)

    def sync_folders(self, destinations: Sequence[str]) -> None:
        for folder in {os.path.dirname(d) for d in destinations}:
            fsync_dir(self.output_dir / folder)


def _make_folders(target: Path) -> None:
    """Create ``target`` and its missing parents (a new study's), each entry made durable."""
    missing = []
    folder = target
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    target.mkdir(parents=True, exist_ok=True)
    for created in missing:
        fsync_dir(created.parent)


def _same_inode(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
