"""The daemon's threads named for the operating system as well as for Python.

Python 3.11 names a thread for Python only: ``top -H``, ``ps -L``, ``py-spy`` and ``/proc``
show every thread of the daemon under the process's name, so nobody can tell whether decoding,
scoring or the file watcher spends the CPU. Writing each thread's Python name into its
``/proc/self/task/<tid>/comm`` (Linux keeps 15 bytes) makes them tell, for operators and for
``bench/cpu_use.py`` alike. Elsewhere than Linux, or where ``/proc`` refuses, nothing changes.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from pathlib import Path

# Threads named once: names do not change, and tids are reused by later threads.
_named: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def name_threads() -> None:
    """Give every live thread but the main one (whose name is the process's, which ``ps``,
    ``pgrep`` and systemd show) its Python name, each thread once. Cheap enough for every
    turn of the loop: threads (executors' workers, a reloaded bundle's) start at any time."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is main or thread.native_id is None or thread in _named:
            continue
        _named.add(thread)
        # Not Linux, or the thread has just ended: a name is a convenience, never an error.
        with contextlib.suppress(OSError):
            Path(f"/proc/self/task/{thread.native_id}/comm").write_bytes(
                _os_name(thread).encode("utf-8", "replace")[:15]
            )


def _os_name(thread: threading.Thread) -> str:
    """Its Python name; for a library's thread left with a number (``Thread-3``: watchdog's
    observer and emitters), its class, which says what it does."""
    if re.fullmatch(r"Thread-\d+", thread.name) and type(thread) is not threading.Thread:
        return type(thread).__name__
    return thread.name
