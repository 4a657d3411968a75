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
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gicls.daemon.journal import Entry, Journal
from tests.daemon import harness
from tests.daemon.harness import DaemonProcess, NotifyListener, wait_until

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


def test_a_disk_full_before_start_up_recovery_is_waited_out_not_a_failed_start(
    tmp_path: Path, small_fs: Path, make_bundle
) -> None:
    """A file left claimed by a crash, the disk filled before the daemon starts: recovery
    backs off (storage_full, STATUS, watchdog pings, no READY, no exit), then finishes it."""
    folders = {
        "inbox": small_fs / "inbox",
        "output_dir": small_fs / "output",
        "state_dir": small_fs / "state",
        "audit_log": small_fs / "audit_log.csv",
    }
    config = harness.write_config(tmp_path, make_bundle(), stability_seconds=0.2, **folders).config
    site = harness.Site(small_fs, config)
    site.inbox.mkdir()
    assert harness.run_once(config) == 0  # folders, log header, journal: as a daemon leaves them
    data = harness.png(7, size=32)
    (site.work / ("c" * 32)).write_bytes(data)
    journal = Journal(site.work.parent / "journal.jsonl")
    journal.claim(Entry("c" * 32, "crashed.png", time.time()))
    journal.sync()
    journal.close()
    filler = fill(small_fs)
    listener = NotifyListener()
    env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "400000"}
    daemon = DaemonProcess(config, env=env, log_name="daemon.log")
    try:

        def full() -> bool:
            assert daemon.process.poll() is None, daemon.output()
            return daemon.logged("storage_still_full")

        wait_until(full, 90, "start-up recovery retrying on a full disk")
        pings = listener.lifecycle().count("WATCHDOG=1")
        wait_until(lambda: listener.lifecycle().count("WATCHDOG=1") > pings, 10, "more pings")
        assert "READY=1" not in listener.lifecycle()
        assert any("retrying start-up recovery" in message for message in listener.messages)
        filler.unlink()
        daemon.wait_ready()
        wait_until(lambda: "READY=1" in listener.lifecycle(), 10, "READY=1")
    finally:
        daemon.stop()
        listener.close()
    assert daemon.process.returncode == 0, daemon.output()
    events = [event["event"] for event in daemon.events()]
    assert events.count("storage_full") == 1 and "storage_recovered" in events
    harness.assert_invariant(site, Counter({(b"crashed.png", harness.sha256(data)): 1}))
