from __future__ import annotations

from pathlib import Path

import pytest

from gicls.daemon.startup import InboxGuard, Layout, check_layout, prepare_layout
from gicls.errors import DaemonError


def _layout(root: Path, output: Path | None = None) -> Layout:
    return Layout(root / "inbox", output or root / "output", root / "state", root / "audit.csv")


def test_prepare_creates_the_folders(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    prepare_layout(layout)
    assert layout.inbox.is_dir() and layout.work.is_dir() and layout.output_dir.is_dir()


def test_folders_on_two_file_systems_are_refused(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system (/dev/shm) to test with")
    with pytest.raises(DaemonError, match="one file system"):
        check_layout(_layout(tmp_path, other / "gicls-output-never-created"))


def test_one_folder_for_two_roles_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DaemonError, match="three different"):
        check_layout(_layout(tmp_path, tmp_path / "inbox"))


def test_the_guard_notices_the_inbox_removed_or_replaced(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    guard = InboxGuard.of(inbox)
    guard.check()
    inbox.rmdir()
    with pytest.raises(DaemonError, match="gone"):
        guard.check()
    inbox.mkdir()
    with pytest.raises(DaemonError, match="replaced"):
        InboxGuard(inbox, (guard.identity[0], guard.identity[1] + 10**9)).check()
