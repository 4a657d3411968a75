"""Content hashes: the identity of an image or a model file everywhere in gicls."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | bytes | os.PathLike, follow_symlinks: bool = True) -> str:
    """Hex sha256 of a file's bytes.

    ``follow_symlinks=False`` refuses a link (and never blocks on a FIFO): for places where a
    file may have been swapped for something else since it was last looked at.
    """
    flags = os.O_RDONLY
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW | os.O_NONBLOCK
    with open(os.open(path, flags), "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
