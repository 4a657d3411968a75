"""The daemon's folders, and the checks that must pass before it touches any file.

Claiming is a rename and routing is a link: both only work, atomically, inside one file system,
so the inbox, the state folder (with its work folder) and the output folder must share a device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gicls.config import DaemonConfig
from gicls.errors import DaemonError

WORK_FOLDER = "work"
JOURNAL_NAME = "journal.jsonl"


@dataclass(frozen=True)
class Layout:
    inbox: Path
    output_dir: Path
    state_dir: Path
    audit_log: Path

    @classmethod
    def of(cls, config: DaemonConfig) -> Layout:
        return cls(config.inbox, config.output_dir, config.state_dir, config.audit_log)

    @property
    def work(self) -> Path:
        return self.state_dir / WORK_FOLDER

    @property
    def journal(self) -> Path:
        return self.state_dir / JOURNAL_NAME

    def shared_device_folders(self) -> dict[str, Path]:
        return {
            "daemon.inbox": self.inbox,
            "daemon.state_dir": self.state_dir,
            "daemon.output_dir": self.output_dir,
        }


def existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_layout(layout: Layout) -> None:
    """Raise DaemonError unless the folders are distinct and on one file system.

    Folders that do not exist yet are judged by their nearest existing parent, which is where
    they would be created.
    """
    folders = layout.shared_device_folders()
    resolved = {key: path.resolve() for key, path in folders.items()}
    if len(set(resolved.values())) != len(resolved):
        raise DaemonError(
            "daemon.inbox, daemon.state_dir and daemon.output_dir must be three different "
            f"folders; got {', '.join(f'{k}={v}' for k, v in resolved.items())}"
        )
    devices = {key: os.stat(existing_ancestor(path)).st_dev for key, path in folders.items()}
    if len(set(devices.values())) > 1:
        raise DaemonError(
            "daemon.inbox, daemon.state_dir and daemon.output_dir must be on one file system "
            "(files are moved by rename and link, which cannot cross file systems); got "
            + ", ".join(f"{key}={folders[key]} (device {dev})" for key, dev in devices.items())
        )


def prepare_layout(layout: Layout) -> None:
    """Create the folders, then check them."""
    for folder in (layout.inbox, layout.output_dir, layout.work):
        folder.mkdir(parents=True, exist_ok=True)
    check_layout(layout)


@dataclass(frozen=True)
class InboxGuard:
    """Notices the inbox being removed, replaced or remounted under the running daemon."""

    inbox: Path
    identity: tuple[int, int]

    @classmethod
    def of(cls, inbox: Path) -> InboxGuard:
        st = os.stat(inbox)
        return cls(inbox, (st.st_dev, st.st_ino))

    def check(self) -> None:
        try:
            st = os.stat(self.inbox)
        except OSError as exc:
            raise DaemonError(f"inbox {self.inbox} is gone: {exc.strerror}") from None
        if (st.st_dev, st.st_ino) != self.identity:
            raise DaemonError(f"inbox {self.inbox} was replaced or remounted; restarting")
