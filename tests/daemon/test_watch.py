from __future__ import annotations

import os
from pathlib import Path

import pytest

from gicls.daemon.watch import InboxWatcher, scan
from tests.daemon.harness import wait_until


@pytest.mark.parametrize("kind", ["inotify", "polling"])
def test_created_and_moved_in_files_are_reported_once_each(tmp_path: Path, kind: str) -> None:
    inbox, sibling = tmp_path / "inbox", tmp_path / "sibling"
    inbox.mkdir()
    (sibling / "study2" / "deeper").mkdir(parents=True)
    (inbox / "sub").mkdir()
    (inbox / "linked").symlink_to(sibling)  # a link to a folder is never descended into
    watcher = InboxWatcher(inbox, kind)  # type: ignore[arg-type]
    watcher.start()
    try:
        assert watcher.alive()
        (inbox / "new.jpg").write_bytes(b"1")
        (sibling / "moved.jpg").write_bytes(b"2")
        os.rename(sibling / "moved.jpg", inbox / "moved.jpg")
        (inbox / "sub" / "deep.jpg").write_bytes(b"3")  # a study folder's file
        (sibling / "study2" / "deeper" / "f.jpg").write_bytes(b"4")
        os.rename(sibling / "study2", inbox / "study2")  # a whole study moved in
        seen: set[str] = set()

        def all_seen() -> bool:
            seen.update(watcher.drain())
            return {"new.jpg", "moved.jpg", "sub/deep.jpg", "study2"} <= seen

        wait_until(all_seen, 10, "events for the files and the moved-in study")
    finally:
        watcher.stop()
    assert not watcher.alive()
    assert sorted(scan(inbox)) == [
        "linked",
        "moved.jpg",
        "new.jpg",
        "study2/deeper/f.jpg",
        "sub/deep.jpg",
    ]
    assert scan(inbox, "study2") == ["study2/deeper/f.jpg"]
