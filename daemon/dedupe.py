"""Which bytes were seen before: sha256 -> where the first copy went.

Learnt from the audit log (the log is the record of what was seen, so the two can never
disagree after a crash: ``seen_store.py`` reads it, from a snapshot on) and extended as files are
planned, so a copy inside the same batch is recognised too. What was planned is kept apart and
forgotten once the log has been read past it (``settle``): the log's first row for some bytes
wins, as if the whole log had been read at start-up. Memory grows with the number of distinct
files, roughly 150 bytes each.
"""

from __future__ import annotations

from collections.abc import Sequence


class SeenIndex:
    def __init__(self, logged: dict[bytes, str] | None = None) -> None:
        """``logged``: 32-byte digest -> reference, as a snapshot of the log holds them."""
        self.logged: dict[bytes, str] = {} if logged is None else logged
        self._planned: dict[bytes, str] = {}

    def add_row(self, sha256: str, destination: str, file_name: str) -> None:
        """Learn from one audit row (its destination, or its file name if it had none)."""
        key = _key(sha256)
        if key is not None:
            self.logged.setdefault(key, destination or file_name)

    def remember(self, sha256: str, reference: str) -> None:
        """A file is planned to go to ``reference``; its row is not in the log yet."""
        key = _key(sha256)
        if key is not None and key not in self.logged:
            self._planned.setdefault(key, reference)

    def forget(self) -> None:
        """Forget everything (the log is to be read again from its beginning)."""
        self.logged.clear()
        self._planned.clear()

    def settle(self) -> None:
        """Everything planned is in the log, and the log was read to its end since."""
        self._planned.clear()

    def lookup(self, sha256: str) -> str | None:
        key = _key(sha256)
        if key is None:
            return None
        found = self.logged.get(key)
        return found if found is not None else self._planned.get(key)

    def repeats(self, sha256s: Sequence[str]) -> list[bool]:
        """For each hash of one batch: seen before, or earlier in the same batch.

        Needed before anything is planned (copies are not decoded when they are skipped),
        when the batch's own first copies are not remembered yet.
        """
        batch: set[bytes] = set()
        found = []
        for sha256 in sha256s:
            key = _key(sha256)
            found.append(
                key is not None and (key in self.logged or key in self._planned or key in batch)
            )
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
