"""Storage full (RELIABILITY.md item 14) on a real, small file system.

Inbox, state, output and the audit log live on a 4 MiB tmpfs. A real daemon runs while the test
fills the file system, so the journal, audit and link writes start failing mid-run; then the
filler is removed. The daemon must say ``storage_full`` once, keep retrying without claiming,
resume by itself, and leave every file in one place with one row.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import harness
from tests.daemon.harness import DaemonProcess, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 4 MiB tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def fill(folder: Path) -> Path:
    """Write a file until the file system refuses even one more page."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def drop(inbox: Path, prefix: str, count: int) -> Counter[tuple[bytes, str]]:
    dropped: Counter[tuple[bytes, str]] = Counter()
    for n in range(count):
        data = harness.png(hash((prefix, n)) % 10_000, size=32)
        name = f"{prefix}_{n:03d}.png"
        (inbox / name).write_bytes(data)
        dropped[(name.encode(), harness.sha256(data))] += 1
    return dropped


def test_a_full_disk_stops_claiming_logs_once_and_resumes_losing_nothing(
    tmp_path: Path, small_fs: Path, make_bundle
) -> None:
    folders = {
        "inbox": small_fs / "inbox",
        "output_dir": small_fs / "output",
        "state_dir": small_fs / "state",
        "audit_log": small_fs / "audit_log.csv",
    }
    config = harness.write_config(
        tmp_path, make_bundle(), stability_seconds=0.2, max_batch=8, **folders
    ).config
    site = harness.Site(small_fs, config)  # the daemon's folders, for the invariant
    site.inbox.mkdir()
    daemon = DaemonProcess(config, log_name="daemon.log")
    try:
        daemon.wait_ready()
        dropped = drop(site.inbox, "before", 10)
        wait_until(lambda: harness.row_count(site.audit_log) == 10, 60, "the first 10 rows")
        dropped += drop(site.inbox, "during", 30)
        filler = fill(small_fs)
        wait_until(lambda: daemon.logged("storage_full"), 60, "storage_full")
        wait_until(lambda: daemon.logged("storage_still_full"), 30, "a retry that failed")
        assert daemon.process.poll() is None, daemon.output()
        filler.unlink()
        wait_until(lambda: harness.row_count(site.audit_log) == 40, 90, "all 40 rows")
        wait_until(lambda: daemon.logged("storage_recovered"), 30, "storage_recovered")
    finally:
        daemon.stop()
    assert daemon.process.returncode == 0, daemon.output()

    events = [event["event"] for event in daemon.events()]
    assert events.count("storage_full") == 1
    harness.assert_invariant(site, dropped)
    verify = subprocess.run(
        [str(Path(sys.executable).parent / "gicls-audit"), "verify", "-c", str(config)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
