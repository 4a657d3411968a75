"""The ``outputs`` cell (schema version 4): files a source produced besides its destination.

A video's key frames and Parquet frame table, a study's report and the index are files under
``output_dir`` that no row names as its ``destination``; they are recorded with their sha256 so
``gicls-audit verify`` checks them instead of reporting files without a row.

Cell encoding: entries ``<path>|<sha256>`` joined by ``;``. ``path`` is relative to
``output_dir`` ("/"-separated) and percent-encoded byte by byte except letters, digits, space
and ``/_.-~`` (so ``;``, ``|``, ``%``, control characters and non-UTF-8 bytes never appear
raw); the whole cell may carry the leading apostrophe of ``neutralise`` (a raw ``'`` is always
encoded, so one at the start can only be that).

Manifests. An entry whose file name ends with ``manifest.json`` names a JSON manifest
``{"outputs": [{"path": ..., "sha256": ...}, ...]}`` (paths relative to ``output_dir``, as
text); a writer uses one instead of a long cell (more than ``MAX_INLINE_OUTPUTS`` entries).
Outputs that belong to a study rather than to one file (its report, the index) are listed in
the manifest at a fixed place, ``<study>/_manifest.json`` (``study_manifest_path``) and
``_manifest.json`` at the root for ``index.html``; no row names those, because a report is
rewritten when a late file re-opens its study and a log is never rewritten. ``verify`` reads
the manifest of every study in the log and the root one, and checks what they list.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gicls.audit.schema import neutralise
from gicls.errors import AuditError
from gicls.fsutil import replace_file
from gicls.hashing import file_sha256

ENTRY_SEPARATOR = ";"
HASH_SEPARATOR = "|"
MANIFEST_SUFFIX = "manifest.json"
STUDY_MANIFEST_NAME = "_manifest.json"
ROOT_MANIFEST = STUDY_MANIFEST_NAME  # at the root of output_dir: lists index.html
MAX_INLINE_OUTPUTS = 20
_SAFE = "/ "  # besides letters, digits and _.-~ which quote never encodes


@dataclass(frozen=True)
class OutputEntry:
    """One produced file: ``path`` relative to output_dir (os.fsdecode'd bytes), its sha256."""

    path: str
    sha256: str

    @classmethod
    def of(cls, output_dir: Path, file: Path) -> OutputEntry:
        """The entry for ``file`` (under ``output_dir``) with the sha256 of its bytes now."""
        return cls(file.relative_to(output_dir).as_posix(), file_sha256(file))


def is_manifest(path: str) -> bool:
    return path.rsplit("/", 1)[-1].endswith(MANIFEST_SUFFIX)


def study_manifest_path(study: str) -> str:
    return f"{study}/{STUDY_MANIFEST_NAME}"


def encode_outputs(entries: Iterable[OutputEntry]) -> str:
    """The ``outputs`` cell for ``entries`` ("" for none)."""
    cell = ENTRY_SEPARATOR.join(
        urllib.parse.quote(os.fsencode(entry.path), safe=_SAFE) + HASH_SEPARATOR + entry.sha256
        for entry in entries
    )
    return neutralise(cell)


def decode_outputs(cell: str) -> list[OutputEntry]:
    """The entries of an ``outputs`` cell written by ``encode_outputs``; AuditError if it
    holds something else."""
    text = cell.removeprefix("'")
    entries = []
    for part in text.split(ENTRY_SEPARATOR) if text else ():
        path, separator, sha256 = part.rpartition(HASH_SEPARATOR)
        if not separator or not path or len(sha256) != 64:
            raise AuditError(f"outputs entry {part!r} is not 'path|sha256'")
        entries.append(OutputEntry(os.fsdecode(urllib.parse.unquote_to_bytes(path)), sha256))
    return entries


def manifest_bytes(entries: Sequence[OutputEntry]) -> bytes:
    outputs = [{"path": entry.path, "sha256": entry.sha256} for entry in entries]
    text = json.dumps({"outputs": outputs}, indent=1, ensure_ascii=True)
    return text.encode("ascii") + b"\n"


def parse_manifest(data: bytes, where: str) -> list[OutputEntry]:
    """The entries of manifest bytes; AuditError naming ``where`` when they are not one."""
    try:
        document = json.loads(data)
        entries = [
            OutputEntry(str(item["path"]), str(item["sha256"])) for item in document["outputs"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"outputs manifest {where} is not a manifest: {exc}") from None
    return entries


def write_manifest(output_dir: Path, relative: str, entries: Sequence[OutputEntry]) -> OutputEntry:
    """Write the manifest ``relative`` (under output_dir) atomically; its own entry."""
    path = output_dir / relative
    replace_file(path, [manifest_bytes(entries)])
    return OutputEntry.of(output_dir, path)
