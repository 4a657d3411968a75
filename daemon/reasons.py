"""Why a file is quarantined: a folder word, and a detail for the audit row.

The word names the folder (``_quarantine/<word>/``) and begins the row's ``reason``; the detail
(which errno, ...) follows it after ": ". Folders stay few and stable for the people sorting
them, while each row still says exactly what happened to that file.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from gicls.audit import unread


@dataclass(frozen=True)
class Reason:
    word: str  # the folder under _quarantine/, a short snake_case word
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.word}: {self.detail}" if self.detail else self.word


POISON = Reason(unread.POISON)
UNREADABLE = unread.UNREADABLE


def unreadable(exc: OSError) -> Reason:
    """``unreadable: EACCES (Permission denied)`` for an OSError met while reading one file."""
    code = exc.errno or 0
    name = errno.errorcode.get(code, f"errno {code}")
    return Reason(UNREADABLE, f"{name} ({exc.strerror or os.strerror(code)})")
