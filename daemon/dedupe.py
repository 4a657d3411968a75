"""Which bytes were seen before: sha256 -> where the first copy went.

Rebuilt from the audit log at start-up (the log is the record of what was seen, so the two can
never disagree after a crash) and extended as files are planned, so a copy inside the same
batch is recognised too. Memory grows with the number of distinct files, roughly 150 bytes
each. Two daemons sharing one audit log only see each other's rows from their last start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class SeenIndex:
    def __init__(self) -> None:
        self._first: dict[bytes, str] = {}

    def add_row(self, row: Mapping[str, str]) -> None:
        """Learn from one audit row (its destination, or its file name if it had none)."""
        self.remember(row.get("sha256", ""), row.get("destination") or row.get("file_name", ""))

    def remember(self, sha256: str, reference: str) -> None:
        key = _key(sha256)
        if key is not None:
            self._first.setdefault(key, reference)

    def lookup(self, sha256: str) -> str | None:
        key = _key(sha256)
        return None if key is None else self._first.get(key)

    def repeats(self, sha256s: Sequence[str]) -> list[bool]:
        """For each hash of one batch: seen before, or earlier in the same batch.

        Needed before anything is planned (copies are not decoded when they are skipped),
        when the batch's own first copies are not remembered yet.
        """
        batch: set[bytes] = set()
        found = []
        for sha256 in sha256s:
            key = _key(sha256)
            found.append(key is not None and (key in self._first or key in batch))
            if key is not None:
                batch.add(key)
        return found


# The empty file's hash: placeholders are all "the same bytes" and say nothing about re-drops.
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _key(sha256: str) -> bytes | None:
    if len(sha256) != 64 or sha256 == _EMPTY_SHA256:
        return None
    try:
        return bytes.fromhex(sha256)
    except ValueError:
        return None
