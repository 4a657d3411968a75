"""Pseudonymised study ids: a keyed hash replaces a study folder's name everywhere gicls writes.

Study folders are often named by patient identifiers. With ``pseudonymise_studies`` the id
used in output paths, audit rows, logs and reports is ``PREFIX`` + the first ``HEX_DIGITS`` hex
digits of HMAC-SHA256(key, folder name bytes): stable across restarts, unguessable without
the key (a plain hash of a known identifier format could be reversed by trying them all).

The key (``KEY_NAME``, 32 random bytes) is created in state_dir on first use with mode 0640:
readable by the service group only. Authorised users find the
names again in the mapping file (``MAPPING_NAME``, 0640 as well): one CSV line
``pseudonym,name,name_hex`` per study, the name escaped like the audit log's names
(``name_hex``: its exact bytes when the text is not), appended with one ``os.write`` on
O_APPEND when a study is first seen. Daemons sharing an inbox must share the key: copy it
into each one's state_dir before their first start, or one study gets two pseudonyms.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import secrets
import threading
from pathlib import Path

from gicls.audit.schema import encode_name
from gicls.errors import DaemonError
from gicls.fsutil import append_record, fsync_dir

KEY_NAME = "study_key"
MAPPING_NAME = "study_pseudonyms.csv"
KEY_BYTES = 32
PREFIX = "ps-"
HEX_DIGITS = 20  # 80 bits: collisions stay out of reach for any number of studies
MODE = 0o640


def load_or_create_key(state_dir: Path) -> bytes:
    """The key in ``state_dir``, created (mode 0640) if there is none yet."""
    path = state_dir / KEY_NAME
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = _create_key(path)
    if len(key) != KEY_BYTES:
        raise DaemonError(
            f"study pseudonym key {path} holds {len(key)} bytes, not {KEY_BYTES}: restore it "
            "from a backup (a new key would give every study a new pseudonym)"
        )
    return key


def _create_key(path: Path) -> bytes:
    """Write a new key beside, then link it into place: a second daemon starting at the same
    moment keeps whichever key was linked first."""
    key = secrets.token_bytes(KEY_BYTES)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, MODE)
    try:
        os.fchmod(fd, MODE)  # whatever the umask
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(staging, path)
    except FileExistsError:
        key = path.read_bytes()
    finally:
        staging.unlink()
    fsync_dir(path.parent)
    return key


class Pseudonyms:
    """``__call__(name)``: the pseudonym of a study folder's name, recorded in the mapping."""

    def __init__(self, state_dir: Path) -> None:
        self._key = load_or_create_key(state_dir)
        self._mapping = state_dir / MAPPING_NAME
        self._known: dict[str, str] = {}
        self._recorded = _recorded(self._mapping)
        # The loop and the report thread both ask: a new name is recorded once.
        self._recording = threading.Lock()

    def __call__(self, name: str) -> str:
        found = self._known.get(name)
        if found is None:
            raw = os.fsencode(name)
            found = PREFIX + hmac.new(self._key, raw, hashlib.sha256).hexdigest()[:HEX_DIGITS]
            with self._recording:
                if found not in self._recorded:
                    self._record(found, raw)
            self._known[name] = found
        return found

    def _record(self, pseudonym: str, raw: bytes) -> None:
        buffer = io.StringIO()
        text, hex_cell = encode_name(raw)
        csv.writer(buffer, lineterminator="\n").writerow([pseudonym, text, hex_cell])
        fd = os.open(self._mapping, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, MODE)
        try:
            os.fchmod(fd, MODE)
            append_record(fd, buffer.getvalue().encode("utf-8"), self._mapping)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._recorded.add(pseudonym)


def _recorded(mapping: Path) -> set[str]:
    """The pseudonyms the mapping file holds already."""
    try:
        with mapping.open(newline="", encoding="utf-8", errors="replace") as handle:
            return {row[0] for row in csv.reader(handle) if row}
    except FileNotFoundError:
        return set()
