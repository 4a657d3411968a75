"""Logs of every schema version are read alike, and a log started by an older gicls is continued
in a new segment that every gicls-audit command reads together with the old file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gicls.audit.cli import app
from gicls.audit.reader import read_audit_log
from tests.audit.v1_log import v1_columns, write_v1_log
from tests.daemon import harness

CLASSES = harness.CLASSES
runner = CliRunner()


def _v1_row(name: str, status: str = "classified", **cells: str) -> dict[str, str]:
    return {
        "processed_at": "2024-05-01T10:00:00.000+00:00",
        "status": status,
        "file_name": name,
        "predicted_class": "Normal",
        "confidence": "0.8",
        "Bleeding": "0.1",
        "Normal": "0.8",
        "Polyp": "0.1",
        "destination": f"Normal/{name}",
        **cells,
    }


def _audit(config: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "-c", str(config)])
    return result.exit_code, result.stdout, result.stderr


def _config(root: Path) -> Path:
    config = root / "config.toml"
    config.write_text(f"classes = {json.dumps(list(CLASSES))}\n")
    return config


def test_a_version_1_log_reads_with_empty_new_columns(tmp_path: Path) -> None:
    write_v1_log(tmp_path / "audit_log.csv", CLASSES, [_v1_row("a.jpg"), _v1_row("b.jpg")])

    audit = read_audit_log(tmp_path / "audit_log.csv", CLASSES)

    assert audit.text["file_name"].tolist() == ["a.jpg", "b.jpg"]
    assert audit.text["precision"].tolist() == ["", ""]
    assert audit.text["schema_version"].tolist() == ["1", "1"]
    assert audit.table["Normal"].tolist() == [0.8, 0.8]


def test_segments_are_read_in_order_and_named_in_messages(tmp_path: Path) -> None:
    write_v1_log(tmp_path / "audit_log.csv", CLASSES, [_v1_row("a.jpg")])
    columns = [*v1_columns(CLASSES), "precision", "schema_version"]
    newer = {**_v1_row("b.jpg"), "precision": "float32", "schema_version": "2"}
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(
        [
            columns,
            [newer.get(c, "") for c in columns],
            [{**newer, "status": "lost"}.get(c, "") for c in columns],
        ]
    )
    segment = tmp_path / "audit_log.v2.csv"
    segment.write_text(buffer.getvalue())

    code, _, err = _audit(_config(tmp_path), "summary")

    assert code == 1
    assert err == (
        f"error: audit log {segment}: status is not one of classified, review, quarantined, "
        "duplicate on line(s) 3\n"
    )
    segment.write_text(buffer.getvalue().rsplit("\r\n", 2)[0] + "\r\n")  # drop the bad row
    audit = read_audit_log(tmp_path / "audit_log.csv", CLASSES)
    assert audit.text["file_name"].tolist() == ["a.jpg", "b.jpg"]
    assert audit.text["precision"].tolist() == ["", "float32"]
    assert [audit.where(row) for row in range(2)] == [
        "audit_log.csv line 2",
        "audit_log.v2.csv line 2",
    ]


def test_a_row_claiming_another_version_is_refused(tmp_path: Path) -> None:
    columns = [*v1_columns(CLASSES), "precision", "schema_version"]
    rows = [{**_v1_row("a.jpg"), "schema_version": version} for version in ("2", "3", "")]
    log = tmp_path / "audit_log.csv"
    with log.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    code, _, err = _audit(_config(tmp_path), "tail")

    assert code == 1
    assert err == f"error: audit log {log}: schema_version is not 2 on line(s) 3, 4\n"


@pytest.mark.parametrize("command", [["summary"], ["verify"], ["tail"], ["export", "x.csv"]])
def test_a_log_of_a_newer_schema_version_is_refused_clearly(
    tmp_path: Path, command: list[str]
) -> None:
    v4 = ["study", "source_path", "frames_scored", "duration_s", "outputs"]
    future = [*v1_columns(CLASSES), "precision", "flags", *v4, "more", "schema_version"]
    log = tmp_path / "audit_log.csv"
    log.write_text(",".join(future) + "\r\n" + ",".join([*[""] * (len(future) - 1), "5"]) + "\r\n")

    code, out, err = _audit(_config(tmp_path), *command)

    assert (code, out) == (1, "")
    assert err == (
        f"error: audit log {log} was written with schema version 5; this gicls reads versions "
        "1 to 4: upgrade gicls to read it\n"
    )


@pytest.mark.slow
def test_the_daemon_continues_a_version_1_log_and_gicls_audit_reads_both(
    tmp_path: Path, make_bundle
) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    old_image = harness.png(1)
    (site.output / "Normal").mkdir(parents=True)
    (site.output / "Normal" / "old.png").write_bytes(old_image)
    old_sha = hashlib.sha256(old_image).hexdigest()
    old_bytes = write_v1_log(
        site.audit_log, CLASSES, [_v1_row("old.png", sha256=old_sha, model_bundle="b0")]
    )
    (site.inbox / "new.png").write_bytes(harness.png(2))
    (site.inbox / "again.png").write_bytes(old_image)  # known from the old log only

    daemon = harness.DaemonProcess(site.config, "--once")
    assert daemon.wait() == 0, daemon.output()

    assert daemon.logged("audit_log_segment_started")
    assert site.audit_log.read_bytes() == old_bytes
    segment = site.root / "audit_log.v4.csv"
    with segment.open(newline="") as handle:
        new_rows = sorted(csv.DictReader(handle), key=lambda row: row["file_name"])
    assert [row["file_name"] for row in new_rows] == ["again.png", "new.png"]
    assert [row["precision"] for row in new_rows] == ["float32", "float32"]
    assert [row["schema_version"] for row in new_rows] == ["4", "4"]
    # The start-up scan read the old segment: the same bytes are recognised.
    assert new_rows[0]["duplicate_of"] == "Normal/old.png"

    code, out, _ = _audit(site.config, "summary", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["rows"] == 3
    assert summary["log"] == f"{site.audit_log} + {segment}"
    code, out, _ = _audit(site.config, "verify")
    assert (code, out.split(":")[0]) == (0, "OK"), out
    assert out.startswith("OK: 3 rows, 3 files under")
    exported = tmp_path / "export.csv"
    code, _, _ = _audit(site.config, "export", str(exported))
    assert code == 0
    table = pd.read_csv(exported, dtype=str, keep_default_na=False)
    assert table["file_name"].tolist()[0] == "old.png"
    assert sorted(table["file_name"].tolist()[1:]) == ["again.png", "new.png"]
    assert table["precision"].tolist() == ["", "float32", "float32"]
    assert table["schema_version"].tolist() == ["1", "4", "4"]


def _v2_log(path: Path, rows: list[dict[str, str]]) -> bytes:
    """A version 2 log as the release before ``flags`` wrote it."""
    columns = [*v1_columns(CLASSES), "precision", "schema_version"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        cells = {**row, "precision": "float32", "schema_version": "2"}
        writer.writerow([cells.get(c, "") for c in columns])
    path.write_bytes(buffer.getvalue().encode())
    return path.read_bytes()


def test_a_version_2_log_reads_with_empty_flags(tmp_path: Path) -> None:
    _v2_log(tmp_path / "audit_log.csv", [_v1_row("a.jpg")])

    audit = read_audit_log(tmp_path / "audit_log.csv", CLASSES)

    assert audit.text["flags"].tolist() == [""]
    assert audit.text["schema_version"].tolist() == ["2"]


@pytest.mark.slow
def test_the_daemon_continues_a_version_2_log_in_a_version_4_segment(
    tmp_path: Path, make_bundle
) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    (site.output / "Normal").mkdir(parents=True)
    (site.output / "Normal" / "old.png").write_bytes(harness.png(1))
    old_row = _v1_row("old.png", sha256=hashlib.sha256(harness.png(1)).hexdigest())
    old_bytes = _v2_log(site.audit_log, [old_row])
    (site.inbox / "new.png").write_bytes(harness.png(2))

    daemon = harness.DaemonProcess(site.config, "--once")
    assert daemon.wait() == 0, daemon.output()

    assert site.audit_log.read_bytes() == old_bytes
    segment = site.root / "audit_log.v4.csv"
    rows = harness.read_audit(segment)
    assert [(row["file_name"], row["schema_version"]) for row in rows] == [("new.png", "4")]
    assert rows[0]["flags"] == ""  # a bundle without thresholds flags nothing
    audit = read_audit_log(site.audit_log, CLASSES)
    assert audit.text["file_name"].tolist() == ["old.png", "new.png"]
    assert audit.text["schema_version"].tolist() == ["2", "4"]


def _v3_log(path: Path, rows: list[dict[str, str]]) -> bytes:
    """A version 3 log as the release before studies wrote it."""
    columns = [*v1_columns(CLASSES), "precision", "flags", "schema_version"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        cells = {**row, "precision": "float32", "flags": "Bleeding", "schema_version": "3"}
        writer.writerow([cells.get(c, "") for c in columns])
    path.write_bytes(buffer.getvalue().encode())
    return path.read_bytes()


def test_a_version_3_log_reads_with_empty_study_columns(tmp_path: Path) -> None:
    _v3_log(tmp_path / "audit_log.csv", [_v1_row("a.jpg")])

    audit = read_audit_log(tmp_path / "audit_log.csv", CLASSES)

    for column in ("study", "source_path", "outputs", "frames_scored", "duration_s"):
        assert audit.text[column].tolist() == [""], column
    assert audit.table["frames_scored"].isna().all()
    assert audit.text["flags"].tolist() == ["Bleeding"]
    assert audit.text["schema_version"].tolist() == ["3"]


@pytest.mark.slow
def test_the_daemon_continues_a_version_3_log_in_a_version_4_segment(
    tmp_path: Path, make_bundle
) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    (site.output / "Normal").mkdir(parents=True)
    (site.output / "Normal" / "old.png").write_bytes(harness.png(1))
    old_row = _v1_row("old.png", sha256=hashlib.sha256(harness.png(1)).hexdigest())
    old_bytes = _v3_log(site.audit_log, [old_row])
    (site.inbox / "new.png").write_bytes(harness.png(2))
    (site.inbox / "study1").mkdir()
    (site.inbox / "study1" / "frame.png").write_bytes(harness.png(3))

    daemon = harness.DaemonProcess(site.config, "--once")
    assert daemon.wait() == 0, daemon.output()

    assert site.audit_log.read_bytes() == old_bytes
    rows = harness.read_audit(site.root / "audit_log.v4.csv")
    assert sorted((r["source_path"], r["study"], r["schema_version"]) for r in rows) == [
        ("new.png", "", "4"),
        ("study1/frame.png", "study1", "4"),
    ]
    audit = read_audit_log(site.audit_log, CLASSES)
    assert audit.text["source_path"].tolist()[0] == ""
    assert audit.text["schema_version"].tolist() == ["3", "4", "4"]
