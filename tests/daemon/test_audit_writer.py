from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from gicls.audit.rows import iter_rows
from gicls.audit.schema import audit_columns, decode_name, encode_name
from gicls.daemon.audit_writer import AuditWriter
from gicls.errors import DaemonError

CLASSES = ("Bleeding", "Normal")


def _records(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_header_is_written_once_and_every_row_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.csv"
    names = [b"comma, name.jpg", b'quote".jpg', b"new\nline.jpg", b"=cmd|x.jpg", b"\xff.jpg"]
    for _ in range(2):  # reopening must not repeat the header
        log = AuditWriter(path, CLASSES)
        with log.batch():
            for raw in names:
                text, hex_cell = encode_name(raw)
                log.append({"status": "classified", "file_name": text, "file_name_hex": hex_cell})
        log.close()
    records = _records(path)
    assert records[0] == audit_columns(CLASSES)
    assert len(records) == 1 + 2 * len(names) == path.read_bytes().count(b"\n")
    rows = list(iter_rows(path))
    assert [decode_name(r["file_name"], r["file_name_hex"]) for r in rows[:5]] == names
    assert rows[3]["file_name"].startswith("'=")


@pytest.mark.parametrize(
    "tail", [b"2026-01-01,classified,half", b"2026,x" + b"\0" * 500, b"\0" * 64]
)
def test_a_torn_last_line_is_truncated_at_start_up(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "audit.csv"
    log = AuditWriter(path, CLASSES)
    with log.batch():
        log.append({"status": "classified", "file_name": "whole.jpg"})
    log.close()
    whole = path.read_bytes()
    path.write_bytes(whole + tail)

    AuditWriter(path, CLASSES).close()

    assert path.read_bytes() == whole
    assert [row["file_name"] for row in iter_rows(path)] == ["whole.jpg"]


def test_a_torn_header_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "audit.csv"
    path.write_bytes(b"processed_at,sta\0\0\0")
    AuditWriter(path, CLASSES).close()
    assert _records(path) == [audit_columns(CLASSES)]


def test_a_log_with_other_classes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.csv"
    AuditWriter(path, CLASSES).close()
    with pytest.raises(DaemonError, match="new file"):
        AuditWriter(path, ("Bleeding", "Polyp"))
    assert os.path.getsize(path) > 0
