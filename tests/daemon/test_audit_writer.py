from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest

from gicls.audit.schema import audit_columns, decode_name, encode_name
from gicls.audit.segments import segment_paths
from gicls.daemon.audit_writer import AuditWriter
from gicls.errors import DaemonError
from tests.audit.v1_log import v1_columns, write_v1_log

CLASSES = ("Bleeding", "Normal")


def iter_rows(log: Path) -> list[dict[str, str]]:
    """Every row of every segment of ``log`` as a dict, read with the csv module alone."""
    rows: list[dict[str, str]] = []
    for path in segment_paths(log):
        if path.exists():
            with path.open(newline="", encoding="utf-8") as handle:
                rows.extend(csv.DictReader(handle))
    return rows


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


def _v1_rows() -> list[dict[str, str]]:
    return [
        {
            "processed_at": "2024-05-01T10:00:00.000+00:00",
            "status": "classified",
            "file_name": "old.jpg",
            "predicted_class": "Normal",
            "Bleeding": "0.1",
            "Normal": "0.9",
        },
    ]


def test_an_older_log_is_left_as_it_is_and_continued_in_a_new_segment(tmp_path: Path) -> None:
    path = tmp_path / "audit.csv"
    old = write_v1_log(path, CLASSES, _v1_rows())
    for name in ("first.jpg", "second.jpg"):  # the second start appends to the same segment
        log = AuditWriter(path, CLASSES)
        with log.batch():
            log.append({"status": "classified", "file_name": name, "precision": "float32"})
        log.close()

    assert path.read_bytes() == old
    assert log.path == tmp_path / "audit.v4.csv"
    records = _records(log.path)
    v4 = ["study", "source_path", "frames_scored", "duration_s", "outputs"]
    assert records[0] == [*v1_columns(CLASSES), "precision", "flags", *v4, "schema_version"]
    assert [(r[2], r[-8], r[-1]) for r in records[1:]] == [
        ("first.jpg", "float32", "4"),
        ("second.jpg", "float32", "4"),
    ]
    assert [row["file_name"] for row in iter_rows(path)] == ["old.jpg", "first.jpg", "second.jpg"]


def test_a_torn_last_line_of_the_older_log_is_truncated_before_the_new_segment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.csv"
    old = write_v1_log(path, CLASSES, _v1_rows())
    path.write_bytes(old + b"2024-05-01T11:00:00.000+00:00,classif" + b"\0" * 40)

    AuditWriter(path, CLASSES).close()

    assert path.read_bytes() == old
    assert _records(tmp_path / "audit.v4.csv") == [audit_columns(CLASSES)]


def test_an_older_log_with_other_classes_is_refused_and_nothing_is_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.csv"
    old = write_v1_log(path, ("Bleeding", "Polyp"), _v1_rows())

    with pytest.raises(
        DaemonError,
        match=r"does not match the configured classes: missing "
        r"column.s. 'Normal'; unexpected column.s. 'Polyp'.*new file",
    ):
        AuditWriter(path, CLASSES)

    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["audit.csv"]


@pytest.mark.parametrize("file_name", ["audit.csv", "audit.v4.csv"])
def test_a_log_of_a_newer_schema_version_is_refused(tmp_path: Path, file_name: str) -> None:
    v4 = ["study", "source_path", "frames_scored", "duration_s", "outputs"]
    future = [*v1_columns(CLASSES), "precision", "flags", *v4, "more", "schema_version"]
    row = ["2030-01-01T00:00:00+00:00", "classified", "x.jpg", *[""] * (len(future) - 4), "5"]
    (tmp_path / file_name).write_text(",".join(future) + "\r\n" + ",".join(row) + "\r\n")
    before = sorted(os.listdir(tmp_path))

    with pytest.raises(DaemonError, match="schema version 5; this gicls reads versions 1 to 4"):
        AuditWriter(tmp_path / "audit.csv", CLASSES)

    assert sorted(os.listdir(tmp_path)) == before


def test_an_older_log_that_cannot_be_written_is_still_continued(tmp_path: Path) -> None:
    """An archived log may be read-only; immutable (chattr +i) stops even root writing it."""
    path = tmp_path / "audit.csv"
    old = write_v1_log(path, CLASSES, _v1_rows())
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        log = AuditWriter(path, CLASSES)
        with log.batch():
            log.append({"status": "classified", "file_name": "new.jpg"})
        log.close()
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)

    assert path.read_bytes() == old
    assert [row["file_name"] for row in iter_rows(path)] == ["old.jpg", "new.jpg"]
