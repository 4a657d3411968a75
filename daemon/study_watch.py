"""Study completion: a study folder quiet for ``study_quiet_seconds`` with every file audited.

Activity is what this daemon noticed of a study (events and scans naming its files, files it
processed) and the folders' own mtimes: a file created in, or claimed out of, a study folder
changes its folder's mtime, so a claim by another daemon sharing the inbox counts too. A study
is complete when, for ``quiet_seconds``, nothing happened, no file is left anywhere in its
folder (whatever the reason: settling, ignored, refused to us) and this daemon holds none of
its files (``busy``, from the loop). Then its report is asked of the report thread
(background_reports.py), and once it is written (it says whether the study has rows, i.e. is
really a study) the emptied folders are removed, deepest first, each only when empty: a file
arriving meanwhile keeps its folder and re-opens the study, and a file arriving later
re-creates it; either way the report is written again when it is quiet again.

An empty folder nobody put files in (someone about to copy into it) is left alone: folders are
only removed for a study this daemon saw files of, or one with rows in the audit log.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gicls.daemon.background_reports import BackgroundReports
from gicls.daemon.studies import study_folder
from gicls.daemon.watch import scan
from gicls.fsutil import fsync_dir
from gicls.logs import get_logger

log = get_logger(__name__)

CHECK_SECONDS = 1.0  # completions are looked for at most this often


@dataclass
class _Open:
    active_at: float  # wall-clock time of the last activity this daemon noticed
    saw_files: bool  # this daemon saw files of it (not only an empty folder)


class StudyWatch:
    def __init__(
        self,
        inbox: Path,
        quiet_seconds: float,
        reports: BackgroundReports,
        display: Callable[[str], str] = str,
        folder_of: Callable[[str], str] = study_folder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``reports``: where a complete study's report is asked for; ``folder_of(name)``: the
        study folder of an inbox-relative name ("" for none)."""
        self._inbox = inbox
        self._quiet = quiet_seconds
        self._reports = reports
        self._display = display
        self._folder_of = folder_of
        self._clock = clock
        self._open: dict[str, _Open] = {}
        # Empty folders found complete without rows, by their mtime: not looked at again.
        self._left: dict[str, int] = {}
        # Complete studies whose report is being written (how many asked): not taken up again
        # by ``discover`` meanwhile.
        self._reporting: Counter[str] = Counter()
        self._checked_at = 0.0

    @property
    def open(self) -> list[str]:
        return sorted(self._open)

    def noticed(self, names: Iterable[str], processed: bool = False) -> None:
        """Inbox-relative names seen by events or scans, or (``processed``) claimed and
        processed by this daemon. A name events report that is gone (a folder this watch
        removed, a file another daemon claimed: its folder's mtime tells) is no activity."""
        now = self._clock()
        for name in names:
            folder = self._folder_of(name)
            if folder and (processed or os.path.lexists(self._inbox / name)):
                self._open[folder] = _Open(now, True)
                self._left.pop(folder, None)

    def discover(self) -> None:
        """Take up folders at the inbox root not known yet (at start-up and each rescan: a
        study finished before a restart, or one whose folders another daemon left)."""
        try:
            with os.scandir(self._inbox) as entries:
                folders = [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for entry in folders:
            if entry.name in self._open or entry.name in self._reporting:
                continue
            left = self._left.get(entry.name)
            try:
                if left is not None and entry.stat(follow_symlinks=False).st_mtime_ns == left:
                    continue
            except FileNotFoundError:
                continue
            self._open[entry.name] = _Open(self._clock(), False)

    def check(self, busy: Callable[[str], bool]) -> None:
        """Complete the studies that are due (at most every CHECK_SECONDS); ``busy(folder)``:
        this daemon still holds files of that study."""
        self._reports.deliver()
        now = self._clock()
        if now - self._checked_at < CHECK_SECONDS:
            return
        self._checked_at = now
        for folder, study in list(self._open.items()):
            if now - study.active_at < self._quiet or busy(folder):
                continue
            if scan(self._inbox, folder):
                study.active_at = now  # files are still there: they will be noticed
                continue
            changed = self._folders_changed_at(folder)
            if changed is not None and now - changed < self._quiet:
                study.active_at = changed
                continue
            self._finish(folder, study)

    def finish_all(self, busy: Callable[[str], bool]) -> None:
        """Complete every study with no file left and none held, quiet or not (``--once``:
        nothing more will come); ``settle`` waits for their reports."""
        for folder, study in list(self._open.items()):
            if not busy(folder) and not scan(self._inbox, folder):
                self._finish(folder, study)

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the reports asked, and finish the studies whose
        report is written; whether none is left to write."""
        written = self._reports.wait(timeout)
        self._reports.deliver()
        return written

    def _finish(self, folder: str, study: _Open) -> None:
        del self._open[folder]
        self._reporting[folder] += 1
        self._reports.ask(folder, then=functools.partial(self._reported, folder, study))

    def _reported(self, folder: str, study: _Open, has_rows: bool) -> None:
        self._reporting[folder] -= 1
        if not self._reporting[folder]:
            del self._reporting[folder]
        if has_rows or study.saw_files:
            removed = remove_empty_folders(self._inbox, folder)
            log.info("study_complete", study=self._display(folder), folders_removed=removed)
            return
        if folder in self._open:
            return  # re-opened while its report was written: it will be looked at again
        with contextlib.suppress(FileNotFoundError):
            self._left[folder] = os.lstat(self._inbox / folder).st_mtime_ns

    def _folders_changed_at(self, folder: str) -> float | None:
        """The latest mtime of the study's folders (wall clock); None when it is gone."""
        mtimes = [mtime for _, mtime in _folders_in(self._inbox / folder)]
        return max(mtimes) if mtimes else None


def _folders_in(root: Path) -> list[tuple[Path, float]]:
    """``root`` and every folder below it (links never followed), with their mtimes."""
    found: list[tuple[Path, float]] = []
    pending = [root]
    while pending:
        current = pending.pop()
        try:
            mtime = os.lstat(current).st_mtime
            with os.scandir(current) as entries:
                pending += [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        found.append((current, mtime))
    return found


def remove_empty_folders(inbox: Path, folder: str) -> int:
    """Remove ``inbox/folder`` and the folders in it, deepest first, each only if empty;
    how many were removed. A folder that is not empty (a late file) stays, with its parents."""
    removed = 0
    folders = [path for path, _ in _folders_in(inbox / folder)]
    for current in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        try:
            current.rmdir()
        except OSError:
            continue  # gone, not empty (a late file), or not ours to remove: left as it is
        removed += 1
        fsync_dir(current.parent)
    return removed
