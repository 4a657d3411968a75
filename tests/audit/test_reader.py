"""Reading the audit log: one clear line for every log gicls-audit cannot use, and torn tails."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gicls.audit.cli import app
from gicls.audit.reader import open_audit_log, read_audit_log
from gicls.audit.schema import audit_columns
from gicls.errors import AuditError

CLASSES = ("Bleeding", "Normal", "Polyp")
runner = CliRunner()


def row(
    at: str = "2024-05-01T10:00:00.000+00:00", status: str = "classified", **cells: str
) -> list[str]:
    values = {
        "processed_at": at,
        "status": status,
        "file_name": "a.jpg",
        "predicted_class": "Bleeding",
        "confidence": "0.9",
        "Bleeding": "0.9",
        "Normal": "0.05",
        "Polyp": "0.05",
        "destination": "Bleeding/a.jpg",
        "latency_ms": "12",
        "precision": "float32",
        "schema_version": "4",
        **cells,
    }
    return [values.get(column, "") for column in audit_columns(CLASSES)]


def csv_text(*records: list[str], header: list[str] | None = None) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header or audit_columns(CLASSES), *records])
    return buffer.getvalue()


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    config = tmp_path / "config.toml"
    config.write_text(f"classes = {json.dumps(list(CLASSES))}\n")
    result = runner.invoke(app, [*args, "-c", str(config)])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "audit log {log} does not exist (no file processed yet? --log PATH reads another)"),
        (b"", "audit log {log} is empty (not even a header line)"),
        (csv_text().encode(), "audit log {log} has a header but no rows yet"),
        (
            csv_text(row(), header=audit_columns(("Bleeding", "Normal", "Ulcer"))).encode(),
            "audit log {log} does not match the configured classes: missing column(s) "
            "'Polyp'; unexpected column(s) 'Ulcer'",
        ),
        (
            csv_text(row(), header=audit_columns(("Normal", "Bleeding", "Polyp"))).encode(),
            "audit log {log} does not match the configured classes: class columns in another "
            "order: log 'Normal', 'Bleeding', 'Polyp', configuration 'Bleeding', 'Normal', "
            "'Polyp'",
        ),
        (
            (csv_text(row()) + "2024-05-01T11:00:00+00:00,classified,b.jpg\r\n").encode(),
            "audit log {log}: 1 row(s) do not have the header's 27 fields, on line(s) 3 (3 fields)",
        ),
        (
            csv_text(row(), row(status="lost"), row(status="")).encode(),
            "audit log {log}: status is not one of classified, review, quarantined, duplicate "
            "on line(s) 3, 4",
        ),
        (
            csv_text(row(), row(at="yesterday")).encode(),
            "audit log {log}: processed_at is not an ISO 8601 time on line(s) 3",
        ),
        (
            csv_text(row(Normal="high")).encode(),
            "audit log {log}: 'Normal' is not a number on line(s) 2",
        ),
        (
            csv_text(row()).encode() + b"caf\xe9\r\n",
            "audit log {log} is not UTF-8 text (line 3)",
        ),
    ],
    ids=[
        "missing",
        "empty",
        "header-only",
        "other-classes",
        "reordered",
        "short-row",
        "bad-status",
        "bad-time",
        "bad-number",
        "not-utf8",
    ],
)
@pytest.mark.parametrize("command", [["summary"], ["verify"], ["tail"], ["export", "x.csv"]])
def test_unusable_logs_give_one_line_and_exit_1(
    tmp_path: Path, content: bytes | None, message: str, command: list[str]
) -> None:
    log = tmp_path / "audit_log.csv"
    if content is not None:
        log.write_bytes(content)

    code, out, err = run(tmp_path, *command)

    assert (code, out) == (1, "")
    assert err == f"error: {message.format(log=log)}\n"


def test_log_option_reads_another_log(tmp_path: Path) -> None:
    other = tmp_path / "archive" / "2023.csv"
    other.parent.mkdir()
    other.write_text(csv_text(row(), row(status="review")), encoding="utf-8")

    code, out, _ = run(tmp_path, "summary", "--json", "--log", str(other))

    assert code == 0
    summary = json.loads(out)
    assert summary["log"] == str(other)
    assert summary["status"]["review"]["rows"] == 1


@pytest.mark.parametrize(
    "tail", [b"2024-05-01T11:00:00+00:00,classif", b"2024-05-01T11:00", b"\0\0\0"]
)
def test_a_torn_or_unfinished_last_line_is_left_out(tmp_path: Path, tail: bytes) -> None:
    log = tmp_path / "audit_log.csv"
    log.write_bytes(csv_text(row(), row(status="review")).encode() + tail)

    audit = read_audit_log(log, CLASSES)

    assert audit.text["status"].tolist() == ["classified", "review"]
    assert audit.incomplete_tail == (tail != b"\0\0\0")
    assert audit.line_numbers == (2, 3)


def test_odd_names_are_read_as_written(tmp_path: Path) -> None:
    names = ["a,b.jpg", 'say "hi".jpg', "'=cmd|x.jpg", "line\\nbreak.jpg", "NA", "null", "", "#1"]
    log = tmp_path / "audit_log.csv"
    log.write_text(csv_text(*(row(file_name=name) for name in names)), encoding="utf-8")

    audit = read_audit_log(log, CLASSES)

    assert audit.text["file_name"].tolist() == names
    assert audit.table["confidence"].tolist() == [0.9] * len(names)
    assert str(audit.table["processed_at"].dt.tz) == "UTC"


def test_quoted_newline_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    log = tmp_path / "audit_log.csv"
    log.write_text(csv_text(row(file_name="two\nlines.jpg"), row(status="odd")), encoding="utf-8")

    with pytest.raises(AuditError, match=r"on line\(s\) 4$"):
        read_audit_log(log, CLASSES)


def test_a_bad_cell_is_named_by_its_line_in_a_later_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two rows per chunk: the bad cell sits in the third chunk, after a row spanning two lines.
    monkeypatch.setattr("gicls.audit.reader.CHUNK_ROWS", 2)
    log = tmp_path / "audit_log.csv"
    records = [row(file_name="two\nlines.jpg"), *(row() for _ in range(3)), row(confidence="x")]
    log.write_text(csv_text(*records), encoding="utf-8")

    with pytest.raises(AuditError, match=r"'confidence' is not a number on line\(s\) 7$"):
        read_audit_log(log, CLASSES)


def test_chunks_are_read_as_one_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gicls.audit.reader.CHUNK_ROWS", 2)
    log = tmp_path / "audit_log.csv"
    names = [f"{k}.jpg" for k in range(5)]
    log.write_text(csv_text(*(row(file_name=name) for name in names)), encoding="utf-8")

    audit = read_audit_log(log, CLASSES)

    assert audit.text["file_name"].tolist() == names
    assert audit.text.index.tolist() == list(range(5))
    assert audit.line_numbers == (2, 3, 4, 5, 6)


def test_the_columns_asked_for_are_kept_and_every_cell_is_still_checked(tmp_path: Path) -> None:
    log = tmp_path / "audit_log.csv"
    log.write_text(csv_text(row(), row(status="review")), encoding="utf-8")

    audit = read_audit_log(log, CLASSES, ["status", "confidence"])

    assert list(audit.text.columns) == list(audit.table.columns) == ["status", "confidence"]
    assert audit.table["confidence"].tolist() == [0.9, 0.9]
    log.write_text(csv_text(row(), row(Polyp="high")), encoding="utf-8")
    with pytest.raises(AuditError, match=r"'Polyp' is not a number on line\(s\) 3$"):
        read_audit_log(log, CLASSES, ["status"])
    with pytest.raises(ValueError, match="not audit-log columns: colour"):
        read_audit_log(log, CLASSES, ["status", "colour"])


def test_a_row_filter_types_and_checks_only_the_rows_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report reads one study's rows of a long log: the filter sees every row as text, the
    rows it drops are neither typed nor checked, and a kept row's bad cell is still refused
    with its own line."""
    monkeypatch.setattr("gicls.audit.reader.CHUNK_ROWS", 2)
    log = tmp_path / "audit_log.csv"
    records = [
        row(study="A", file_name="two\nlines.jpg"),
        row(study="B", confidence="not checked"),
        row(study="A", confidence="0.5"),
        row(study="B"),
        row(study="A", confidence="0.7"),
    ]
    log.write_text(csv_text(*records), encoding="utf-8")
    seen: list[str] = []

    def study_a(text):
        seen.extend(text["study"])
        return text["study"] == "A"

    chunks = list(open_audit_log(log, CLASSES).chunks(["file_name", "confidence"], study_a))

    assert seen == ["A", "B", "A", "B", "A"]
    assert [len(chunk.table) for chunk in chunks] == [1, 1, 1]
    assert [line for chunk in chunks for line in chunk.line_numbers] == [3, 5, 7]
    assert [c for chunk in chunks for c in chunk.table["confidence"]] == [0.9, 0.5, 0.7]
    log.write_text(csv_text(*records, row(study="A", confidence="bad")), encoding="utf-8")
    with pytest.raises(AuditError, match=r"'confidence' is not a number on line\(s\) 8$"):
        list(open_audit_log(log, CLASSES).chunks(rows=study_a))
