"""The audit log's columns, versions and cell encoding, shared by the daemon (writer) and readers.

The log is strictly UTF-8 CSV (RFC 4180), one physical line per row. File names can hold any
bytes, so text cells are made safe for spreadsheets and for line-based tools:

- control characters (newline, tab, ...) and bytes that are not UTF-8 are written as
  backslash escapes, so a row never spans two lines and the file always decodes;
- a cell that a spreadsheet would run as a formula (starting with = + - @ tab or CR) gets a
  leading apostrophe;
- whenever the text of ``file_name`` or ``destination`` is not exactly the name on disk, the
  exact bytes are kept as hex in ``file_name_hex`` / ``destination_hex``, so tools can always
  find the file again.

Versions. Version 1 is the first layout (no version marker). Each later version only adds
columns (``ADDED_COLUMNS``) and ends the header with a ``schema_version`` column that every row
fills with its version number. The marker lives in the file itself, not in a sidecar, because
an audit log is copied, mailed and archived on its own: whatever travels with the file can
still be read, by gicls and by any CSV tool, and each row says which layout wrote it. The
header alone tells the layout apart for the configured classes (each version's column list is
known); the row cells tell a newer version from a wrong configuration. A log is never
converted: a newer writer continues it in a new segment (``gicls.audit.segments``).

Version 4 (studies) adds ``study`` (the study id as written to output paths, already
pseudonymised when that is on; "" for a loose file at the inbox root), ``source_path`` (the
file's path relative to the inbox at claim time, escaped like ``file_name``, its study part
pseudonymised likewise), ``frames_scored`` and ``duration_s`` (a video's; "" for an image) and
``outputs`` (what a row's source produced besides its destination; ``gicls.audit.outputs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gicls.errors import AuditError

STATUSES = ("classified", "review", "quarantined", "duplicate")

SCHEMA_VERSION = 4
VERSION_COLUMN = "schema_version"
# The columns each version added to the one before it (placed before VERSION_COLUMN).
# 3: flags, the classes at or above the bundle's thresholds (";"-joined, in class order).
# 4: studies (see the module docstring).
ADDED_COLUMNS: dict[int, tuple[str, ...]] = {
    2: ("precision",),
    3: ("flags",),
    4: ("study", "source_path", "frames_scored", "duration_s", "outputs"),
}

LEADING_COLUMNS = (
    "processed_at",
    "status",
    "file_name",
    "sha256",
    "bytes",
    "predicted_class",
    "confidence",
    "margin",
)
TRAILING_COLUMNS = (
    "destination",
    "reason",
    "model_bundle",
    "batch_id",
    "latency_ms",
    "duplicate_of",
    "file_name_hex",
    "destination_hex",
)

# Joins the classes of one ``flags`` cell.
FLAG_SEPARATOR = ";"

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def audit_columns(classes: Sequence[str], version: int = SCHEMA_VERSION) -> list[str]:
    """Header of an audit log of ``version``: fixed columns, one score column per class in class
    order, the columns later versions added, then (from version 2 on) ``schema_version``."""
    if not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(f"no audit log schema version {version}")
    added = [name for later in range(2, version + 1) for name in ADDED_COLUMNS[later]]
    marker = [VERSION_COLUMN] if version > 1 else []
    return [*LEADING_COLUMNS, *classes, *TRAILING_COLUMNS, *added, *marker]


def layout_version(
    header: Sequence[str], classes: Sequence[str], declared: str | None, path: Path
) -> int:
    """The schema version whose layout for ``classes`` is exactly ``header``.

    ``declared`` is the first row's ``schema_version`` cell (None without rows or column).
    Raises AuditError naming ``path``, for a version newer than this gicls reads, or for a
    header no version has (another class list, a hand-edited file).
    """
    for version in range(SCHEMA_VERSION, 0, -1):
        if list(header) == audit_columns(classes, version):
            return version
    newer = parse_version(declared)
    if newer is not None and newer > SCHEMA_VERSION:
        raise AuditError(newer_version_message(path, newer))
    closest = SCHEMA_VERSION if VERSION_COLUMN in header else 1
    problems = _header_problems(list(header), classes, audit_columns(classes, closest))
    raise AuditError(
        f"audit log {path} does not match the configured classes: " + "; ".join(problems)
    )


def parse_version(cell: str | None) -> int | None:
    """The number in a ``schema_version`` cell, None when it holds none."""
    return int(cell) if cell and cell.isascii() and cell.isdigit() else None


def newer_version_message(path: Path, version: int) -> str:
    return (
        f"audit log {path} was written with schema version {version}; this gicls reads "
        f"versions 1 to {SCHEMA_VERSION}: upgrade gicls to read it"
    )


def _header_problems(header: list[str], classes: Sequence[str], expected: list[str]) -> list[str]:
    problems = []
    missing = [name for name in expected if name not in header]
    unexpected = [name for name in header if name not in expected]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if missing:
        problems.append(f"missing column(s) {_quoted(missing)}")
    if unexpected:
        problems.append(f"unexpected column(s) {_quoted(unexpected)}")
    if repeated:
        problems.append(f"repeated column(s) {_quoted(repeated)}")
    if not problems:
        logged = [name for name in header if name in classes]
        if logged != list(classes):
            problems.append(
                f"class columns in another order: log {_quoted(logged)}, "
                f"configuration {_quoted(list(classes))}"
            )
        else:
            problems.append(f"columns in another order: {_quoted(header)}")
    return problems


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def neutralise(text: str) -> str:
    """Stop spreadsheets from evaluating a cell as a formula."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _printable(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="backslashreplace")
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def encode_name(raw: bytes) -> tuple[str, str]:
    """Cell text for a file name or relative path, and its hex when the text is not exact."""
    text = neutralise(_printable(raw))
    exact = text.encode("utf-8") == raw
    return text, "" if exact else raw.hex()


def decode_name(text: str, hex_cell: str | float | None) -> bytes:
    """The exact bytes of a name written by ``encode_name``."""
    if isinstance(hex_cell, str) and hex_cell:
        return bytes.fromhex(hex_cell)
    return text.encode("utf-8")
