"""File-system primitives shared by the model bundle and the daemon.

A rename or link is only durable once the directory holding the new entry is fsynced.
``renameat2`` gives the two atomic renames plain rename(2) lacks: swapping two entries (how a
bundle is published) and renaming without replacing an existing name (how the daemon moves a
file it may not link). ``replace_file`` is how the daemon's state files are rewritten.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
from collections.abc import Iterable
from pathlib import Path

RENAME_NOREPLACE = 1  # fail with EEXIST instead of replacing the target
RENAME_EXCHANGE = 2  # swap source and target atomically
_AT_FDCWD = -100


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def renameat2(source: Path, target: Path, flags: int) -> None:
    """rename(2) with ``flags`` (Linux >= 3.15); raises OSError (FileExistsError, ...)."""
    result = _libc().renameat2(
        _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fspath(source), None, os.fspath(target))


def append_record(fd: int, data: bytes, path: Path) -> None:
    """Append ``data`` with one os.write on an O_APPEND descriptor, or raise OSError for ``path``.

    A full file system can take part of a write and refuse the rest without an error: that
    short write is raised as ENOSPC too. The torn tail it leaves is the caller's to repair
    before it appends again (each log already repairs a torn tail at start-up).
    """
    try:
        written = os.write(fd, data)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
    if written != len(data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))


def replace_file(path: Path, chunks: Iterable[bytes]) -> None:
    """Replace ``path`` by ``chunks`` crash-safely: staging file, fsync, rename, dir fsync.

    A crash at any point leaves either the old file or the new one whole, never a mix.
    """
    staging = path.with_name(path.name + ".staging")
    try:
        with staging.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        staging.unlink(missing_ok=True)  # on a full disk, do not keep what was written
        raise
    os.replace(staging, path)
    fsync_dir(path.parent)
