"""Reading a claimed file: safe open, size limit, sha256, and the bytes to decode.

Decisions that need no decoder are made here: anything that is not a regular file (a symlink
is never followed, a FIFO never blocks) is ``not_regular``, a zero-byte file is ``empty``, a
file beyond ``MAX_FILE_BYTES`` is hashed in a stream but not kept (``too_large``), and a file
that cannot be read (EACCES, EIO, ENOENT/ESTALE, ...) is ``unreadable`` with its errno: one
file's error never reaches the rest of the batch.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gicls.daemon.reasons import Reason, unreadable
from gicls.daemon.safe_open import open_regular

# Far beyond any capsule frame; keeps a stray video named .jpg from filling memory.
MAX_FILE_BYTES = 256 * 1024 * 1024
_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Intake:
    """What reading one claimed file found. ``data`` is None when it will not be decoded."""

    sha256: str  # "" when the bytes were not read (not a regular file, unreadable, poison)
    size: int | None
    data: bytes | None
    reason: Reason | None  # quarantine reason decided without decoding, else None


def read_claimed(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Intake:
    try:
        return _read(path, max_bytes)
    except OSError as exc:
        return unread(path, unreadable(exc))


def unread(path: Path, reason: Reason) -> Intake:
    """What is known of a file without reading a byte of it (the poison path): its size."""
    try:
        st = os.lstat(path)
    except OSError:
        return Intake("", None, None, reason)
    return Intake("", st.st_size if stat.S_ISREG(st.st_mode) else None, None, reason)


def _read(path: Path, max_bytes: int) -> Intake:
    fd = open_regular(path)
    if fd is None:
        return Intake("", None, None, Reason("not_regular"))
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    size = 0
    try:
        while block := os.read(fd, _BLOCK):
            digest.update(block)
            size += len(block)
            if size <= max_bytes:
                chunks.append(block)
            else:
                chunks.clear()
    finally:
        os.close(fd)
    if size == 0:
        return Intake(digest.hexdigest(), 0, None, Reason("empty"))
    if size > max_bytes:
        return Intake(digest.hexdigest(), size, None, Reason("too_large"))
    return Intake(digest.hexdigest(), size, b"".join(chunks), None)
