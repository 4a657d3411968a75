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
        self._recovery_due = False  # claims wait until the interrupted work is recovered
        self._retry_at = 0.0

    @property
    def pending(self) -> bool:
        """Whether claiming is held back until a recovery has run."""
        return self._recovery_due

    def due(self, now: float) -> bool:
        return self._recovery_due and now >= self._retry_at

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
        self._recovery_due = True

    def retried(self) -> None:
        """Recovery ran without a storage error: claiming may resume (the episode goes on)."""
        self._recovery_due = False

    def recovered(self, now: float) -> None:
        """A batch completed: its writes went through, the episode (if any) is over."""
        if self._since is not None:
            log.info("storage_recovered", seconds=round(now - self._since, 3))
        self._since = None
        self._recovery_due = False
