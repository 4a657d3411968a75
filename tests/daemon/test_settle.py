from __future__ import annotations

import os
from pathlib import Path

from gicls.daemon.settle import REFUSED_RETRY_SECONDS, Settled, SettleTracker, empty_timeout


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker(folder: Path, clock: Clock, stability: float = 1.0) -> SettleTracker:
    return SettleTracker(folder, stability, empty_timeout(stability), (".*", "*.part"), clock=clock)


def test_a_file_settles_after_being_unchanged_for_the_stability_time(tmp_path: Path) -> None:
    clock = Clock()
    settle = tracker(tmp_path, clock)
    (tmp_path / "a.jpg").write_bytes(b"abc")
    settle.observe(["a.jpg"])
    assert settle.poll() == []
    clock.now += 0.9
    assert settle.poll() == []
    clock.now += 0.1
    [ready] = settle.poll()
    assert (ready.name, ready.signature.size) == ("a.jpg", 3)
    assert len(settle) == 0


def test_a_growing_file_restarts_the_wait(tmp_path: Path) -> None:
    clock = Clock()
    settle = tracker(tmp_path, clock)
    path = tmp_path / "a.jpg"
    path.write_bytes(b"abc")
    settle.observe(["a.jpg"])
    settle.poll()
    clock.now += 0.8
    with path.open("ab") as handle:  # a writer that closed, reopened and appended
        handle.write(b"def")
    assert settle.poll() == []
    clock.now += 0.8
    assert settle.poll() == []
    clock.now += 0.2
    assert [item.signature.size for item in settle.poll()] == [6]


def test_an_empty_file_waits_for_the_empty_timeout(tmp_path: Path) -> None:
    clock = Clock()
    settle = tracker(tmp_path, clock)
    (tmp_path / "placeholder.jpg").touch()
    settle.observe(["placeholder.jpg"])
    settle.poll()
    clock.now += 5.0
    assert settle.poll() == []
    clock.now += empty_timeout(1.0)
    assert [item.name for item in settle.poll()] == ["placeholder.jpg"]


def test_ignored_names_folders_and_vanished_files_are_never_handed_over(tmp_path: Path) -> None:
    clock = Clock()
    settle = tracker(tmp_path, clock)
    for name in (".x.jpg.AbC123", "download.part", "gone.jpg"):
        (tmp_path / name).write_bytes(b"1")
    (tmp_path / "folder.jpg").mkdir()
    settle.observe([".x.jpg.AbC123", "download.part", "gone.jpg", "folder.jpg"])
    assert len(settle) == 2
    settle.poll()
    (tmp_path / "gone.jpg").unlink()
    clock.now += 2
    assert settle.poll() == []
    assert len(settle) == 0


def test_a_symlink_is_judged_by_the_link_itself(tmp_path: Path) -> None:
    clock = Clock()
    settle = tracker(tmp_path, clock)
    target = tmp_path / ".target"
    target.write_bytes(b"1")
    os.symlink(target, tmp_path / "link.jpg")
    settle.observe(["link.jpg"])
    settle.poll()
    target.write_bytes(b"changed")  # the target changing does not matter
    clock.now += 1
    [ready] = settle.poll()
    assert ready.name == "link.jpg"


def test_a_handed_over_name_is_not_tracked_again_until_released(tmp_path: Path) -> None:
    clock = Clock()
    settle = tracker(tmp_path, clock, stability=0.0)
    (tmp_path / "a.jpg").write_bytes(b"1")
    settle.observe(["a.jpg"])
    settle.poll()
    assert [item.name for item in settle.poll()] == ["a.jpg"]
    settle.observe(["a.jpg"])  # the echo of our own rename
    assert len(settle) == 0
    settle.release("a.jpg")
    settle.observe(["a.jpg"])  # a new file dropped under the same name
    assert len(settle) == 1


def _settled_after_rescan(settle: SettleTracker, clock: Clock, name: str) -> list[Settled]:
    """What a rescan and a full stability period later hands over (and is then released)."""
    settle.observe([name])
    settle.poll()
    clock.now += 1.0
    settled = settle.poll()
    for item in settled:
        settle.release(item.name)
    return settled


def test_a_refused_file_is_left_alone_until_it_changes_or_the_retry_time(tmp_path: Path) -> None:
    clock = Clock()
    settle = tracker(tmp_path, clock)
    (tmp_path / "theirs.jpg").write_bytes(b"abc")
    [item] = _settled_after_rescan(settle, clock, "theirs.jpg")
    settle.refuse(item, "EPERM")
    assert _settled_after_rescan(settle, clock, "theirs.jpg") == []
    clock.now += REFUSED_RETRY_SECONDS
    [again] = _settled_after_rescan(settle, clock, "theirs.jpg")
    settle.refuse(again, "EPERM")
    assert _settled_after_rescan(settle, clock, "theirs.jpg") == []
    (tmp_path / "theirs.jpg").write_bytes(b"abcd")  # changed: tried again at once
    assert [item.name for item in _settled_after_rescan(settle, clock, "theirs.jpg")] == [
        "theirs.jpg"
    ]
