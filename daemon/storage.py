"""Storage full: stop claiming, say so once, retry with back-off, resume by itself.

ENOSPC, EDQUOT and EROFS on the journal, the audit log, the work folder or the output tree are
not a fault of one file: every file would fail the same way. The loop keeps going round
(watchdog pings mean "the loop is alive", so the back-off must not block it); it only stops
claiming until the retry time, then finishes the interrupted batch by the same idempotent
recovery start-up uses. ``storage_full`` is logged once per episode, ``storage_recovered``
when a write succeeds again. A recovery that succeeds proves little (with no file in flight
it writes nothing: an empty journal compacts on a full disk), so it only lets claiming resume;
the episode ends with the first batch that completes, and a claim that fails again meanwhile
continues the back-off where it was.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable

from gicls.daemon.notify import Notifier
from gicls.logs import get_logger

log = get_logger(__name__)

STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
FIRST_RETRY_SECONDS = 1.0
LONGEST_RETRY_SECONDS = 60.0


def is_storage_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


class StorageBackoff:
    """Loop state: whether a recovery is pending and when to try it (monotonic seconds)."""

    def __init__(
        self, first: float = FIRST_RETRY_SECONDS, longest: float = LONGEST_RETRY_SECONDS
    ) -> None:
        self._first = first
        self._longest = longest
        self._delay = 0.0
        self._since: float | None = None  # when the episode began; None: storage is fine
        self._retry_at = 0.0
        self._waiting = False  # a retry is scheduled: claim nothing until it went through

    @property
    def pending(self) -> bool:
        return self._waiting

    def due(self, now: float) -> bool:
        return self._waiting and now >= self._retry_at

    def failed(self, exc: OSError, now: float) -> None:
        """A write failed for lack of space: wait 1 s, then twice as long each time, to 60 s."""
        if self._since is None:
            self._since = now
            self._delay = self._first
            log.error(
                "storage_full",
                path=exc.filename,
                error=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                message=exc.strerror,
                retry_seconds=self._delay,
            )
        else:
            self._delay = min(self._longest, self._delay * 2)
            log.debug("storage_still_full", path=exc.filename, retry_seconds=self._delay)
        self._retry_at = now + self._delay
        self._waiting = True

    def retried(self) -> None:
        """Recovery went through without writing anything (nothing was open): claiming may
        resume, but only a write that succeeds ends the episode (``recovered``), so a disk
        still full is not logged as full again."""
        self._waiting = False

    def recovered(self, now: float) -> None:
        """Writes succeed again (a batch or a recovery that wrote went through)."""
        if self._since is not None:
            log.info("storage_recovered", seconds=round(now - self._since, 3))
        self._since = None
        self._waiting = False


def wait_for_retry(
    backoff: StorageBackoff,
    notifier: Notifier,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Before READY (start-up recovery): wait until the retry is due, pinging the watchdog and
    extending systemd's start timeout meanwhile; False if ``stop`` was set first.

    The running loop keeps going round instead (it has inbox events to drain); before READY
    there is nothing else to do.
    """
    while not backoff.due(clock()):
        interval = notifier.watchdog_interval
        notifier.watchdog()
        # As long as the daemon keeps retrying, systemd must not time the start out.
        notifier.extend_start(2 * LONGEST_RETRY_SECONDS)
        if stop.wait(0.5 if interval is None else min(0.5, interval / 2)):
            return False
    return True
