"""Reading a claimed file: safe open, size limit, sha256, and the bytes to decode.

Decisions that need no decoder are made here: anything that is not a regular file (a symlink
is never followed, a FIFO never blocks) is ``not_regular``, a zero-byte file is ``empty``, a
file beyond ``MAX_FILE_BYTES`` is hashed in a stream but not kept (``too_large``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from gicls.daemon.fsutil import open_regular

# Far beyond any capsule frame; keeps a stray video named .jpg from filling memory.
MAX_FILE_BYTES = 256 * 1024 * 1024
_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Intake:
    """What reading one claimed file found. ``data`` is None when it will not be decoded."""

    sha256: str  # "" for things that are not regular files: they have no bytes to hash
    size: int | None
    data: bytes | None
    reason: str | None  # quarantine reason decided without decoding, else None


def read_claimed(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Intake:
    fd = open_regular(path)
    if fd is None:
        return Intake("", None, None, "not_regular")
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
        return Intake(digest.hexdigest(), 0, None, "empty")
    if size > max_bytes:
        return Intake(digest.hexdigest(), size, None, "too_large")
    return Intake(digest.hexdigest(), size, b"".join(chunks), None)
