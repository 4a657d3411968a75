"""Study folders through a real daemon: ``inbox/<study>/...`` is routed to ``output/<study>/``.

Real subprocesses, real folders, a real tiny bundle; 40 px frames, a handful per test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gicls.audit.cli import app as audit_app
from gicls.training.demo_video import write_video
from tests.daemon import harness
from tests.daemon.harness import wait_until

pytestmark = pytest.mark.slow

CLASS_FOLDERS = {*harness.CLASSES, "_review"}


def _write(path: Path, data: bytes, dropped: Counter[tuple[bytes, str]], key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    dropped[(key.encode(), harness.sha256(data))] += 1


def _verify(config: Path) -> str:
    result = CliRunner().invoke(audit_app, ["verify", "-c", str(config)])
    assert result.exit_code == 0, result.stdout
    return result.stdout


def _report_counts(site: harness.Site, study: str) -> tuple[int, int]:
    """(scored frames, files) as the study's report states them."""
    text = (site.output / study / "report.html").read_text()
    found = re.search(r"(\d+) scored frames? from\s+(\d+) files?", text)
    assert found, "no counts in the report"
    return int(found[1]), int(found[2])


def test_a_study_copied_in_with_cp_r_while_the_daemon_runs(tmp_path: Path, make_bundle) -> None:
    site = harness.write_config(
        tmp_path, make_bundle(), on_duplicate="skip", study_quiet_seconds=1.0
    )
    source = tmp_path / "P123"
    dropped: Counter[tuple[bytes, str]] = Counter()
    for n in range(4):
        _write(source / "day1" / f"f{n}.png", harness.png(n), dropped, f"P123/day1/f{n}.png")
    # The same name in another sub-folder, and the same bytes again (a capsule resting still).
    _write(source / "day2" / "f0.png", harness.png(10), dropped, "P123/day2/f0.png")
    _write(source / "day2" / "still.png", harness.png(1), dropped, "P123/day2/still.png")
    daemon = harness.DaemonProcess(site.config)
    try:
        daemon.wait_ready()
        _write(site.inbox / "loose.png", harness.png(20), dropped, "loose.png")
        subprocess.run(["cp", "-r", str(source), str(site.inbox)], check=True)
        _write(site.inbox / "again.png", harness.png(20), dropped, "again.png")
        total = sum(dropped.values())
        wait_until(lambda: harness.row_count(site.audit_log) >= total, 60, f"{total} rows")
        # Quiet for study_quiet_seconds, every file audited: the report, folders removed.
        wait_until(lambda: daemon.logged("study_complete"), 30, "the study to complete")
        assert not (site.inbox / "P123").exists()
    finally:
        daemon.stop()
    assert daemon.process.returncode == 0, daemon.output()

    rows = harness.assert_invariant(site, dropped)
    assert _report_counts(site, "P123") == (6, 6)
    assert "P123/report.html" in (site.output / "index.html").read_text()
    assert "recorded outputs" in _verify(site.config)
    by_source = {row["source_path"]: row for row in rows}
    study_rows = [row for row in rows if row["study"] == "P123"]
    assert len(study_rows) == 6
    for row in study_rows:
        parts = row["destination"].split("/")
        assert parts[0] == "P123" and parts[1] in CLASS_FOLDERS and len(parts) == 3, row
        assert row["status"] in ("classified", "review")  # every frame scored
    # Sub-folders flatten into <Class>/: two f0.png both survive under unique names.
    assert {by_source[f"P123/{day}/f0.png"]["file_name"] for day in ("day1", "day2")} == {"f0.png"}
    assert len({by_source[f"P123/{d}/f0.png"]["destination"] for d in ("day1", "day2")}) == 2
    # cp -r copies in directory order, so either copy may arrive first: the later one names
    # the earlier one's destination, and both are scored.
    pair = [by_source["P123/day1/f1.png"], by_source["P123/day2/still.png"]]
    pair.sort(key=lambda row: row["duplicate_of"] != "")
    first, later = pair
    assert first["duplicate_of"] == "" and later["duplicate_of"] == first["destination"]
    assert first["predicted_class"] and later["predicted_class"]
    # Loose files keep today's behaviour: the repeated bytes are skipped as configured.
    loose = {by_source[name]["status"] for name in ("loose.png", "again.png")}
    assert "duplicate" in loose
    for name in ("loose.png", "again.png"):
        assert by_source[name]["study"] == ""
        assert by_source[name]["destination"].split("/")[0] in {*CLASS_FOLDERS, "_duplicates"}


