"""Life cycle against real processes: systemd notify protocol and SIGTERM mid-batch, two daemons
sharing one inbox, and events lost while the daemon was stopped."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from gicls.daemon.journal import replay
from tests.daemon import harness
from tests.daemon.harness import DaemonProcess, NotifyListener, wait_until

pytestmark = pytest.mark.slow


def _drop(inbox: Path, prefix: str, count: int, seed: int = 0) -> Counter[tuple[bytes, str]]:
    dropped: Counter[tuple[bytes, str]] = Counter()
    for n in range(count):
        data = harness.png(seed + n, size=24)
        name = f"{prefix}_{n:05d}.png"
        (inbox / name).write_bytes(data)
        dropped[(os.fsencode(name), harness.sha256(data))] += 1
    return dropped


def test_sigterm_mid_batch_exits_0_loses_nothing_and_notifies_in_order(
    tmp_path: Path, make_bundle
) -> None:
    site = harness.write_config(tmp_path, make_bundle(), stability_seconds=0.2, max_batch=4)
    listener = NotifyListener()
    env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"}
    try:
        daemon = DaemonProcess(site.config, env=env, log_name="daemon.log")
        daemon.wait_ready()
        wait_until(lambda: "WATCHDOG=1" in listener.lifecycle(), 10, "a watchdog ping")
        dropped = _drop(site.inbox, "term", 200)
        wait_until(lambda: daemon.logged("batch_done"), 30, "the first batch")
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, daemon.output()
    finally:
        listener.close()

    sequence = listener.lifecycle()
    assert sequence[0] == "READY=1" and sequence[-1] == "STOPPING=1", sequence
    assert set(sequence[1:-1]) == {"WATCHDOG=1"}, sequence
    assert listener.messages[0].startswith("STATUS=")  # status lines while starting up
    processed = harness.row_count(site.audit_log)
    assert 0 < processed < 200, "SIGTERM should have stopped the daemon part-way"
    assert not list(site.work.iterdir()), "a claimed file was left in the work folder"
    assert replay(site.root / "state" / "journal.jsonl") == []
    remaining = len(os.listdir(site.inbox))
    assert processed + remaining == 200

    assert harness.run_once(site.config, log_name="finish.log") == 0
    harness.assert_invariant(site, dropped)


def test_two_daemons_sharing_an_inbox_process_each_file_once(tmp_path: Path, make_bundle) -> None:
    first, configs = harness.shared_inbox_configs(tmp_path, make_bundle(), max_batch=8)
    daemons = [DaemonProcess(config, log_name=f"{config.name}.log") for config in configs]
    try:
        for daemon in daemons:
            daemon.wait_ready()
        # Which daemon wins a file is a race; drop in rounds until both have won some, so the
        # test always exercises two claimers (a single daemon would pass the invariant alone).
        dropped: Counter[tuple[bytes, str]] = Counter()
        for round_number in range(12):
            dropped += _drop(first.inbox, f"shared{round_number}", 40, seed=round_number * 40)
            total = sum(dropped.values())
            wait_until(
                lambda total=total: harness.row_count(first.audit_log) >= total,
                90,
                f"{total} rows",
            )
            if round_number >= 2 and all(daemon.logged("batch_done") for daemon in daemons):
                break
    finally:
        for daemon in daemons:
            daemon.stop()
    assert [daemon.process.returncode for daemon in daemons] == [0, 0]
    harness.assert_invariant(first, dropped)
    assert not list((tmp_path / "state-b" / "work").iterdir())
    assert all(daemon.logged("batch_done") for daemon in daemons), "only one daemon worked"


def test_events_lost_while_stopped_are_recovered_by_the_rescan(tmp_path: Path, make_bundle) -> None:
    """More files than the inotify queue holds are created while the daemon is SIGSTOPped, so
    the kernel drops events (IN_Q_OVERFLOW); the periodic rescan must find every file."""
    queue_limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queue_limit > 40_000:
        pytest.skip(f"max_queued_events is {queue_limit}; too many files to create in a test")
    count = queue_limit + 200
    site = harness.write_config(
        tmp_path, make_bundle(), stability_seconds=0.3, max_batch=256, rescan_seconds=2.0
    )
    daemon = DaemonProcess(site.config, env={"GICLS_LOG_LEVEL": "INFO"}, log_name="daemon.log")
    try:
        daemon.wait_ready()
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            dropped = _drop(site.inbox, "flood", count)
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        wait_until(lambda: harness.row_count(site.audit_log) >= count, 240, f"{count} rows")
    finally:
        daemon.stop()
    assert daemon.process.returncode == 0, daemon.output()
    # watchdog logs the overflow it otherwise swallows: proof the events really were lost.
    assert "overflow" in daemon.log_path.read_text(errors="replace").lower()
    harness.assert_invariant(site, dropped)
