"""The ``outputs`` cell and manifests: round trips, odd names, and verify checking them."""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path

import pytest

from gicls.audit.outputs import (
    OutputEntry,
    decode_outputs,
    encode_outputs,
    study_manifest_path,
    write_manifest,
)
from gicls.audit.reader import open_audit_log
from gicls.audit.schema import audit_columns
from gicls.audit.verify import BAD_OUTPUTS, CHANGED, MISSING, NO_ROW, verify_output
from gicls.errors import AuditError

CLASSES = ("Bleeding", "Normal")
SHA = "ab" * 32


@pytest.mark.parametrize(
    "path",
    [
        "study/Bleeding/cap_f0000012_t000000.40s.jpg",
        "semi;colon|pipe%/x.jpg",
        "=HYPERLINK(1)/x.jpg",
        "new\nline/é.jpg",
        os.fsdecode(b"bad\xffbytes/x.parquet"),
        "'quote/x.jpg",
    ],
)
def test_an_entry_round_trips_and_stays_one_safe_cell(path: str) -> None:
    entries = [OutputEntry(path, SHA), OutputEntry("s/report.html", "cd" * 32)]
    cell = encode_outputs(entries)
    assert "\n" not in cell and not cell.startswith(("=", "+", "-", "@"))
    assert cell.count(";") == 1 and cell.count("|") == 2
    assert decode_outputs(cell) == entries


def test_an_empty_cell_has_no_entries() -> None:
    assert encode_outputs([]) == ""
    assert decode_outputs("") == []


@pytest.mark.parametrize("cell", ["no-hash", "a.jpg|short", "|" + SHA])
def test_a_cell_that_is_not_entries_is_refused(cell: str) -> None:
    with pytest.raises(AuditError, match=r"path\|sha256"):
        decode_outputs(cell)


def _log(path: Path, rows: list[dict[str, str]]) -> None:
    columns = audit_columns(CLASSES)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        cells = {"processed_at": "2026-12-01T10:00:00.000+00:00", "schema_version": "4", **row}
        writer.writerow([cells.get(c, "") for c in columns])
    path.write_text(buffer.getvalue())


def _file(output: Path, relative: str, data: bytes) -> OutputEntry:
    path = output / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return OutputEntry(relative, hashlib.sha256(data).hexdigest())


def test_verify_checks_outputs_of_rows_manifests_and_study_reports(tmp_path: Path) -> None:
    output = tmp_path / "output"
    video = _file(output, "s1/_videos/cap.mp4", b"video")
    key = _file(output, "s1/Bleeding/cap_f0000001_t000000.04s.jpg", b"key")
    table = _file(output, "s1/_frames/cap.parquet", b"table")
    inner = write_manifest(output, "s1/_frames/cap.manifest.json", [table])
    report = _file(output, "s1/report.html", b"<html>")
    write_manifest(output, study_manifest_path("s1"), [report])
    index = _file(output, "index.html", b"<html>index")
    write_manifest(output, "_manifest.json", [index])
    _log(
        tmp_path / "audit.csv",
        [
            {
                "status": "classified",
                "file_name": "cap.mp4",
                "sha256": video.sha256,
                "destination": video.path,
                "study": "s1",
                "source_path": "s1/cap.mp4",
                "outputs": encode_outputs([key, inner]),
            }
        ],
    )
    log = open_audit_log(tmp_path / "audit.csv", CLASSES)

    result = verify_output(log, output, ())
    assert result.ok, result.report()
    # key frame, Parquet, its manifest, report, study manifest, index, root manifest
    assert result.outputs == 7
    (output / key.path).write_bytes(b"changed")
    (output / report.path).unlink()
    (output / "s1" / "stray.jpg").write_bytes(b"?")

    result = verify_output(log, output, ())
    assert result.problems == {
        CHANGED: [key.path],
        MISSING: ["s1/report.html"],
        NO_ROW: ["s1/stray.jpg"],
    }


def test_a_manifest_that_is_not_one_is_reported(tmp_path: Path) -> None:
    output = tmp_path / "output"
    _file(output, "s1/_manifest.json", b"not json")
    frame = _file(output, "s1/Normal/f.jpg", b"f")
    _log(
        tmp_path / "audit.csv",
        [
            {
                "status": "classified",
                "sha256": frame.sha256,
                "destination": frame.path,
                "study": "s1",
            }
        ],
    )

    result = verify_output(open_audit_log(tmp_path / "audit.csv", CLASSES), output, ())

    assert list(result.problems) == [BAD_OUTPUTS]
