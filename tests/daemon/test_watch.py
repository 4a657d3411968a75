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
    sibling.mkdir()
    (inbox / "sub").mkdir()
    watcher = InboxWatcher(inbox, kind)  # type: ignore[arg-type]
    watcher.start()
    try:
        assert watcher.alive()
        (inbox / "new.jpg").write_bytes(b"1")
        (sibling / "moved.jpg").write_bytes(b"2")
        os.rename(sibling / "moved.jpg", inbox / "moved.jpg")
        (inbox / "sub" / "deep.jpg").write_bytes(b"3")  # not watched: inbox only
        seen: set[str] = set()

        def both_seen() -> bool:
            seen.update(watcher.drain())
            return {"new.jpg", "moved.jpg"} <= seen

        wait_until(both_seen, 10, "events for new.jpg and moved.jpg")
        assert "deep.jpg" not in seen
    finally:
        watcher.stop()
    assert not watcher.alive()
    assert sorted(scan(inbox)) == ["moved.jpg", "new.jpg", "sub"]
