"""Publishing study reports from one pass over the log: each study's index line is kept beside
its report, and the index is assembled from those lines, rebuilt only where a line is missing or
behind the log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gicls.audit import study_outputs
from gicls.audit.outputs import parse_manifest, study_manifest_path
from gicls.audit.reader import open_audit_log
from gicls.audit.study_index import SUMMARY_NAME, read_summary
from gicls.audit.study_outputs import (
    in_passes,
    publish_every_study,
    publish_study,
    read_studies,
    study_row_counts,
)
from gicls.audit.verify import verify_output
from tests.audit.study_data import CLASSES, Frame, bundle_summary, write_study

A_FRAMES = [Frame("a1.jpg", (0.9, 0.05, 0.05)), Frame("a2.jpg", (0.1, 0.8, 0.1))]
B_FRAMES = [
    Frame("b1.jpg", (0.1, 0.1, 0.8)),
    Frame("b2.jpg", (0.2, 0.7, 0.1)),
    Frame("b3.jpg", (0.0, 0.0, 0.0), status="quarantined", reason="truncated"),
]


def _site(output: Path) -> Path:
    write_study(output, "A", A_FRAMES)
    write_study(output, "B", B_FRAMES)
    return output / "audit_log.csv"


def _publish(output: Path, log: Path, studies: list[str]) -> None:
    publish_study(output, open_audit_log(log, CLASSES), studies, bundle_summary())


def _index_text(output: Path) -> str:
    return (output / "index.html").read_text(encoding="utf-8")


def _verified(output: Path, log: Path) -> None:
    result = verify_output(open_audit_log(log, CLASSES), output, (log,))
    assert result.ok, result.report()


def test_study_rows_and_counts_come_from_one_pass_over_the_log(tmp_path: Path) -> None:
    log = _site(tmp_path)
    write_study(tmp_path, "", [Frame("loose.jpg", (0.3, 0.6, 0.1))])  # a loose file: no study
    source = open_audit_log(log, CLASSES)

    assert study_row_counts(source) == {"A": 2, "B": 3}
    counts, rows_of = read_studies(source, ["B", "nope"])
    assert counts == {"A": 2, "B": 3} and list(rows_of) == ["B"]
    assert list(rows_of["B"]["file_name"]) == ["b1.jpg", "b2.jpg", "b3.jpg"]
    assert rows_of["B"]["confidence"].dtype == float  # typed, as the report needs them


def test_each_study_keeps_its_index_line_beside_its_report(tmp_path: Path) -> None:
    log = _site(tmp_path)

    _publish(tmp_path, log, ["A", "B"])

    kept = read_summary(tmp_path, "B")
    assert kept is not None and (kept.files, kept.frames, kept.quarantined) == (3, 2, 1)
    manifest = parse_manifest((tmp_path / study_manifest_path("B")).read_bytes(), "B")
    assert sorted(entry.path for entry in manifest) == ["B/_summary.json", "B/report.html"]
    assert "A/report.html" in _index_text(tmp_path) and "B/report.html" in _index_text(tmp_path)
    _verified(tmp_path, log)


def test_publishing_one_study_lists_the_others_from_their_kept_lines(tmp_path: Path) -> None:
    log = _site(tmp_path)
    _publish(tmp_path, log, ["A", "B"])
    # Mark B's kept line: if the index shows the mark, it was read, not rebuilt from B's rows.
    path = tmp_path / "B" / SUMMARY_NAME
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "last_processed_at": "MARKED"}))

    _publish(tmp_path, log, ["A"])

    assert "MARKED" in _index_text(tmp_path)


def test_a_line_behind_the_log_or_missing_is_rebuilt_from_its_study_s_rows(
    tmp_path: Path,
) -> None:
    log = _site(tmp_path)
    _publish(tmp_path, log, ["A", "B"])
    write_study(tmp_path, "B", [Frame("b4.jpg", (0.8, 0.1, 0.1))])  # a late row of B
    (tmp_path / "A" / SUMMARY_NAME).unlink()  # as on a site from before kept lines

    _publish(tmp_path, log, [])

    rebuilt_b, rebuilt_a = read_summary(tmp_path, "B"), read_summary(tmp_path, "A")
    assert rebuilt_b is not None and rebuilt_b.files == 4
    assert rebuilt_a is not None and rebuilt_a.files == 2
    # The rebuilt line joins the manifest beside the report the study already had.
    manifest = parse_manifest((tmp_path / study_manifest_path("A")).read_bytes(), "A")
    assert sorted(entry.path for entry in manifest) == ["A/_summary.json", "A/report.html"]
    _verified(tmp_path, log)


def test_a_kept_line_that_is_not_one_is_rebuilt(tmp_path: Path) -> None:
    log = _site(tmp_path)
    _publish(tmp_path, log, ["A", "B"])
    (tmp_path / "B" / SUMMARY_NAME).write_text('{"study": "B", "files": "many"')

    _publish(tmp_path, log, ["A"])

    kept = read_summary(tmp_path, "B")
    assert kept is not None and kept.files == 3
    _verified(tmp_path, log)


C_FRAMES = [Frame("c1.jpg", (0.7, 0.2, 0.1)), Frame("c2.jpg", (0.3, 0.3, 0.4))]


def test_studies_are_grouped_into_passes_of_bounded_rows(monkeypatch) -> None:
    monkeypatch.setattr(study_outputs, "ROWS_PER_PASS", 4)
    counts = {"A": 2, "B": 3, "C": 2, "D": 9, "E": 1}
    # A+B would be 5 rows: B starts a pass; D is larger than a pass and is read alone.
    assert in_passes(counts, list(counts)) == [["A"], ["B"], ["C"], ["D"], ["E"]]
    assert in_passes(counts, ["A", "C", "E", "D"]) == [["A", "C"], ["E"], ["D"]]


def _passes_kept(monkeypatch) -> list[int]:
    """Rows each pass over the log keeps, recorded around the real ``read_studies``."""
    kept: list[int] = []
    real = study_outputs.read_studies

    def recording(source, studies):
        counts, rows_of = real(source, studies)
        kept.append(sum(len(rows) for rows in rows_of.values()))
        return counts, rows_of

    monkeypatch.setattr(study_outputs, "read_studies", recording)
    monkeypatch.setattr(study_outputs, "ROWS_PER_PASS", 4)
    return kept


@pytest.mark.parametrize("how", ["every report rewritten", "every line rebuilt"])
def test_many_studies_are_read_in_passes_within_the_bound(tmp_path, monkeypatch, how) -> None:
    log = _site(tmp_path)
    write_study(tmp_path, "C", C_FRAMES)
    source = open_audit_log(log, CLASSES)
    _publish(tmp_path, log, ["A", "B", "C"])
    for study in "ABC":
        (tmp_path / study / SUMMARY_NAME).unlink()  # as on a site from before kept lines
    kept = _passes_kept(monkeypatch)

    if how == "every report rewritten":
        written = publish_every_study(tmp_path, source, bundle_summary(), study_row_counts(source))
        assert [p.parent.name for p in written] == ["A", "B", "C"]
    else:
        publish_study(tmp_path, source, ["A"], bundle_summary())

    assert max(kept) <= 4 and sum(kept) >= 7  # every study's rows read, never more than 4 at once
    for study, files in (("A", 2), ("B", 3), ("C", 2)):
        line = read_summary(tmp_path, study)
        assert line is not None and line.files == files
        assert f"{study}/report.html" in _index_text(tmp_path)
    _verified(tmp_path, log)
