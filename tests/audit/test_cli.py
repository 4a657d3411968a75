"""gicls-audit on real audit logs and real output trees, built here the way the daemon writes them.

The site below has ten rows whose figures are computed by hand in the summary test: awkward
names (comma, newline, quotes, a formula, non-UTF-8 bytes, 250 bytes), a FIFO and a folder
quarantined as not_regular, and a duplicate row that moved nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from gicls.audit.cli import app
from gicls.audit.schema import audit_columns, encode_name

CLASSES = ("Bleeding", "Normal", "Polyp")
LONG_NAME = b"x" * 246 + b".jpg"

runner = CliRunner()


@dataclass
class Site:
    """A configuration, an output tree and the audit log describing it."""

    root: Path
    log_inside_output: bool = False
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def log(self) -> Path:
        return (self.output if self.log_inside_output else self.root) / "audit_log.csv"

    @property
    def config(self) -> Path:
        path = self.root / "config.toml"
        relative_log = self.log.relative_to(self.root)
        path.write_text(
            f"classes = {json.dumps(list(CLASSES))}\n[daemon]\n"
            f'output_dir = "output"\naudit_log = "{relative_log}"\n'
        )
        return path

    def add(
        self,
        at: str,
        status: str,
        name: bytes,
        folder: bytes | None,
        *,
        predicted: str = "",
        confidence: float | None = None,
        reason: str = "",
        bundle: str = "",
        latency: int = 100,
        content: bytes | None = None,
        duplicate_of: str = "",
    ) -> dict[str, str]:
        """Log one row and, when ``folder`` is given, place a regular file there."""
        sha = ""
        destination = b""
        if folder is not None:
            destination = folder + b"/" + name
            data = content if content is not None else b"image bytes of " + name
            target = os.path.join(os.fsencode(self.output), destination)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(data)
            sha = hashlib.sha256(data).hexdigest()
        return self.log_row(
            at,
            status,
            name,
            destination,
            sha,
            predicted,
            confidence,
            reason,
            bundle,
            latency,
            duplicate_of,
        )

    def log_row(
        self,
        at: str,
        status: str,
        name: bytes,
        destination: bytes,
        sha: str,
        predicted: str = "",
        confidence: float | None = None,
        reason: str = "",
        bundle: str = "",
        latency: int = 100,
        duplicate_of: str = "",
    ) -> dict[str, str]:
        file_text, file_hex = encode_name(name)
        destination_text, destination_hex = encode_name(destination) if destination else ("", "")
        scores = {c: "" for c in CLASSES}
        margin = ""
        if confidence is not None:
            rest = (1 - confidence) / (len(CLASSES) - 1)
            scores = {c: f"{confidence if c == predicted else rest:.6f}" for c in CLASSES}
            margin = f"{confidence - rest:.6f}"
        row = {
            "processed_at": f"2024-05-{at}:00+00:00",
            "status": status,
            "file_name": file_text,
            "sha256": sha,
            "bytes": "",
            "predicted_class": predicted,
            "confidence": "" if confidence is None else f"{confidence:.6f}",
            "margin": margin,
            **scores,
            "destination": destination_text,
            "reason": reason,
            "model_bundle": bundle,
            "batch_id": str(len(self.rows) // 4),
            "latency_ms": str(latency),
            "duplicate_of": duplicate_of,
            "file_name_hex": file_hex,
            "destination_hex": destination_hex,
            "precision": "" if confidence is None else "float32",
            "flags": "",
            "schema_version": "4",
        }
        self.rows.append(row)
        return row

    def write_log(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("w", newline="", encoding="utf-8") as handle:
            # csv's default CRLF line ends, as the daemon writes them (RFC 4180).
            writer = csv.DictWriter(handle, fieldnames=audit_columns(CLASSES))
            writer.writeheader()
            writer.writerows(self.rows)

    def run(self, *args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, [*args, "-c", str(self.config)])
        return result.exit_code, result.stdout, result.stderr


def build_site(root: Path, log_inside_output: bool = False) -> Site:
    site = Site(root, log_inside_output)
    site.add(
        "01T10:00",
        "classified",
        b"a,b.jpg",
        b"Bleeding",
        predicted="Bleeding",
        confidence=0.9,
        bundle="b1",
        latency=100,
    )
    site.add(
        "01T10:30",
        "classified",
        b"line\nbreak.jpg",
        b"Normal",
        predicted="Normal",
        confidence=0.8,
        bundle="b1",
        latency=200,
    )
    site.add(
        "01T11:00",
        "review",
        b'say "hi".jpg',
        b"_review",
        predicted="Polyp",
        confidence=0.5,
        reason="below_threshold",
        bundle="b1",
        latency=300,
    )
    site.add(
        "01T11:30",
        "classified",
        b"=cmd|x.jpg",
        b"Polyp",
        predicted="Polyp",
        confidence=0.6,
        bundle="b1",
        latency=400,
    )
    site.add(
        "02T09:00",
        "classified",
        b"caf\xe9.jpg",
        b"Bleeding",
        predicted="Bleeding",
        confidence=0.7,
        bundle="b2",
        latency=500,
    )
    site.add(
        "02T09:30",
        "quarantined",
        b"bad.jpg",
        b"_quarantine/truncated",
        reason="truncated",
        latency=50,
        content=b"\xff\xd8\xff",
    )
    fifo = site.output / "_quarantine" / "not_regular" / "pipe.jpg"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    site.log_row(
        "02T10:00",
        "quarantined",
        b"pipe.jpg",
        b"_quarantine/not_regular/pipe.jpg",
        "",
        reason="not_regular",
        latency=60,
    )
    original_sha = site.rows[0]["sha256"]
    site.log_row(
        "02T10:00",
        "duplicate",
        b"again.jpg",
        b"",
        original_sha,
        latency=70,
        duplicate_of=original_sha,
    )
    site.add(
        "02T12:00",
        "classified",
        LONG_NAME,
        b"Normal",
        predicted="Normal",
        confidence=0.95,
        bundle="b2",
        latency=600,
    )
    folder = site.output / "_quarantine" / "not_regular" / "folder.jpg"
    folder.mkdir()
    (folder / "inside.txt").write_text("a folder dropped into the inbox")
    site.log_row(
        "02T12:00",
        "quarantined",
        b"folder.jpg",
        b"_quarantine/not_regular/folder.jpg",
        "",
        reason="not_regular",
        latency=80,
    )
    site.write_log()
    return site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return build_site(tmp_path)


# verify ------------------------------------------------------------------------------------


@pytest.mark.parametrize("log_inside_output", [False, True])
def test_verify_passes_on_a_consistent_tree(tmp_path: Path, log_inside_output: bool) -> None:
    site = build_site(tmp_path, log_inside_output)

    code, out, _ = site.run("verify")

    assert code == 0, out
    # 9 entries: 7 regular files, the FIFO and the quarantined folder (the duplicate moved none).
    assert out.strip().splitlines() == [
        f"OK: 10 rows, 9 files under {site.output}: each file has exactly one row, 7 sha256 checked"
    ]


def test_verify_names_a_missing_destination(site: Site) -> None:
    (site.output / "Bleeding" / "a,b.jpg").unlink()

    code, out, _ = site.run("verify")

    assert code == 1
    assert "destination missing: 1: Bleeding/a,b.jpg" in out


def test_verify_names_a_file_whose_bytes_changed(site: Site) -> None:
    target = os.path.join(os.fsencode(site.output), b"Bleeding/caf\xe9.jpg")
    with open(target, "r+b") as handle:
        handle.write(b"X")

    code, out, _ = site.run("verify")

    assert code == 1
    assert "sha256 mismatch: 1: Bleeding/caf\\xe9.jpg" in out


def test_verify_names_a_file_without_a_row(site: Site) -> None:
    (site.output / "Normal" / "stray, unlogged.jpg").write_bytes(b"nobody logged me")

    code, out, _ = site.run("verify")

    assert code == 1
    assert "file without audit row: 1: Normal/stray, unlogged.jpg" in out


def test_verify_names_a_file_logged_twice(site: Site) -> None:
    site.rows.append(dict(site.rows[3]))
    site.write_log()

    code, out, _ = site.run("verify")

    assert code == 1
    assert "file with more than one audit row: 1: Polyp/=cmd|x.jpg (2 rows)" in out


def test_verify_lists_every_problem_with_counts(site: Site) -> None:
    (site.output / "Bleeding" / "a,b.jpg").unlink()
    for index in range(7):
        (site.output / "Polyp" / f"extra{index}.jpg").write_bytes(b"extra")
    site.log_row("02T13:00", "classified", b"gone.jpg", b"", "", predicted="Polyp", confidence=0.9)
    site.log_row(
        "02T13:00",
        "classified",
        b"evil.jpg",
        b"../evil.jpg",
        "0" * 64,
        predicted="Polyp",
        confidence=0.9,
    )
    site.write_log()

    code, out, _ = site.run("verify")

    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0].startswith("FAILED: 10 problem(s); 12 rows, 15 files under")
    assert "  destination missing: 1: Bleeding/a,b.jpg" in lines
    assert "  row without destination: 1: gone.jpg (line 12)" in lines
    assert "  destination outside output_dir: 1: ../evil.jpg (line 13)" in lines
    unlogged = next(line for line in lines if "file without audit row" in line)
    assert unlogged.startswith("  file without audit row: 7: Polyp/extra")
    assert unlogged.endswith(", ... and 2 more")


def test_verify_refuses_a_missing_output_folder(site: Site) -> None:
    os.rename(site.output, site.root / "elsewhere")

    code, _, err = site.run("verify")

    assert code == 1
    assert err == f"error: output folder {site.output} does not exist or is not a folder\n"


# summary -----------------------------------------------------------------------------------


def test_summary_json_matches_hand_computed_figures(site: Site) -> None:
    code, out, _ = site.run("summary", "--json")

    assert code == 0
    summary = json.loads(out)
    assert summary["rows"] == 10
    assert summary["first_at"] == "2024-05-01T10:00:00+00:00"
    assert summary["last_at"] == "2024-05-02T12:00:00+00:00"
    assert {k: v["rows"] for k, v in summary["status"].items()} == {
        "classified": 5,
        "review": 1,
        "quarantined": 3,
        "duplicate": 1,
    }
    assert summary["review_rate"] == pytest.approx(0.1)
    assert summary["quarantine_rate"] == pytest.approx(0.3)
    zero = {"classified": 0, "review": 0, "quarantined": 0, "duplicate": 0}
    assert summary["classes"] == {
        "Bleeding": {**zero, "classified": 2, "total": 2},
        "Normal": {**zero, "classified": 2, "total": 2},
        "Polyp": {**zero, "classified": 1, "review": 1, "total": 2},
        "(none)": {**zero, "quarantined": 3, "duplicate": 1, "total": 4},
    }
    assert summary["days"] == {
        "2024-05-01": {**zero, "classified": 3, "review": 1, "total": 4},
        "2024-05-02": {**zero, "classified": 2, "quarantined": 3, "duplicate": 1, "total": 6},
    }
    # Confidences of classified and review rows: 0.5 0.6 0.7 0.8 0.9 0.95 (linear interpolation).
    overall = summary["confidence_percentiles"]["all"]
    assert overall["rows"] == 6
    expected = {"p5": 0.525, "p25": 0.625, "p50": 0.75, "p75": 0.875, "p95": 0.9375}
    assert {k: overall[k] for k in expected} == pytest.approx(expected)
    assert summary["confidence_percentiles"]["Polyp"]["p50"] == pytest.approx(0.55)
    assert sorted((r["status"], r["reason"], r["rows"]) for r in summary["reasons"]) == [
        ("quarantined", "not_regular", 2),
        ("quarantined", "truncated", 1),
        ("review", "below_threshold", 1),
    ]
    assert summary["throughput"]["rows_per_hour"] == pytest.approx(10 / 26)
    assert summary["throughput"]["median_latency_ms"] == pytest.approx(150)
    assert summary["bundles"] == [
        {
            "model_bundle": "b1",
            "first_seen": "2024-05-01T10:00:00+00:00",
            "last_seen": "2024-05-01T11:30:00+00:00",
            "rows": 4,
        },
        {
            "model_bundle": "b2",
            "first_seen": "2024-05-02T09:00:00+00:00",
            "last_seen": "2024-05-02T12:00:00+00:00",
            "rows": 2,
        },
    ]


def test_summary_text_shows_the_tables(site: Site) -> None:
    code, out, _ = site.run("summary")

    assert code == 0
    assert (
        f"Audit log {site.log}: 10 rows from 2024-05-01 10:00:00 to 2024-05-02 12:00:00 UTC" in out
    )
    assert "Review rate 10.0%, quarantine rate 30.0%" in out
    assert "Throughput: 0.4 rows/hour from first to last row; median latency 150 ms" in out
    for title in (
        "Status",
        "Predicted class x status",
        "Per day (UTC)",
        "Model bundles",
        # From a fixed grid (bounded memory), and the title says how exact.
        "Confidence percentiles (classified and review rows; of the confidences rounded to "
        "0.0001, so each within 0.00005 of exact)",
    ):
        assert f"\n{title}\n" in out


@pytest.mark.parametrize(
    "command",
    [
        ("summary", "--json"),
        ("summary", "--by", "study", "--json"),
        ("verify",),
        ("tail", "-n", "5"),
    ],
)
def test_chunks_do_not_change_what_the_folding_commands_print(
    site: Site, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    whole = site.run(*command)
    # Three rows per chunk: every count, span and percentile is folded over several chunks,
    # and tail's last rows come from two of them.
    monkeypatch.setattr("gicls.audit.reader.CHUNK_ROWS", 3)

    assert site.run(*command) == whole


# tail --------------------------------------------------------------------------------------


def test_tail_shows_the_latest_rows_readably(site: Site) -> None:
    code, out, _ = site.run("tail", "-n", "3")

    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 4  # header + 3 rows, each on one line
    assert lines[0].split() == [
        "time",
        "(UTC)",
        "status",
        "file",
        "class",
        "confidence",
        "destination",
    ]
    assert "again.jpg" in lines[1] and "duplicate" in lines[1]
    assert LONG_NAME.decode() in lines[2] and "0.950" in lines[2]
    assert "_quarantine/not_regular/folder.jpg" in lines[3]


def test_tail_keeps_one_line_per_row_for_a_raw_newline(site: Site) -> None:
    site.rows[-1]["file_name"] = "hand\nedited.jpg"  # not how gicls writes, but readable anyway
    site.write_log()

    code, out, _ = site.run("tail", "-n", "1")

    assert code == 0
    assert "hand\\nedited.jpg" in out.strip().splitlines()[1]


# export ------------------------------------------------------------------------------------


def test_export_capsule_vision_csv_round_trips(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "submission.csv"

    code, stdout, _ = site.run("export", "--format", "capsule-vision", str(out))

    assert code == 0
    assert stdout == f"wrote 6 rows to {out}\n"
    table = pd.read_csv(
        out, dtype={"image_path": str, "predicted_class": str}, keep_default_na=False
    )
    assert list(table.columns) == ["image_path", *CLASSES, "predicted_class"]
    scored = [row for row in site.rows if row["status"] in ("classified", "review")]
    assert table["image_path"].tolist() == [row["file_name"] for row in scored]
    assert table["predicted_class"].tolist() == [row["predicted_class"] for row in scored]
    for name in CLASSES:
        assert table[name].tolist() == pytest.approx([float(row[name]) for row in scored])


def test_export_capsule_vision_xlsx_is_accepted_by_the_scorer(site: Site, tmp_path: Path) -> None:
    from gicls.training.score import load_predictions

    out = tmp_path / "submission.xlsx"

    code, _, _ = site.run("export", "-f", "capsule-vision", str(out))

    assert code == 0
    predictions = load_predictions(out, CLASSES)
    assert len(predictions) == 6
    assert predictions.loc["a,b.jpg", "Bleeding"] == pytest.approx(0.9)
    sheet = openpyxl.load_workbook(out).active
    formula_cell = next(c for c in sheet["A"] if c.value == "'=cmd|x.jpg")
    assert formula_cell.data_type == "s"


def test_export_csv_is_the_log(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "log copy.csv"

    code, _, _ = site.run("export", str(out))

    assert code == 0
    assert out.read_bytes() == site.log.read_bytes()


def test_export_xlsx_keeps_formula_like_text_as_text(site: Site, tmp_path: Path) -> None:
    # gicls neutralises such cells itself; a log from elsewhere may not.
    site.rows[5]["reason"] = "=1+2"
    site.write_log()
    out = tmp_path / "log.xlsx"

    code, _, _ = site.run("export", "--format", "xlsx", str(out))

    assert code == 0
    sheet = openpyxl.load_workbook(out).active
    header = [cell.value for cell in sheet[1]]
    assert header == audit_columns(CLASSES)
    row = {name: cell for name, cell in zip(header, sheet[7], strict=True)}
    assert (row["reason"].value, row["reason"].data_type) == ("=1+2", "s")
    assert row["latency_ms"].value == 50 and row["latency_ms"].data_type == "n"
    first = {name: cell.value for name, cell in zip(header, sheet[2], strict=True)}
    assert first["Bleeding"] == pytest.approx(0.9)
    assert first["file_name"] == "a,b.jpg"
    assert sheet.max_row == 11


@pytest.mark.parametrize(
    ("arguments", "name"),
    [((), "log.csv"), (("-f", "xlsx"), "log.xlsx"), (("-f", "capsule-vision"), "s.xlsx")],
)
def test_exports_written_a_chunk_at_a_time_are_the_whole_log_s(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: tuple, name: str
) -> None:
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    whole.mkdir(), chunked.mkdir()
    assert site.run("export", *arguments, str(whole / name))[0] == 0
    # Three rows per chunk: the header is written once and every chunk's rows follow in order.
    monkeypatch.setattr("gicls.audit.reader.CHUNK_ROWS", 3)

    code, stdout, _ = site.run("export", *arguments, str(chunked / name))

    assert code == 0 and stdout == f"wrote {_rows_in(whole / name)} rows to {chunked / name}\n"
    assert _rows_in(chunked / name) > 3
    if name.endswith(".csv"):
        assert (chunked / name).read_bytes() == (whole / name).read_bytes()
    else:
        assert _cells(chunked / name) == _cells(whole / name)


def _rows_in(path: Path) -> int:
    return len(_cells(path)) - 1 if path.suffix == ".xlsx" else len(pd.read_csv(path))


def _cells(path: Path) -> list[tuple]:
    sheet = openpyxl.load_workbook(path).active
    return [tuple((cell.value, cell.data_type) for cell in row) for row in sheet.iter_rows()]


def test_export_refuses_a_missing_folder_and_leaves_nothing(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "no such folder" / "x.csv"

    code, _, err = site.run("export", str(out))

    assert code == 1
    assert err == f"error: cannot write {out}: folder {out.parent} does not exist\n"
    assert not out.parent.exists()


def test_export_capsule_vision_needs_scored_rows(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.add("01T10:00", "quarantined", b"bad.jpg", b"_quarantine/truncated", reason="truncated")
    site.write_log()

    code, _, err = site.run("export", "-f", "capsule-vision", str(tmp_path / "s.csv"))

    assert code == 1
    assert err == f"error: audit log {site.log} has no classified or review rows to export\n"


def test_summary_counts_each_flagged_class(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for at, flags in (("01T10:00", "Bleeding;Polyp"), ("01T10:30", "Polyp"), ("01T11:00", "")):
        site.add(at, "classified", f"{at}.jpg".encode(), b"Normal", predicted="Normal")
        site.rows[-1]["flags"] = flags
    site.write_log()

    code, out, _ = site.run("summary", "--json")
    assert code == 0, out
    assert json.loads(out)["flags"] == {"Bleeding": 1, "Normal": 0, "Polyp": 2}
    code, out, _ = site.run("summary")
    assert "\nFlags (rows at or above a class's bundle threshold)\n" in out
