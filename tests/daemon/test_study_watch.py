"""Study completion on real folders, with a clock the test moves (folder mtimes stay real)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gicls.daemon.background_reports import BackgroundReports
from gicls.daemon.study_watch import StudyWatch, remove_empty_folders


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _idle(folder: str) -> bool:
    return False


@pytest.fixture
def reports_of() -> Iterator[Callable[[Callable[[str], bool]], BackgroundReports]]:
    """Real report threads around the test's ``write``, each closed after the test."""
    made: list[BackgroundReports] = []

    def make(write: Callable[[str], bool]) -> BackgroundReports:
        made.append(BackgroundReports(write))
        return made[-1]

    yield make
    for reports in made:
        reports.close()


def test_a_study_completes_only_when_quiet_not_busy_and_emptied(
    tmp_path: Path, reports_of: Callable[[Callable[[str], bool]], BackgroundReports]
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "S" / "a").mkdir(parents=True)
    (inbox / "S" / "a" / "x.png").write_bytes(b"x")
    clock, completed = Clock(), []
    watch = StudyWatch(inbox, 10.0, reports_of(lambda f: completed.append(f) or True), clock=clock)
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
    assert watch.settle(10.0)

    assert completed == ["S"]
    assert not (inbox / "S").exists() and watch.open == []


def test_names_events_report_after_the_folders_are_gone_do_not_reopen_the_study(
    tmp_path: Path, reports_of: Callable[[Callable[[str], bool]], BackgroundReports]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watch = StudyWatch(inbox, 10.0, reports_of(lambda f: True), clock=Clock())
    watch.noticed(["S/a", "S/a/x.png"])  # deletion events of a removed study
    assert watch.open == []


def test_an_empty_folder_without_rows_is_left_alone_and_not_looked_at_again(
    tmp_path: Path, reports_of: Callable[[Callable[[str], bool]], BackgroundReports]
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "new").mkdir(parents=True)
    (tmp_path / "inbox" / "file.png").write_bytes(b"loose")
    clock, asked = Clock(), []
    watch = StudyWatch(inbox, 10.0, reports_of(lambda f: asked.append(f) and False), clock=clock)
    for _ in range(3):
        watch.discover()  # once before its report is delivered: not asked twice
        clock.now += 11
        watch.check(_idle)
    assert watch.settle(10.0)
    watch.discover()
    clock.now += 11
    watch.check(_idle)
    assert watch.settle(10.0)
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


def test_a_report_being_written_holds_up_nothing_and_a_late_file_reopens_its_study(
    tmp_path: Path, reports_of: Callable[[Callable[[str], bool]], BackgroundReports]
) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "S" / "a").mkdir(parents=True)
    clock, writing, release, written = Clock(), threading.Event(), threading.Event(), []

    def slow_write(folder: str) -> bool:
        writing.set()
        assert release.wait(30.0), "the test never let the report finish"
        written.append(folder)
        return True

    watch = StudyWatch(inbox, 10.0, reports_of(slow_write), clock=clock)
    watch.noticed(["S/a/x.png"], processed=True)
    clock.now += 11
    watch.check(_idle)  # returns while the report is being written
    assert writing.wait(10.0) and written == []
    assert not watch.settle(0.0) and (inbox / "S" / "a").is_dir()  # removed only once written

    (inbox / "S" / "a" / "late.png").write_bytes(b"late")
    watch.noticed(["S/a/late.png"])
    assert watch.open == ["S"]
    release.set()
    assert watch.settle(10.0)
    assert written == ["S"]
    assert sorted(p.relative_to(inbox).as_posix() for p in inbox.rglob("*")) == [
        "S",
        "S/a",
        "S/a/late.png",
    ]  # the late file kept its folders; the study is open until it is quiet again

    (inbox / "S" / "a" / "late.png").unlink()  # claimed and processed
    watch.noticed(["S/a/late.png"], processed=True)
    clock.now += 11
    watch.check(_idle)
    assert watch.settle(10.0)
    assert written == ["S", "S"] and not (inbox / "S").exists() and watch.open == []


def test_closing_the_report_thread_writes_every_report_asked(tmp_path: Path) -> None:
    written: list[str] = []

    def slow_write(folder: str) -> bool:
        time.sleep(0.2)
        written.append(folder)
        return True

    reports = BackgroundReports(slow_write)
    for folder in ("A", "B", "C"):
        reports.ask(folder)
    reports.close()
    assert written == ["A", "B", "C"]
