"""Study reports written on a thread of their own, so that writing one never pauses intake.

A study's report reads its rows from the whole audit log: on a log of 500,000 rows that takes
13-23 s, and while the loop wrote it, it claimed and scored nothing. Reports now run on one
``study-report`` thread, one at a time in the order asked (two reports of one study never
race, and the second holds every row the first did). What is to follow a report (the study's
emptied folders removed) runs on the loop's thread, in ``deliver``: the loop's bookkeeping is
never touched from two threads. The audit log is read as any reader reads it while a daemon
appends: whole lines only.
"""

from __future__ import annotations

import concurrent.futures
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

THREAD_NAME = "study-report"


class BackgroundReports:
    def __init__(self, write: Callable[[str], bool]) -> None:
        """``write(study folder)``: write that study's report, True if the log has rows of it
        (study_reports.py); it logs its own failures and never raises."""
        self._write = write
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        self._asked: deque[tuple[Future[bool], Callable[[bool], None] | None]] = deque()

    def ask(self, folder: str, then: Callable[[bool], None] | None = None) -> None:
        """Queue the report of the study in inbox folder ``folder``; once it is written,
        ``deliver`` calls ``then`` with whether the log has rows of it."""
        self._asked.append((self._executor.submit(self._write, folder), then))

    def deliver(self) -> None:
        """Call the ``then`` of every report written since the last call, in the order asked."""
        while self._asked and self._asked[0][0].done():
            written, then = self._asked.popleft()
            if then is not None:
                then(written.result())

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every report asked; whether all are written."""
        _, not_done = concurrent.futures.wait([asked for asked, _ in self._asked], timeout)
        return not not_done

    def close(self) -> None:
        """Finish the reports asked (none is dropped by a stop), then end the thread."""
        self._executor.shutdown(wait=True)
