"""The audit log's columns and cell encoding, shared by the daemon (writer) and gicls-audit.

The log is strictly UTF-8 CSV (RFC 4180), one physical line per row. File names can hold any
bytes, so text cells are made safe for spreadsheets and for line-based tools:

- control characters (newline, tab, ...) and bytes that are not UTF-8 are written as
  backslash escapes, so a row never spans two lines and the file always decodes;
- a cell that a spreadsheet would run as a formula (starting with = + - @ tab or CR) gets a
  leading apostrophe;
- whenever the text of ``file_name`` or ``destination`` is not exactly the name on disk, the
  exact bytes are kept as hex in ``file_name_hex`` / ``destination_hex``, so tools can always
  find the file again.
"""

from __future__ import annotations

from collections.abc import Sequence

STATUSES = ("classified", "review", "quarantined", "duplicate")

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

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def audit_columns(classes: Sequence[str]) -> list[str]:
    """Header of the audit log: fixed columns, one score column per class in class order."""
    return [*LEADING_COLUMNS, *classes, *TRAILING_COLUMNS]


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
