"""The service loop in a thread of the test process, stopped through its stop event."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gicls.config import load_config
from gicls.daemon import service
from gicls.daemon.cli import app
from gicls.daemon.journal import Entry, Journal
from gicls.daemon.lock import StateLock
from gicls.daemon.notify import Notifier
from gicls.errors import DaemonError
from tests.daemon import harness
from tests.daemon.harness import NotifyListener, wait_until


class ServiceThread:
    def __init__(self, config: Path) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(config,))
        self._thread.start()

    def _run(self, config: Path) -> None:
        try:
            service.run(load_config(config), self.stop, self.reload, notifier=Notifier(None))
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error


def test_review_threshold_duplicates_and_same_names(tmp_path: Path, make_bundle) -> None:
    site = harness.write_config(
        tmp_path,
        make_bundle(),
        review_threshold=1.0,
        on_duplicate="skip",
        stability_seconds=0.1,
    )
    running = ServiceThread(site.config)
    dropped: Counter[tuple[bytes, str]] = Counter()
    try:
        for n, (name, data) in enumerate(
            [
                ("scan.jpg", harness.jpeg(1)),
                ("scan.jpg", harness.jpeg(2)),  # a different file, the same name
                ("again.jpg", harness.jpeg(1)),  # the same bytes, another name
            ]
        ):
            (site.inbox / name).write_bytes(data)
            dropped[(name.encode(), harness.sha256(data))] += 1
            wait_until(lambda n=n: harness.row_count(site.audit_log) > n, 30, f"row {n + 1}")
        running.reload.set()  # SIGHUP with an unchanged bundle: nothing to do, still serving
        (site.inbox / "late.png").write_bytes(harness.png(3))
        dropped[(b"late.png", harness.sha256(harness.png(3)))] += 1
        wait_until(lambda: harness.row_count(site.audit_log) == 4, 30, "row 4")
    finally:
        running.finish()

    rows = harness.assert_invariant(site, dropped)
    statuses = [row["status"] for row in rows]
    assert statuses == ["review", "review", "duplicate", "review"]  # no score reaches 1.0
    assert rows[0]["destination"] == "_review/scan.jpg"
    assert rows[1]["destination"].startswith("_review/scan-")  # both scan.jpg survive
    assert len(os.listdir(site.output / "_review")) == 3
    assert rows[2]["duplicate_of"] == "_review/scan.jpg"
    assert rows[2]["destination"] == "_duplicates/again.jpg" and rows[2]["Bleeding"] == ""
    assert all(int(row["latency_ms"]) >= 0 for row in rows)


def test_check_says_what_run_would_do_and_fails_plainly(tmp_path: Path, make_bundle) -> None:
    site = harness.write_config(tmp_path, make_bundle(), review_threshold=0.5)
    runner = CliRunner()

    result = runner.invoke(app, ["check", "-c", str(site.config)])
    assert result.exit_code == 0, result.output
    assert "hashes verified" in result.output and "_review/" in result.output
    assert "will be created" in result.output and not site.output.exists()

    broken = harness.write_config(tmp_path / "other", tmp_path / "no-bundle-here")
    result = runner.invoke(app, ["check", "-c", str(broken.config)])
    assert result.exit_code == 1 and "no model bundle" in result.output

    site.config.write_text(site.config.read_text() + "max_batchh = 3\n")
    result = runner.invoke(app, ["check", "-c", str(site.config)])
    assert result.exit_code == 2 and "max_batchh" in result.output


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_missing_config_is_exit_2(tmp_path: Path, command: str) -> None:
    result = CliRunner().invoke(app, [command, "-c", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_recovery_poisons_a_file_after_three_crashes_and_retries_the_others(
    tmp_path: Path, make_bundle
) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    site.work.mkdir(parents=True)
    journal = Journal(site.root / "state" / "journal.jsonl")
    dropped: Counter[tuple[bytes, str]] = Counter()
    for entry_id, name, crashes in (("a" * 32, "killer.png", 3), ("b" * 32, "bystander.png", 1)):
        data = harness.png(len(name))
        (site.work / entry_id).write_bytes(data)
        journal.claim(Entry(entry_id, name, time.time(), attempt=crashes))
        dropped[(name.encode(), harness.sha256(data))] += 1
    journal.sync()
    journal.close()

    config = load_config(site.config)
    service.run(config, threading.Event(), threading.Event(), once=True, notifier=Notifier(None))

    rows = {row["file_name"]: row for row in harness.assert_invariant(site, dropped)}
    assert rows["killer.png"]["destination"] == "_quarantine/poison/killer.png"
    assert rows["killer.png"]["reason"] == "poison"
    # Never read again (reading may be what crashed it): its size from lstat, no sha256.
    assert rows["killer.png"]["sha256"] == ""
    assert rows["killer.png"]["bytes"] == str(len(harness.png(len("killer.png"))))
    assert rows["bystander.png"]["status"] == "classified"


def test_build_daemon_recovers_and_scans_without_ready_and_close_releases_it(
    tmp_path: Path, make_bundle
) -> None:
    """Building is everything before READY: recovery has run, the inbox is tracked, the lock
    is held and nothing is announced yet; closing stops the observer and frees the lock."""
    site = harness.write_config(tmp_path, make_bundle())
    site.work.mkdir(parents=True)
    journal = Journal(site.root / "state" / "journal.jsonl")
    left_over = harness.png(1)
    (site.work / ("c" * 32)).write_bytes(left_over)
    journal.claim(Entry("c" * 32, "left.png", time.time()))
    journal.sync()
    journal.close()
    (site.inbox / "waiting.png").write_bytes(harness.png(2))
    listener = NotifyListener()
    try:
        daemon = service.build_daemon(
            load_config(site.config),
            threading.Event(),
            threading.Event(),
            notifier=Notifier(listener.address),
        )
        try:
            assert daemon.recovered == 1 and harness.row_count(site.audit_log) == 1
            assert len(daemon.tracker) == 1  # waiting.png, seen by the start-up scan
            assert daemon.watcher is not None and daemon.watcher.alive()
            with pytest.raises(DaemonError, match="another gicls-daemon"):
                StateLock(site.root / "state").acquire()
            wait_until(lambda: len(listener.messages) >= 2, 10, "the start-up STATUS lines")
            assert not [line for line in listener.lifecycle() if line == "READY=1"]
        finally:
            daemon.close()
    finally:
        listener.close()
    assert not daemon.watcher.alive()
    lock = StateLock(site.root / "state")
    lock.acquire()
    lock.release()
    assert (site.inbox / "waiting.png").exists()  # built, never run: nothing else moved
