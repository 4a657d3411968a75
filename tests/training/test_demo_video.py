"""Synthetic capsule videos: real MP4 files whose truth time line matches their pixels."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from gicls.training.cli import app
from gicls.training.demo_video import read_truth, write_video

runner = CliRunner()


def decoded_frames(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def frame_times(path):
    with av.open(str(path)) as container:
        return [frame.time for frame in container.decode(video=0)]


def test_cli_writes_decodable_videos_with_a_truth_time_line_covering_every_frame(tmp_path):
    result = runner.invoke(
        app,
        [
            *["demo-data", "--video", str(tmp_path / "v"), "--videos", "2", "--frames", "90"],
            *["--size", "64", "--fps", "5"],
        ],
    )
    assert result.exit_code == 0, result.output
    videos = sorted((tmp_path / "v").glob("*.mp4"))
    assert len(videos) == 2
    assert (tmp_path / "v" / "SYNTHETIC_DATA.txt").exists()
    for video in videos:
        frames = decoded_frames(video)
        assert len(frames) == 90
        assert frames[0].shape == (64, 64, 3)
        with av.open(str(video)) as container:
            assert container.streams.video[0].average_rate == 5
        segments = json.loads(video.with_name(video.stem + ".truth.json").read_text())["segments"]
        covered = [i for s in segments for i in range(s["first_frame"], s["last_frame"] + 1)]
        assert covered == list(range(90))
        times = frame_times(video)
        for segment in segments:  # the truth's times are the video's own frame times
            assert segment["start_s"] == pytest.approx(times[segment["first_frame"]])


def test_cli_without_a_folder_says_what_to_give(tmp_path):
    result = runner.invoke(app, ["demo-data"])
    assert result.exit_code != 0
    assert "--video" in result.output


def test_the_truth_time_line_says_which_frames_show_the_condition(tmp_path):
    """Erythema is a red tint: a redness cut between the two classes' means sorts the frames
    as the truth file says (a shifted or wrong time line sorts about half of them wrongly)."""
    truth = write_video(tmp_path / "study.mp4", ("Erythema", "Normal"), 120, 64, 4.0, seed=3)
    assert read_truth(tmp_path / "study.mp4") == truth
    frames = decoded_frames(tmp_path / "study.mp4")
    centre = slice(16, 48)
    redness = [float(np.mean(f[centre, centre, 0]) / np.mean(f[centre, centre, 1])) for f in frames]
    erythema = [r for i, r in enumerate(redness) if truth.class_at(i) == "Erythema"]
    normal = [r for i, r in enumerate(redness) if truth.class_at(i) == "Normal"]
    assert erythema and normal
    cut = (np.mean(erythema) + np.mean(normal)) / 2
    agree = [(r > cut) == (truth.class_at(i) == "Erythema") for i, r in enumerate(redness)]
    assert np.mean(agree) >= 0.95
