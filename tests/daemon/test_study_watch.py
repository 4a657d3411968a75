"""Study completion on real folders, with a clock the test moves (folder mtimes stay real)."""

from __future__ import annotations

import time
from pathlib import Path

from gicls.daemon.study_watch import StudyWatch, remove_empty_folders


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _idle(folder: str) -> bool:
    return False


def test_a_study_completes_only_when_quiet_not_busy_and_emptied(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "S" / "a").mkdir(parents=True)
    (inbox / "S" / "a" / "x.png").write_bytes(b"x")
    clock, completed = Clock(), []
    watch = StudyWatch(inbox, 10.0, lambda f: completed.append(f) or True, clock=clock)
    watch.noticed(["S/a/x.png", "loose.png"])
    assert watch.open == ["S"]

    clock.now += 11
    watch.check(_idle)
    assert completed == []  # a file is still in the folder
    (inbox / "S" / "a" / "x.png").unlink()  # claimed and processed
    watch.noticed(["S/a/x.png"], processed=True)
    clock.now += 5
    watch.check(_idle)
    assert completed == []  # not quiet long enough
    clock.now += 11
    watch.check(lambda folder: folder == "S")
    assert completed == []  # this daemon still holds one of its files
    clock.now += 1
    watch.check(_idle)

    assert completed == ["S"]
    assert not (inbox / "S").exists() and watch.open == []


def test_names_events_report_after_the_folders_are_gone_do_not_reopen_the_study(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watch = StudyWatch(inbox, 10.0, lambda f: True, clock=Clock())
    watch.noticed(["S/a", "S/a/x.png"])  # deletion events of a removed study
    assert watch.open == []


def test_an_empty_folder_without_rows_is_left_alone_and_not_looked_at_again(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "new").mkdir(parents=True)
    (tmp_path / "inbox" / "file.png").write_bytes(b"loose")
    clock, asked = Clock(), []
    watch = StudyWatch(inbox, 10.0, lambda f: asked.append(f) and False, clock=clock)
    for _ in range(3):
        watch.discover()
        clock.now += 11
        watch.check(_idle)
    assert asked == ["new"]
    assert (inbox / "new").is_dir()


def test_emptied_folders_are_removed_deepest_first_and_a_late_file_keeps_its_own(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    for folder in ("S/a/b", "S/c", "S/late/d"):
        (inbox / folder).mkdir(parents=True)
    (inbox / "S" / "late" / "new.png").write_bytes(b"late")

    assert remove_empty_folders(inbox, "S") == 4  # a/b, a, c, late/d

    assert sorted(p.relative_to(inbox).as_posix() for p in inbox.rglob("*")) == [
        "S",
        "S/late",
        "S/late/new.png",
    ]
