from __future__ import annotations

import errno

from structlog.testing import capture_logs

from gicls.daemon.storage import StorageBackoff, is_storage_full


def test_retries_wait_one_second_doubling_to_a_minute_and_reset_on_recovery() -> None:
    backoff = StorageBackoff()
    full = OSError(errno.ENOSPC, "No space left on device", "/srv/journal.jsonl")
    now, waits = 0.0, []
    for _ in range(9):
        backoff.failed(full, now)
        start = now
        while not backoff.due(now):
            now += 0.5
        waits.append(now - start)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    backoff.recovered(now)
    assert not backoff.pending and not backoff.due(now + 1000)
    backoff.failed(full, now)
    assert not backoff.due(now + 0.5) and backoff.due(now + 1)


def test_only_space_quota_and_read_only_errors_count_as_storage_full() -> None:
    assert [
        is_storage_full(OSError(code, "")) for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    ] == [
        True,
        True,
        True,
    ]
    assert not is_storage_full(PermissionError(errno.EACCES, "Permission denied"))


def test_a_recovery_that_wrote_nothing_resumes_claims_but_not_the_episode() -> None:
    """An empty journal compacts even on a full disk: only a completed batch ends the episode."""
    backoff = StorageBackoff()
    full = OSError(errno.ENOSPC, "No space left on device", "/srv/journal.jsonl")
    backoff.failed(full, 0.0)
    assert backoff.pending and backoff.due(1.0)
    backoff.retried()
    assert not backoff.pending  # claiming resumes
    backoff.failed(full, 1.0)  # ... and the first claim fails again: the same episode
    assert not backoff.due(2.5) and backoff.due(3.0)  # waits 2 s, not 1 s again
    with capture_logs() as logs:
        backoff.recovered(3.0)
    assert [entry["event"] for entry in logs] == ["storage_recovered"]
    assert logs[0]["seconds"] == 3.0