def test_refused_study_names_go_to_the_root_quarantine(tmp_path: Path, make_bundle) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    dropped: Counter[tuple[bytes, str]] = Counter()
    refused = {
        ".hidden": "hidden name",
        "bleeding": "equals a class name",
        "_review": "reserved output name",
        "Index.HTML": "reserved output name",
        "AUDIT_LOG.csv": "reserved output name",
        "new\nline": "not plain text",
    }
    for number, name in enumerate(refused):
        shown = name.replace("\n", "\\n")
        _write(site.inbox / name / "frame.png", harness.png(number), dropped, f"{shown}/frame.png")
    _write(site.inbox / "ok" / "frame.png", harness.png(50), dropped, "ok/frame.png")
    outside = tmp_path / "elsewhere"
    (outside / "secret.png").parent.mkdir()
    (outside / "secret.png").write_bytes(harness.png(60))
    (site.inbox / "linked").symlink_to(outside)
    dropped[(b"linked", "")] += 1

    daemon = harness.DaemonProcess(site.config, "--once")
    assert daemon.wait() == 0, daemon.output()

    rows = harness.assert_invariant(site, dropped)
    by_source = {row["source_path"]: row for row in rows}
    for name, detail in refused.items():
        row = by_source[name.replace("\n", "\\n") + "/frame.png"]
        assert row["status"] == "quarantined"
        assert row["reason"].startswith(f"study_name: {detail}"), row
        assert row["destination"].startswith("_quarantine/study_name/frame"), row
        assert row["study"] == "" and row["sha256"]
    assert by_source["ok/frame.png"]["destination"].startswith("ok/")
    assert by_source["ok/frame.png"]["study"] == "ok"
    # The link is quarantined as itself; what it points at is never touched.
    assert by_source["linked"]["destination"] == "_quarantine/not_regular/linked"
    assert os.path.islink(site.output / "_quarantine" / "not_regular" / "linked")
    assert (outside / "secret.png").read_bytes() == harness.png(60)
    assert not (site.output / "bleeding").exists() and not (site.output / ".hidden").exists()


def test_a_late_file_reopens_its_study_and_the_report_is_rewritten(
    tmp_path: Path, make_bundle
) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    dropped: Counter[tuple[bytes, str]] = Counter()
    for n in range(3):
        _write(
            site.inbox / "S1" / "a" / "b" / f"{n}.png", harness.png(n), dropped, f"S1/a/b/{n}.png"
        )
    (site.inbox / "untouched").mkdir()  # an empty folder nobody filled is left alone

    assert harness.run_once(site.config) == 0
    assert not (site.inbox / "S1").exists()
    assert (site.inbox / "untouched").is_dir()
    assert _report_counts(site, "S1") == (3, 3)
    _write(site.inbox / "S1" / "late.png", harness.png(9), dropped, "S1/late.png")

    assert harness.run_once(site.config) == 0
    assert not (site.inbox / "S1").exists()
    assert _report_counts(site, "S1") == (4, 4)
    harness.assert_invariant(site, dropped)
    _verify(site.config)
    (site.output / "S1" / "report.html").write_text("edited")
    result = CliRunner().invoke(audit_app, ["verify", "-c", str(site.config)])
    assert result.exit_code == 1 and "sha256 mismatch: 1: S1/report.html" in result.stdout


def test_two_daemons_sharing_an_inbox_report_a_study_from_both_their_rows(
    tmp_path: Path, make_bundle
) -> None:
    first, configs = harness.shared_inbox_configs(
        tmp_path, make_bundle(), max_batch=4, study_quiet_seconds=2.0
    )
    daemons = [harness.DaemonProcess(config, log_name=f"{config.name}.log") for config in configs]
    dropped: Counter[tuple[bytes, str]] = Counter()
    try:
        for daemon in daemons:
            daemon.wait_ready()
        # Which daemon wins a file is a race: drop in rounds until both have won some.
        for round_number in range(10):
            for n in range(12):
                name = f"r{round_number}_{n}.png"
                data = harness.png(round_number * 100 + n)
                _write(first.inbox / "SHARED" / name, data, dropped, f"SHARED/{name}")
            total = sum(dropped.values())
            wait_until(
                lambda total=total: harness.row_count(first.audit_log) >= total, 60, f"{total} rows"
            )
            if all(daemon.logged("batch_done") for daemon in daemons):
                break
        wait_until(
            lambda: (
                any(daemon.logged("study_report_written") for daemon in daemons)
                and not (first.inbox / "SHARED").exists()
            ),
            30,
            "the shared study's report",
        )
    finally:
        for daemon in daemons:
            daemon.stop()
    assert all(daemon.logged("batch_done") for daemon in daemons), "only one daemon worked"
    total = sum(dropped.values())
    assert _report_counts(first, "SHARED") == (total, total)
    harness.assert_invariant(first, dropped)
    _verify(first.config)


