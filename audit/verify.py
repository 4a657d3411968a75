"""``gicls-audit verify``: the output tree and the audit log describe each other exactly.

Checked both ways: every row that moved a file names a destination that exists under
``output_dir`` with the logged sha256, and every entry under ``output_dir`` is the destination
of exactly one row. Paths are handled as bytes from end to end (names may not be UTF-8) and
links are never followed. An entry whose row has no sha256 (a FIFO, a link or a folder the
daemon quarantined as ``not_regular``) counts as one entry and is only checked for presence.
A file quarantined without being read (``gicls.audit.unread``: unreadable, poison) has no
sha256 either: it must be a regular file of the row's ``bytes``, checked by ``lstat``.

The log is read a chunk at a time: what must outlive a chunk (every row's destination, the
sha256 of each file hashed) goes to a temporary database on disk
(``gicls.audit.destination_index``), so memory does not grow with the rows. The outputs cells
that are not empty (a video's row, a few per study) and the study names are kept in memory.

Outputs (schema version 4, ``gicls.audit.outputs``): the files a row's ``outputs`` cell names,
the manifests it names and what they list, and the manifest of every study in the log (its
report) and the root one (the index) are checked by their sha256 like destinations, and are
not files without a row.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gicls.audit.destination_index import DestinationIndex, Expected
from gicls.audit.outputs import (
    ROOT_MANIFEST,
    OutputEntry,
    decode_outputs,
    is_manifest,
    parse_manifest,
    study_manifest_path,
)
from gicls.audit.reader import AuditChunk, AuditSource, display
from gicls.audit.schema import decode_name
from gicls.audit.unread import never_read
from gicls.errors import AuditError, listing
from gicls.hashing import file_sha256

# The columns verify reads: what the reader keeps.
VERIFY_COLUMNS = (
    "status",
    "file_name",
    "sha256",
    "bytes",
    "destination",
    "destination_hex",
    "reason",
    "study",
    "outputs",
)
# Rows with these statuses always moved a file; a duplicate row may or may not have.
MOVING_STATUSES = ("classified", "review", "quarantined")

MISSING = "destination missing"
CHANGED = "sha256 mismatch"
NOT_REGULAR = "not a regular file, but the row has a sha256 or size"
NO_SHA = "row without sha256"
SIZE_CHANGED = "size differs from the row's bytes (file never read, so no sha256)"
NO_DESTINATION = "row without destination"
OUTSIDE = "destination outside output_dir"
UNREADABLE = "unreadable"
NO_ROW = "file without audit row"
REPEATED = "file with more than one audit row"
BAD_OUTPUTS = "outputs cell or manifest that cannot be read"


@dataclass
class Verification:
    """Outcome of one verify run; ``problems`` maps a kind above to the names concerned."""

    rows: int
    output_dir: Path
    files: int = 0
    hashed: int = 0
    outputs: int = 0  # files checked as outputs (key frames, Parquet, reports, manifests)
    sized: int = 0  # files never read by the daemon, checked by size only
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, name: str) -> None:
        self.problems.setdefault(kind, []).append(name)

    def report(self) -> list[str]:
        """One OK line, or a FAILED line then one line per kind of problem."""
        if self.ok:
            sized = f", {self.sized} checked by size only (never read)" if self.sized else ""
            outputs = f" ({self.outputs} are recorded outputs)" if self.outputs else ""
            return [
                f"OK: {self.rows} rows, {self.files} files under {self.output_dir}{outputs}: "
                f"each file has exactly one row, {self.hashed} sha256 checked{sized}"
            ]
        count = sum(len(names) for names in self.problems.values())
        lines = [
            f"FAILED: {count} problem(s); {self.rows} rows, {self.files} files under "
            f"{self.output_dir}"
        ]
        lines += [
            f"  {kind}: {len(names)}: {listing(names)}" for kind, names in self.problems.items()
        ]
        return lines


def verify_output(log: AuditSource, output_dir: Path, own_paths: Iterable[Path]) -> Verification:
    """Compare ``log`` with the files under ``output_dir``.

    ``own_paths`` are the daemon's own files and folders (audit log, state, inbox); those that
    lie inside ``output_dir`` are left out of the walk.
    """
    result = Verification(rows=log.rows, output_dir=output_dir)
    root = os.fsencode(output_dir)
    with DestinationIndex() as index:
        cells: list[tuple[str, str]] = []
        studies: set[str] = set()
        for chunk in log.chunks(VERIFY_COLUMNS):
            index.add(_destinations(chunk, result))
            text = chunk.text
            cells += [(cell, chunk.where(row)) for row, cell in enumerate(text["outputs"]) if cell]
            studies.update(text["study"])
        # Only now: a log that cannot be read is the first thing to report.
        if not output_dir.is_dir():
            raise AuditError(f"output folder {output_dir} does not exist or is not a folder")
        for destination, rows, expectations in index.destinations():
            if rows > 1:
                result.add(REPEATED, f"{display(destination)} ({rows} rows)")
            for expected in expectations:
                _check_file(root, destination, expected, index, result)
        outputs = _check_outputs(cells, studies - {""}, root, index, result)
        skipped = set(_inside(output_dir, own_paths))
        for entry in _walk(root, skipped, index, result):
            result.files += 1
            if entry in outputs and entry not in index:
                result.outputs += 1
            elif entry not in index:
                result.add(NO_ROW, display(entry))
    return result


def _check_outputs(
    cells: list[tuple[str, str]],
    studies: set[str],
    root: bytes,
    index: DestinationIndex,
    result: Verification,
) -> set[bytes]:
    """Check every recorded output by its sha256; the normalised paths of all of them.

    ``cells`` are the outputs cells that are not empty, each with where its row is.
    """
    named: list[tuple[OutputEntry, str]] = []
    for cell, where in cells:
        try:
            named += [(entry, where) for entry in decode_outputs(cell)]
        except AuditError as exc:
            result.add(BAD_OUTPUTS, f"{exc} ({where})")
    # A study's own manifest (report) and the root one (index) are found by their place.
    fixed = [study_manifest_path(study) for study in sorted(studies)]
    found: set[bytes] = set()
    for path in [*fixed, ROOT_MANIFEST]:
        relative = _normalise(os.fsencode(path))
        if relative is not None and os.path.lexists(os.path.join(root, relative)):
            found.add(relative)
            named += _manifest_entries(root, relative, result)
    while named:  # a manifest named with a matching sha256 adds what it lists
        entry, where = named.pop()
        relative = _normalise(os.fsencode(entry.path))
        if relative is None:
            result.add(OUTSIDE, f"{entry.path} ({where})")
            continue
        if relative in found:
            continue
        found.add(relative)
        sha = entry.sha256.lower()
        _check_file(root, relative, Expected(sha, None), index, result)
        if is_manifest(entry.path) and index.digest(relative) == sha:
            named += _manifest_entries(root, relative, result)
    return found


def _manifest_entries(
    root: bytes, relative: bytes, result: Verification
) -> list[tuple[OutputEntry, str]]:
    try:
        with open(os.open(os.path.join(root, relative), os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
            entries = parse_manifest(f.read(), display(relative))
    except OSError as exc:
        result.add(UNREADABLE, f"{display(relative)} ({exc.strerror})")
        return []
    except AuditError as exc:
        result.add(BAD_OUTPUTS, str(exc))
        return []
    return [(entry, display(relative)) for entry in entries]


def _destinations(chunk: AuditChunk, result: Verification) -> list[tuple[bytes, Expected]]:
    """The chunk's normalised destinations and what their rows expect, recording rows that
    have no usable destination."""
    text = chunk.text
    found: list[tuple[bytes, Expected]] = []
    for row, (status, cell, hex_cell, file_cell, sha, reason, size) in enumerate(
        zip(
            text["status"],
            text["destination"],
            text["destination_hex"],
            text["file_name"],
            text["sha256"],
            text["reason"],
            text["bytes"],
            strict=True,
        )
    ):
        if not cell and not hex_cell:
            if status in MOVING_STATUSES:
                result.add(NO_DESTINATION, f"{file_cell} ({chunk.where(row)})")
            continue
        destination = _normalise(decode_name(cell, hex_cell))
        if destination is None:
            result.add(OUTSIDE, f"{cell} ({chunk.where(row)})")
            continue
        found.append((destination, _expected(status, sha.lower(), reason, size)))
    return found


def _expected(status: str, sha: str, reason: str, size: str) -> Expected:
    unread = not sha and status == "quarantined"
    return Expected(sha, size if unread and never_read(reason) else None)


def _normalise(relative: bytes) -> bytes | None:
    """``relative`` without empty and ``.`` parts; None when it is absolute or climbs out."""
    parts = [part for part in relative.split(b"/") if part not in (b"", b".")]
    if relative.startswith(b"/") or b".." in parts or not parts:
        return None
    return b"/".join(parts)


def _check_file(
    root: bytes,
    destination: bytes,
    expected: Expected,
    index: DestinationIndex,
    result: Verification,
) -> None:
    name = display(destination)
    path = os.path.join(root, destination)
    sha = expected.sha256
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            if sha or expected.size is not None:
                result.add(NOT_REGULAR, name)
            return
        if not sha:
            _check_size(name, st.st_size, expected.size, result)
            return
        digest = index.digest(destination)
        if digest is None:
            # A file swapped for a link since it was listed must not be read through it.
            digest = file_sha256(path, follow_symlinks=False)
            index.record_digest(destination, digest)
            result.hashed += 1
    except FileNotFoundError:
        result.add(MISSING, name)
        return
    except OSError as exc:
        result.add(UNREADABLE, f"{name} ({exc.strerror})")
        return
    if digest != sha:
        result.add(CHANGED, name)


def _check_size(name: str, size: int, expected: str | None, result: Verification) -> None:
    """A regular file the row has no sha256 for: only a never-read file may lack one."""
    if expected is None:
        result.add(NO_SHA, name)
    elif expected != str(size):
        result.add(SIZE_CHANGED, f"{name} ({size} bytes, row says {expected or 'nothing'})")
    else:
        result.sized += 1


def _inside(output_dir: Path, paths: Iterable[Path]) -> Iterator[bytes]:
    """The relative bytes path of each of ``paths`` that lies inside ``output_dir``."""
    base = output_dir.resolve()
    for path in paths:
        resolved = path.resolve()
        if resolved.is_relative_to(base) and resolved != base:
            yield os.fsencode(resolved.relative_to(base))


def _walk(
    root: bytes, skipped: set[bytes], index: DestinationIndex, result: Verification
) -> Iterator[bytes]:
    """Relative paths of every non-folder entry under ``root``, and of folders that a row
    without sha256 names (``DestinationIndex.whole``)."""
    pending = [b""]
    while pending:
        folder = pending.pop()
        for entry in _entries(root, folder, result):
            relative = os.path.join(folder, entry.name) if folder else entry.name
            if relative in skipped:
                continue
            if entry.is_dir(follow_symlinks=False) and not index.whole(relative):
                pending.append(relative)
            else:
                yield relative


def _entries(root: bytes, folder: bytes, result: Verification) -> Iterator[os.DirEntry[bytes]]:
    """The entries of one folder, one at a time: a folder may hold a whole study's frames, too
    many to list at once. A folder that cannot be read is a problem, not an error."""
    try:
        with os.scandir(os.path.join(root, folder) if folder else root) as entries:
            yield from entries
    except OSError as exc:
        result.add(UNREADABLE, f"{display(folder)}/ ({exc.strerror})")
