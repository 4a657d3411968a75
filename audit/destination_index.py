"""What ``gicls-audit verify`` must remember of every row after the row's chunk is gone.

Verify reads the log a chunk at a time, but needs every destination at the end: to find
destinations named by several rows, and files under ``output_dir`` named by none. Those are
as many as the rows, so they go to a private temporary SQLite database on disk (deleted when
closed) rather than into memory: its page cache (SQLite's default, about 2 MiB) is all that
stays resident, however long the log. The same database keeps the sha256 of each file
hashed, so a file named twice (by rows or as an output) is read once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Expected:
    """What a row says of its file: its sha256, or (never read) its size, or neither."""

    sha256: str
    size: str | None  # the ``bytes`` cell when the file was never read, else None


class DestinationIndex:
    """Destinations (normalised relative bytes paths) of the rows, in log order."""

    def __init__(self) -> None:
        # "" opens a private on-disk temporary database, deleted when closed. It lives for one
        # run, so nothing is ever committed or synced.
        self._db = sqlite3.connect("")
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE row (seq INTEGER PRIMARY KEY, path BLOB, sha256 TEXT, size TEXT);
            CREATE INDEX row_path ON row (path);
            CREATE TABLE digest (path BLOB PRIMARY KEY, sha256 TEXT) WITHOUT ROWID;
            """
        )

    def __enter__(self) -> DestinationIndex:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._db.close()

    def add(self, rows: Iterable[tuple[bytes, Expected]]) -> None:
        """Record rows' destinations and expectations, after those already added."""
        self._db.executemany(
            "INSERT INTO row (path, sha256, size) VALUES (?, ?, ?)",
            ((path, expected.sha256, expected.size) for path, expected in rows),
        )

    def destinations(self) -> Iterator[tuple[bytes, int, list[Expected]]]:
        """Each destination once, in the order of its first row: the number of rows naming
        it and what they expect of it (distinct, in row order)."""
        # With one MIN(), SQLite takes the bare columns from the row holding the minimum.
        grouped = self._db.execute(
            "SELECT path, COUNT(*), MIN(seq) AS first, sha256, size FROM row "
            "GROUP BY path ORDER BY first"
        )
        for path, rows, _, sha, size in grouped:
            if rows == 1:
                yield path, rows, [Expected(sha, size)]
                continue
            named = self._db.execute(
                "SELECT sha256, size FROM row WHERE path = ? GROUP BY sha256, size "
                "ORDER BY MIN(seq)",
                (path,),
            )
            yield path, rows, [Expected(sha, size) for sha, size in named]

    def __contains__(self, path: bytes) -> bool:
        return self._exists("SELECT 1 FROM row WHERE path = ?", path)

    def whole(self, path: bytes) -> bool:
        """Whether a row without sha256 names ``path``: an entry checked as one, even a folder."""
        return self._exists("SELECT 1 FROM row WHERE path = ? AND sha256 = ''", path)

    def digest(self, path: bytes) -> str | None:
        """The sha256 recorded for ``path`` by ``record_digest``, if any."""
        found = self._db.execute("SELECT sha256 FROM digest WHERE path = ?", (path,)).fetchone()
        return None if found is None else found[0]

    def record_digest(self, path: bytes, sha256: str) -> None:
        self._db.execute("INSERT INTO digest VALUES (?, ?)", (path, sha256))

    def _exists(self, query: str, path: bytes) -> bool:
        return self._db.execute(query, (path,)).fetchone() is not None
