"""Capsule videos through real daemon processes: rsync, truncation, kill -9, SIGTERM, and loose
files interleaved with a long video."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gicls.audit.outputs import decode_outputs
from gicls.daemon.key_frames import parse_key_frame_name
from gicls.training.demo_video import write_video
from tests.daemon import harness
from tests.daemon.harness import CLASSES, DaemonProcess, sha256, wait_until

pytestmark = pytest.mark.slow

FRAMES = 120
FPS = 4.0
# Long enough that three loose files settle and are scored while it is still being decoded:
# 600 frames were not, once the decode got twice as fast on CI's 2 cores.
LONG_VIDEO_FRAMES = 2400


def make_video(path: Path, frames: int = FRAMES, seed: int = 0) -> Path:
    write_video(path, CLASSES, frames, 64, FPS, seed=seed)
    path.with_name(path.stem + ".truth.json").unlink()
    return path


def video_rows(site: harness.Site) -> list[dict[str, str]]:
    return [row for row in harness.read_audit(site.audit_log) if row["frames_scored"]]


def outputs_of(site: harness.Site, row: dict[str, str]) -> dict[str, Path]:
    return {entry.path: site.output / entry.path for entry in decode_outputs(row["outputs"])}


def verify(site: harness.Site) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gicls.audit.cli", "verify", "-c", str(site.config)],
        capture_output=True,
        text=True,
        cwd=harness.REPO,
    )


def test_a_video_dropped_with_rsync_gives_one_row_a_frame_table_and_key_frames(
    tmp_path, make_bundle
):
    # Untrained models may call every frame Normal: let Normal have key frames too here.
    site = harness.write_config(
        tmp_path / "site", make_bundle(), key_frame_min_gap_s=2.0, key_frames_skip_classes=[]
    )
    video = make_video(tmp_path / "capsule01.mp4")
    daemon = DaemonProcess(site.config)
    try:
        daemon.wait_ready()
        subprocess.run(["rsync", str(video), f"{site.inbox}/"], check=True)
        wait_until(lambda: harness.row_count(site.audit_log) == 1, 120, "the video's row")
    finally:
        daemon.stop()
    rows = harness.assert_invariant(
        site, Counter({(b"capsule01.mp4", sha256(video.read_bytes())): 1})
    )
    (row,) = rows
    assert row["status"] == "classified"
    assert row["study"] == "capsule01"
    assert harness.destination_of(row) == b"capsule01/_videos/capsule01.mp4"
    assert row["frames_scored"] == str(FRAMES)
    assert float(row["duration_s"]) == pytest.approx(FRAMES / FPS)
    assert row["model_bundle"]
    outputs = outputs_of(site, row)
    table = pq.read_table(outputs.pop("capsule01/_frames/capsule01.parquet"))
    assert table.column("frame_index").to_pylist() == list(range(FRAMES))
    assert table.column("frame_time_s").to_pylist()[:3] == [0.0, 0.25, 0.5]
    # Every other output is a key frame, in its class folder, of a frame the table gave
    # that class, at least the gap apart from the others of its class.
    predicted = dict(
        zip(
            table.column("frame_index").to_pylist(),
            table.column("predicted_class").to_pylist(),
            strict=True,
        )
    )
    assert outputs, "no key frames"
    times_by_class: dict[str, list[float]] = {}
    for relative in outputs:
        study, folder, name = relative.split("/")
        stem, index, time_s = parse_key_frame_name(name)
        assert (study, stem) == ("capsule01", "capsule01")
        assert predicted[index] == folder
        assert time_s == pytest.approx(index / FPS)
        times_by_class.setdefault(folder, []).append(time_s)
    for times in times_by_class.values():
        assert (
            len(times) == 1
            or min(b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False)) >= 2.0
        )
    result = verify(site)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_truncated_video_is_quarantined_with_ffmpegs_message_and_its_frames_before_the_cut(
    tmp_path, make_bundle
):
    site = harness.write_config(tmp_path / "site", make_bundle())
    data = make_video(tmp_path / "whole.mp4").read_bytes()
    (site.inbox / "cut.mp4").write_bytes(data[: len(data) // 2])
    (site.inbox / "notes.MP4").write_text("not a video at all\n")
    assert harness.run_once(site.config) == 0
    dropped = Counter({(b"cut.mp4", sha256(data[: len(data) // 2])): 1})
    dropped[(b"notes.MP4", sha256(b"not a video at all\n"))] += 1
    rows = {harness.file_name_of(r): r for r in harness.assert_invariant(site, dropped)}
    cut = rows[b"cut.mp4"]
    assert cut["status"] == "quarantined"
    assert harness.destination_of(cut) == b"cut/_quarantine/video_unreadable/cut.mp4"
    assert cut["reason"].startswith("video_unreadable: Invalid data found")
    frames = int(cut["frames_scored"])
    assert 0 < frames < FRAMES
    (table_path,) = outputs_of(site, cut).values()
    assert table_path == site.output / "cut/_quarantine/video_unreadable/cut.parquet"
    assert pq.read_table(table_path).num_rows == frames
    notes = rows[b"notes.MP4"]
    assert notes["status"] == "quarantined"
    assert notes["frames_scored"] == "0"
    assert notes["outputs"] == ""
    assert harness.destination_of(notes) == b"notes/_quarantine/video_unreadable/notes.MP4"


def test_killed_mid_video_then_restarted_gives_what_an_uninterrupted_run_gives(
    tmp_path, make_bundle
):
    bundle = make_bundle()
    video = make_video(tmp_path / "study7.mp4")
    results = {}
    for name, faults in (("killed", harness.fault_env("video_batch:4")), ("whole", None)):
        site = harness.write_config(tmp_path / name, bundle, max_batch=16, key_frame_min_gap_s=1.0)
        (site.inbox / video.name).write_bytes(video.read_bytes())
        if faults is not None:
            assert harness.run_once(site.config, env=faults) == 137
            assert harness.row_count(site.audit_log) == 0
            assert any(p.name.endswith(".video") for p in site.work.iterdir()), "nothing staged"
        assert harness.run_once(site.config) == 0
        (row,) = harness.assert_invariant(
            site, Counter({(video.name.encode(), sha256(video.read_bytes())): 1})
        )
        outputs = outputs_of(site, row)
        results[name] = (
            row["frames_scored"],
            sorted(outputs),
            pq.read_table(outputs["study7/_frames/study7.parquet"]),
            {
                path: harness.file_sha256(file)
                for path, file in outputs.items()
                if path.endswith(".jpg")
            },
        )
    killed, whole = results["killed"], results["whole"]
    assert killed[0] == whole[0] == str(FRAMES)
    assert killed[1] == whole[1]
    assert killed[2].equals(whole[2])
    assert killed[3] == whole[3]


def timeout_stop_seconds() -> float:
    unit = (harness.REPO / "systemd" / "gicls.service").read_text()
    match = re.search(r"^TimeoutStopSec=(\d+)s?$", unit, re.MULTILINE)
    assert match, "gicls.service sets no TimeoutStopSec"
    return float(match.group(1))


def test_sigterm_mid_video_stops_in_time_and_the_video_is_done_again_at_restart(
    tmp_path, make_bundle
):
    site = harness.write_config(tmp_path / "site", make_bundle(), max_batch=4)
    video = make_video(tmp_path / "long.mp4", frames=600)
    (site.inbox / "long.mp4").write_bytes(video.read_bytes())
    daemon = DaemonProcess(site.config)
    try:
        daemon.wait_ready()
        wait_until(lambda: daemon.logged("video_started"), 60, "the video to start")
        wait_until(lambda: any(site.work.glob("*.video/.frames.parquet.staging")), 30, "frames")
        sent = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        daemon.wait(timeout_stop_seconds())
        assert time.monotonic() - sent < timeout_stop_seconds()
    finally:
        daemon.stop()
    assert daemon.process.returncode == 0
    assert daemon.logged("video_interrupted")
    assert harness.row_count(site.audit_log) == 0
    assert [p.name for p in site.work.iterdir() if p.name.endswith(".video")] == []
    for _ in range(3):  # stops are no crashes: three of them do not make the video poison
        again = DaemonProcess(site.config)
        again.wait_ready()
        wait_until(lambda d=again: d.logged("video_started"), 60, "the video to start again")
        again.stop()
    assert harness.run_once(site.config) == 0
    (row,) = harness.assert_invariant(site, Counter({(b"long.mp4", sha256(video.read_bytes())): 1}))
    assert row["status"] == "classified"
    assert row["frames_scored"] == "600"


def test_loose_files_dropped_during_a_long_video_are_done_before_it_with_progress_in_status(
    tmp_path, make_bundle
):
    site = harness.write_config(tmp_path / "site", make_bundle(), max_batch=4)
    video = make_video(tmp_path / "long.mp4", frames=LONG_VIDEO_FRAMES)
    listener = harness.NotifyListener()
    daemon = DaemonProcess(site.config, env={"NOTIFY_SOCKET": listener.address})
    try:
        daemon.wait_ready()
        (site.inbox / "long.mp4").write_bytes(video.read_bytes())
        wait_until(lambda: daemon.logged("video_started"), 60, "the video to start")
        loose = {f"loose{k}.png".encode(): harness.png(k) for k in range(3)}
        for name, data in loose.items():
            (site.inbox / os.fsdecode(name)).write_bytes(data)
        wait_until(lambda: harness.row_count(site.audit_log) == 4, 180, "all four rows")
    finally:
        daemon.stop()
        listener.close()
    rows = harness.read_audit(site.audit_log)
    assert [harness.file_name_of(r) for r in rows][-1] == b"long.mp4"
    progress = [m for m in listener.messages if m.startswith("STATUS=video long.mp4")]
    assert any(
        re.fullmatch(rf"STATUS=video long\.mp4: \d+/{LONG_VIDEO_FRAMES} frames, \d+ s left", m)
        for m in progress
    )
    dropped = Counter({(name, sha256(data)): 1 for name, data in loose.items()})
    dropped[(b"long.mp4", sha256(video.read_bytes()))] += 1
    harness.assert_invariant(site, dropped)


def test_videos_in_a_study_folder_and_at_the_root_join_their_studies_and_get_reports(
    tmp_path, make_bundle
):
    site = harness.write_config(tmp_path / "site", make_bundle(), study_quiet_seconds=0.5)
    video = make_video(tmp_path / "v.mp4", frames=40)
    data = video.read_bytes()
    (site.inbox / "studyA" / "frames").mkdir(parents=True)
    (site.inbox / "studyA" / "frames" / "f1.png").write_bytes(harness.png(1))
    (site.inbox / "studyA" / "capsule.mp4").write_bytes(data)
    (site.inbox / "studyB").mkdir()
    (site.inbox / "studyB" / "f2.png").write_bytes(harness.png(2))
    (site.inbox / "studyB.MKV").write_bytes(data)  # the container is what FFmpeg finds inside
    (site.inbox / "solo.mp4").write_bytes(data)
    (site.inbox / "Normal.mp4").write_bytes(data)  # a class name cannot be a study
    assert harness.run_once(site.config) == 0
    rows = {harness.source_of(row): row for row in harness.read_audit(site.audit_log)}
    expected = {
        b"studyA/capsule.mp4": ("studyA", b"studyA/_videos/capsule.mp4"),
        b"studyB.MKV": ("studyB", b"studyB/_videos/studyB.MKV"),
        b"solo.mp4": ("solo", b"solo/_videos/solo.mp4"),
        b"Normal.mp4": ("", b"_quarantine/study_name/Normal.mp4"),
    }
    for name, (study, destination) in expected.items():
        assert (rows[name]["study"], harness.destination_of(rows[name])) == (study, destination)
    assert rows[b"Normal.mp4"]["reason"].startswith("study_name")
    assert rows[b"studyA/capsule.mp4"]["frames_scored"] == "40"
    assert (site.output / "studyA/_frames/capsule.parquet").exists()
    assert (site.output / "studyB/_frames/studyB.parquet").exists()
    for study in ("studyA", "studyB", "solo"):
        assert (site.output / study / "report.html").exists(), study
    assert not (site.inbox / "studyA").exists()
    result = verify(site)
    assert result.returncode == 0, result.stdout + result.stderr
