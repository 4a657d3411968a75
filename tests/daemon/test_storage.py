from __future__ import annotations

import errno

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
