"""Safe opening: a file owned by the daemon is never opened through a link out of the inbox.

(Directory fsync, which the stages share with the model bundle, is gicls.fsutil.fsync_dir.)
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_SAFE_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_regular(path: Path) -> int | None:
    """Open ``path`` for reading if it is a regular file; None if it is anything else.

    O_NOFOLLOW refuses a symbolic link itself (ELOOP), O_NONBLOCK keeps a FIFO without a writer
    from blocking the open, and fstat on the open descriptor checks the object actually opened,
    not whatever the name points to a moment later. Any other OSError (EACCES, EIO, ENOENT, ...)
    propagates: the file is there but cannot be read, which the caller reports as such.
    """
    try:
        fd = os.open(path, _SAFE_OPEN_FLAGS)
    except OSError as exc:
        # ELOOP: a symlink; ENXIO: a socket or a FIFO end that cannot be opened.
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            return None
        raise
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        return None
    return fd
