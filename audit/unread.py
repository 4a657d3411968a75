"""Quarantine reasons whose file the daemon never read, so whose row has no sha256.

An ``unreadable`` file could not be read (EACCES, EIO, ...) and a ``poison`` file is
quarantined without being read again (reading it crashed the daemon three times). Their rows
keep the size the daemon saw (``lstat``) in ``bytes``; ``verify`` checks that instead of a
hash. The daemon's reasons (``gicls.daemon.reasons``) take these words from here, so the two
can never disagree.
"""

from __future__ import annotations

UNREADABLE = "unreadable"
POISON = "poison"
NEVER_READ = frozenset({UNREADABLE, POISON})


def never_read(reason: str) -> bool:
    """Whether a row's ``reason`` cell (``word`` or ``word: detail``) names a file never read."""
    return reason.split(":", 1)[0].strip() in NEVER_READ
