"""The seen-index snapshot: a start reads only the log's tail, and never trusts a stale one."""

from __future__ import annotations

import os
from pathlib import Path

from gicls.daemon.audit_writer import AuditWriter
from gicls.daemon.seen_store import SNAPSHOT_NAME, SeenStore
from tests.daemon import harness
from tests.daemon.harness import CLASSES


def _row(n: int, batch: str = "b0") -> dict[str, str]:
    return {
        "status": "classified",
        "file_name": f"f{n}.png",
        "sha256": harness.sha256(f"file {n}".encode()),
        "batch_id": batch,
        "destination": f"Normal/f{n}.png",
    }


def _append(log: Path, numbers: range, batch: str = "b0") -> None:
    writer = AuditWriter(log, CLASSES)  # a writer of its own: another daemon, as far as it goes
    try:
        with writer.batch():
            for n in numbers:
                writer.append(_row(n, batch))
    finally:
        writer.close()


def _saved_store(tmp_path: Path, rows: range) -> tuple[Path, Path]:
    log, snapshot = tmp_path / "audit_log.csv", tmp_path / SNAPSHOT_NAME
    _append(log, rows)
    store = SeenStore(log, snapshot)
    store.find_logged({})
    store.quiet(save=True)
    return log, snapshot


def _known(store: SeenStore, n: int) -> str | None:
    return store.index.lookup(harness.sha256(f"file {n}".encode()))


def test_a_replaced_log_is_read_again_not_trusted_from_the_snapshot(tmp_path: Path) -> None:
    log, snapshot = _saved_store(tmp_path, range(5))
    replacement = tmp_path / "new.csv"
    _append(replacement, range(100, 103))
    os.replace(replacement, log)
    store = SeenStore(log, snapshot)
    store.find_logged({})
    assert _known(store, 0) is None and _known(store, 101) == "Normal/f101.png"


def test_a_log_rewritten_in_place_past_its_old_size_is_read_again(tmp_path: Path) -> None:
    log, snapshot = _saved_store(tmp_path, range(3))
    inode = log.stat().st_ino
    log.write_bytes(b"")  # same inode, truncated, then longer than before
    _append(log, range(200, 210))
    assert log.stat().st_ino == inode
    store = SeenStore(log, snapshot)
    store.find_logged({})
    assert _known(store, 1) is None and _known(store, 205) == "Normal/f205.png"


def test_a_damaged_snapshot_is_ignored_and_the_whole_log_read(tmp_path: Path) -> None:
    log, snapshot = _saved_store(tmp_path, range(4))
    data = bytearray(snapshot.read_bytes())
    data[-3] ^= 0xFF  # inside the references
    snapshot.write_bytes(bytes(data))
    store = SeenStore(log, snapshot)
    store.find_logged({})
    assert [_known(store, n) for n in range(4)] == [f"Normal/f{n}.png" for n in range(4)]


def test_a_row_of_an_open_entry_is_found_again_when_recovery_is_retried(tmp_path: Path) -> None:
    log, snapshot = _saved_store(tmp_path, range(2))
    store = SeenStore(log, snapshot)
    store.find_logged({})
    store.quiet()
    _append(log, range(7, 8), batch="failed")  # the batch that failed after writing its row
    row = _row(7, "failed")
    wanted = {(row["sha256"], row["destination"], "", "failed"): "entry7"}
    assert store.find_logged(wanted) == {"entry7"}
    assert store.find_logged(wanted) == {"entry7"}  # recovery failed too, and is retried


def test_a_start_reads_only_the_rows_appended_since_the_last_stop(
    tmp_path: Path, make_bundle
) -> None:
    """Rows another daemon appended after this one stopped are read; the rest come from the
    snapshot, duplicates of both are recognised."""
    site = harness.write_config(tmp_path, make_bundle(), stability_seconds=0.1)
    old, other = harness.png(1), harness.png(2)
    writer = AuditWriter(site.audit_log, CLASSES)
    with writer.batch():
        for n in range(300):
            writer.append(_row(n))
        writer.append({**_row(300), "sha256": harness.sha256(old), "destination": "Normal/x.png"})
    writer.close()
    assert harness.run_once(site.config, log_name="first.log") == 0
    writer = AuditWriter(site.audit_log, CLASSES)
    with writer.batch():
        writer.append({**_row(301), "sha256": harness.sha256(other), "destination": "Polyp/y.png"})
    writer.close()
    (site.inbox / "old.png").write_bytes(old)
    (site.inbox / "other.png").write_bytes(other)
    second = harness.DaemonProcess(site.config, "--once", log_name="second.log")
    assert second.wait() == 0
    (read,) = [event for event in second.events() if event["event"] == "audit_log_read"]
    assert read["rows"] == 1
    rows = {row["file_name"]: row for row in harness.read_audit(site.audit_log)}
    assert rows["old.png"]["duplicate_of"] == "Normal/x.png"
    assert rows["other.png"]["duplicate_of"] == "Polyp/y.png"
