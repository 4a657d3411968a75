"""The event adapter: turns watchdog events and inbox scans into candidate names.

It only yields names; whether a name is ready is the settle stage's business, so the event
backend (inotify, or polling for NFS/SMB where inotify sees nothing) can change without
touching the rest. Events are hints that can be lost (watchdog drops the inotify overflow
event), so the service also scans the whole inbox at start-up and every ``rescan_seconds``.
The observer thread can die (watchdog's PollingObserver on an OSError); ``alive`` reports it so
the service can restart it and withhold systemd watchdog pings meanwhile.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Literal

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from gicls.errors import DaemonError

ObserverKind = Literal["inotify", "polling"]
POLLING_INTERVAL_SECONDS = 1.0


def scan(folder: Path, under: str = "") -> list[str]:
    """The path (relative to ``folder``) of every entry that is not a folder, at any depth
    below ``folder/under``: study folders are descended into, links to folders never.

    A folder that vanishes while it is listed (a study being cleaned up, a claim of a whole
    copy by another daemon) simply lists as what was found.
    """
    found: list[str] = []
    pending = [under]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(folder / current if current else folder) as entries:
                listed = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in listed:
            relative = f"{current}/{entry.name}" if current else entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append(relative)
            else:
                found.append(relative)
    return found


class _Collector(FileSystemEventHandler):
    """Keeps the inbox-relative paths that events mention, at any depth, deduplicated,
    thread-safe."""

    def __init__(self, folder: Path) -> None:
        self._folder = os.fsencode(folder)
        self._lock = threading.Lock()
        self._names: set[str] = set()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory and event.event_type == "modified":
            return  # a study folder changes with every file copied in: the files tell
        # A move out of the inbox names the inbox only as its source; its destination matters.
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if not path:
                continue
            raw = os.fsencode(path)
            if raw.startswith(self._folder + b"/") and len(raw) > len(self._folder) + 1:
                with self._lock:
                    self._names.add(os.fsdecode(raw[len(self._folder) + 1 :]))

    def drain(self) -> list[str]:
        with self._lock:
            names, self._names = self._names, set()
        return list(names)


class InboxWatcher:
    """Watches the inbox and the study folders in it (recursively) with the configured
    observer."""

    def __init__(self, folder: Path, kind: ObserverKind) -> None:
        self._folder = folder
        self._kind = kind
        self._collector = _Collector(folder)
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        observer: BaseObserver = (
            PollingObserver(timeout=POLLING_INTERVAL_SECONDS)
            if self._kind == "polling"
            else Observer()
        )
        observer.schedule(self._collector, str(self._folder), recursive=True)
        try:
            observer.start()
        except OSError as exc:
            # ENOSPC/EMFILE: the inotify watch or instance limit; say which knob to turn.
            raise DaemonError(
                f"cannot watch {self._folder} with {self._kind}: {exc.strerror}"
                " (raise fs.inotify.max_user_watches/max_user_instances, or use"
                ' daemon.observer = "polling")'
            ) from None
        self._observer = observer

    def alive(self) -> bool:
        observer = self._observer
        return (
            observer is not None
            and observer.is_alive()
            and all(emitter.is_alive() for emitter in observer.emitters)
        )

    def restart(self) -> None:
        self.stop()
        self.start()

    def drain(self) -> list[str]:
        """Names mentioned by events since the last call."""
        return self._collector.drain()

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=5)
