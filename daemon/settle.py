"""Readiness: a file is ready when it has stopped changing. This module only stats and lists.

Creation and close events are hints: writers reopen and append, and moved or linked files
never close. A candidate is ready once its lstat signature (type, size, mtime, inode) has been
unchanged for ``stability_seconds``. A zero-byte file is usually a placeholder a scanner fills
later, so it must stay empty for the longer ``empty_timeout`` before it is handed over (and
quarantined as ``empty``). Folders are never handed over: a folder is a study (``studies.py``)
and what is in it is tracked like files at the root, each file on its own, so frames settle
while a ``cp -r`` is still copying the rest. Names are paths relative to the inbox. Symbolic
links, FIFOs and sockets are handed over like files (the link itself, never its target, so a
link to a folder is never descended into) so they can be quarantined as ``not_regular``.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gicls.daemon.watch import scan
from gicls.logs import get_logger

log = get_logger(__name__)

# Scanners create zero-byte placeholders and fill them later: give them this many stability
# periods (one minute at the default 2 s) before an empty file is handed over as empty.
EMPTY_TIMEOUT_FACTOR = 30
# A file the daemon may not take (claim.py) is left alone this long while it stays unchanged.
REFUSED_RETRY_SECONDS = 600.0


def empty_timeout(stability_seconds: float) -> float:
    return EMPTY_TIMEOUT_FACTOR * stability_seconds


@dataclass(frozen=True)
class Signature:
    kind: int
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Signature:
        return cls(stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class Settled:
    """A name in the inbox that has stopped changing."""

    name: str
    signature: Signature
    settled_at: float  # wall-clock seconds, the start of the audit log's latency_ms


@dataclass
class _Watch:
    signature: Signature
    since: float  # monotonic time this signature was first seen


def is_ignored(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def is_ignored_path(relative: str, patterns: Sequence[str]) -> bool:
    """Whether the patterns ignore the file ``relative``: by its name, or by the name of a
    folder inside its study (rsync's temporary folders). The study folder's own name is not
    matched: a hidden study is refused (``studies.py``), not ignored."""
    parts = relative.split("/")
    return any(is_ignored(part, patterns) for part in (parts[-1], *parts[1:-1]))


def stat_signature(folder: Path, name: str) -> Signature | None:
    """The signature of ``folder/name`` without following links; None if it is gone."""
    try:
        return Signature.of(os.lstat(folder / name))
    except FileNotFoundError:
        return None


class SettleTracker:
    """Tracks candidate names in one folder until each has settled."""

    def __init__(
        self,
        folder: Path,
        stability_seconds: float,
        empty_timeout: float,
        ignore: Sequence[str],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        display: Callable[[str], str] = str,
    ) -> None:
        """``display`` turns a name into what logs may show (a pseudonymised study)."""
        self._folder = folder
        self._stability = stability_seconds
        self._empty_timeout = empty_timeout
        self._ignore = tuple(ignore)
        self._clock = clock
        self._wall_clock = wall_clock
        self._display = display
        self._watching: dict[str, _Watch | None] = {}
        # Names handed over and not yet released: events for them are echoes of our own work.
        self._handed: set[str] = set()
        # Names the claim was refused for: the signature then, and when to try again.
        self._refused: dict[str, tuple[Signature, float]] = {}

    def __len__(self) -> int:
        return len(self._watching)

    def observe(self, names: Iterable[str]) -> None:
        """Start tracking names (from events or a scan); repeats and ignored names are no-ops."""
        for name in names:
            if (
                name in self._watching
                or name in self._handed
                or is_ignored_path(name, self._ignore)
            ):
                continue
            self._watching[name] = None

    def holds_under(self, folder: str) -> bool:
        """Whether a name in ``folder`` (a study's) is tracked or handed over, not released."""
        prefix = folder + "/"
        return any(name.startswith(prefix) for name in (*self._watching, *self._handed))

    def release(self, name: str) -> None:
        """The consumer is finished with a handed-over name; a new file by that name is new."""
        self._handed.discard(name)

    def refuse(self, item: Settled, error: str) -> None:
        """``item`` may not be claimed (``error``: the errno's name): leave it alone until it
        changes or REFUSED_RETRY_SECONDS have passed; say so once per file."""
        previous = self._refused.get(item.name)
        if previous is None or previous[0] != item.signature:
            log.warning("claim_refused", file_name=self._display(item.name), error=error)
        self._refused[item.name] = (item.signature, self._clock() + REFUSED_RETRY_SECONDS)

    def poll(self) -> list[Settled]:
        """Stat every tracked name once; return (and stop tracking) the ones that settled."""
        now = self._clock()
        settled: list[Settled] = []
        for name in list(self._watching):
            signature = stat_signature(self._folder, name)
            if signature is None:
                del self._watching[name]
                continue
            if signature.kind == stat.S_IFDIR:
                # A study folder (or one inside it), new or moved in: track what it holds.
                del self._watching[name]
                self.observe(scan(self._folder, name))
                continue
            watch = self._watching[name]
            if watch is None or watch.signature != signature:
                self._watching[name] = _Watch(signature, now)
                continue
            if now - watch.since >= self._required_quiet(signature):
                del self._watching[name]
                if self._left_alone(name, signature, now):
                    continue
                self._handed.add(name)
                settled.append(Settled(name, signature, self._wall_clock()))
        return settled

    def _left_alone(self, name: str, signature: Signature, now: float) -> bool:
        refused = self._refused.get(name)
        if refused is None:
            return False
        if refused[0] == signature and now < refused[1]:
            return True
        # Changed, or time to try again: a refusal for the same signature is not logged again.
        if refused[0] != signature:
            del self._refused[name]
        return False

    def _required_quiet(self, signature: Signature) -> float:
        if signature.kind == stat.S_IFREG and signature.size == 0:
            return self._empty_timeout
        return self._stability