def test_gicls_audit_report_and_summary_by_study(tmp_path: Path, make_bundle) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    for study, count in (("A1", 2), ("B2", 3)):
        (site.inbox / study).mkdir()
        for n in range(count):
            (site.inbox / study / f"{n}.png").write_bytes(harness.png(n + 10 * count))
    (site.inbox / "loose.png").write_bytes(harness.png(99))
    assert harness.run_once(site.config) == 0
    (site.output / "A1" / "report.html").unlink()
    (site.output / "index.html").unlink()
    runner = CliRunner()

    result = runner.invoke(audit_app, ["report", "A1", "-c", str(site.config)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {site.output / 'A1' / 'report.html'}\n"
    assert _report_counts(site, "A1") == (2, 2)
    assert "B2/report.html" in (site.output / "index.html").read_text()
    _verify(site.config)

    (site.output / "B2" / "report.html").unlink()
    result = runner.invoke(audit_app, ["report", "-c", str(site.config)])  # every study
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(
        f"wrote {site.output / study / 'report.html'}\n" for study in ("A1", "B2")
    )
    assert _report_counts(site, "B2") == (3, 3)
    _verify(site.config)

    result = runner.invoke(audit_app, ["report", "nope", "-c", str(site.config)])
    assert result.exit_code == 1
    assert "no audit rows for study 'nope'" in result.stderr and "A1, B2" in result.stderr

    result = runner.invoke(
        audit_app, ["summary", "--by", "study", "--json", "-c", str(site.config)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert list(summary) == ["A1", "B2", "(none)"]
    assert [summary[key]["total"] for key in summary] == [2, 3, 1]
    text = runner.invoke(audit_app, ["summary", "--by", "study", "-c", str(site.config)]).stdout
    assert text.startswith("Per study (UTC)\nstudy")
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["A1", "B2", "(none)"]


def test_pseudonymised_studies_keep_the_name_out_of_paths_rows_logs_and_reports(
    tmp_path: Path, make_bundle
) -> None:
    name = "JaneDoe1957"
    site = harness.write_config(tmp_path, make_bundle(), pseudonymise_studies=True)
    (site.inbox / name / "sub").mkdir(parents=True)
    for n in range(2):
        (site.inbox / name / "sub" / f"{n}.png").write_bytes(harness.png(n))
    first = harness.DaemonProcess(site.config, "--once")
    assert first.wait() == 0, first.output()
    (site.inbox / name).mkdir()
    (site.inbox / name / "late.png").write_bytes(harness.png(7))
    # A video at the inbox root is the study of its stem: its name is a patient's name too.
    video_name = "JohnRoe1960"
    video = tmp_path / f"{video_name}.mp4"
    write_video(video, harness.CLASSES, 6, 48, 4.0, seed=3)  # its truth file stays out here
    video.rename(site.inbox / video.name)
    second = harness.DaemonProcess(site.config, "--once")
    assert second.wait() == 0, second.output()

    state = site.root / "state"
    key = (state / "study_key").read_bytes()
    mapping = state / "study_pseudonyms.csv"
    assert len(key) == 32
    for secret in (state / "study_key", mapping):
        assert secret.stat().st_mode & 0o777 == 0o640, secret
    pseudonym, video_pseudonym = (
        "ps-" + hmac.new(key, study.encode(), hashlib.sha256).hexdigest()[:20]
        for study in (name, video_name)
    )
    # Each once, though the first was seen by two runs.
    assert mapping.read_text() == f"{pseudonym},{name},\n{video_pseudonym},{video_name},\n"
    rows = harness.read_audit(site.audit_log)
    (video_row,) = [row for row in rows if row["frames_scored"]]
    assert video_row["study"] == video_pseudonym
    assert video_row["file_name"] == video_row["source_path"] == f"{video_pseudonym}.mp4"
    assert video_row["destination"].startswith(f"{video_pseudonym}/_videos/")
    rows.remove(video_row)
    assert [row["study"] for row in rows] == [pseudonym] * 3
    assert sorted(row["source_path"] for row in rows) == [
        f"{pseudonym}/late.png",
        f"{pseudonym}/sub/0.png",
        f"{pseudonym}/sub/1.png",
    ]
    assert _report_counts(site, pseudonym) == (3, 3)
    written = [site.audit_log.read_bytes(), first.log_path.read_bytes()]
    written += [second.log_path.read_bytes()]
    for folder, _, files in os.walk(site.output):
        written += [os.fsencode(os.path.join(folder, file)) for file in files]
        written += [(Path(folder) / file).read_bytes() for file in files if file.endswith("html")]
    assert not [blob[:80] for blob in written if name.encode() in blob]
    assert not [blob[:80] for blob in written if video_name.encode() in blob]
    assert not (site.inbox / name).exists()
    _verify(site.config)
