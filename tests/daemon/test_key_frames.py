"""Key frames: best frames per condition, spread by a minimum gap, JPEGs named by index/time."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from gicls.daemon.frame_reader import FrameMarks, read_frames
from gicls.daemon.frame_table import ScoredFrames
from gicls.daemon.key_frames import (
    KeyFrame,
    KeyFramePicker,
    key_frame_name,
    key_frame_path,
    parse_key_frame_name,
    publish,
    stage_key_frames,
)
from gicls.daemon.video_decode import iter_frame_batches
from gicls.errors import UnreadableVideoError
from gicls.training.demo_video import write_video

CLASSES = ("Bleeding", "Normal", "Polyp")


def offer(picker: KeyFramePicker, rows: list[tuple[int, float, str, str, float]]) -> None:
    """rows: (frame_index, time, predicted, flags, score of the row's class of interest)."""
    scores = np.zeros((len(rows), 3), np.float32)
    for r, (_, _, predicted, flags, score) in enumerate(rows):
        target = flags or predicted
        scores[r, CLASSES.index(target)] = score
    picker.offer(
        ScoredFrames(
            np.array([row[0] for row in rows]),
            np.array([row[1] for row in rows]),
            scores,
            [row[2] for row in rows],
            [row[3] for row in rows],
        )
    )


def test_best_frames_first_skipping_those_within_the_gap_of_a_pick():
    picker = KeyFramePicker(CLASSES, per_class=3, min_gap_s=5.0, skip=["Normal"])
    offer(picker, [(40, 10.0, "Bleeding", "", 0.90), (44, 11.0, "Bleeding", "", 0.95)])
    offer(picker, [(48, 12.0, "Bleeding", "", 0.85), (120, 30.0, "Bleeding", "", 0.80)])
    offer(picker, [(62, 16.5, "Bleeding", "", 0.50), (200, 50.0, "Polyp", "", 0.70)])
    assert picker.picks() == [
        KeyFrame("Bleeding", 44, 11.0, pytest.approx(0.95)),
        KeyFrame("Bleeding", 120, 30.0, pytest.approx(0.80)),
        KeyFrame("Bleeding", 62, 16.5, pytest.approx(0.50)),
        KeyFrame("Polyp", 200, 50.0, pytest.approx(0.70)),
    ]


def test_a_flagged_frame_counts_for_its_flag_and_skipped_classes_get_none():
    picker = KeyFramePicker(CLASSES, per_class=5, min_gap_s=0.0, skip=["Normal"])
    offer(picker, [(1, 0.25, "Normal", "Bleeding", 0.6), (2, 0.5, "Normal", "", 0.99)])
    assert picker.picks() == [KeyFrame("Bleeding", 1, 0.25, pytest.approx(0.6))]


def test_per_class_caps_the_picks_and_zero_means_none():
    rows = [(i, i * 10.0, "Polyp", "", 0.5 + i / 100) for i in range(8)]
    capped = KeyFramePicker(CLASSES, per_class=2, min_gap_s=1.0)
    offer(capped, rows)
    assert [pick.frame_index for pick in capped.picks()] == [7, 6]
    none = KeyFramePicker(CLASSES, per_class=0, min_gap_s=1.0)
    offer(none, rows)
    assert none.picks() == []


def test_names_carry_index_and_time_and_parse_back():
    name = key_frame_name("capsule 2", 12345, 2469.5)
    assert name == "capsule 2_f0012345_t002469.50s.jpg"
    assert parse_key_frame_name(name) == ("capsule 2", 12345, 2469.5)
    assert parse_key_frame_name("capsule.jpg") is None


MODEL_SIZE = 32


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "study.mp4"
    write_video(path, CLASSES, 120, 64, 4.0)
    return path


@pytest.fixture(scope="module")
def marks(video) -> FrameMarks:
    """What the first pass noted of every frame, as a video job notes it."""
    noted = FrameMarks()
    for batch in iter_frame_batches(video, MODEL_SIZE, max_batch=32):
        noted.add(batch)
    return noted


def stage(video: Path, marks: FrameMarks, picks: list[KeyFrame], folder: Path):
    """As VideoJob.stage_outputs stages them."""
    frames = read_frames(video, [marks[pick.frame_index] for pick in picks], MODEL_SIZE)
    return stage_key_frames(picks, frames, folder, "study")


def test_picked_frames_are_written_at_full_size_and_appear_only_when_published(
    video, marks, tmp_path
):
    picks = [KeyFrame("Polyp", 101, 25.25, 0.7), KeyFrame("Bleeding", 5, 1.25, 0.9)]
    picks.append(KeyFrame("Polyp", 5, 1.25, 0.8))
    staged = stage(video, marks, picks, tmp_path)
    final = [tmp_path / "Bleeding" / "study_f0000005_t000001.25s.jpg"]
    final += [tmp_path / "Polyp" / "study_f0000005_t000001.25s.jpg"]
    final += [tmp_path / "Polyp" / "study_f0000101_t000025.25s.jpg"]
    assert [item.final for item in staged] == final
    assert not any(path.exists() for path in final)
    publish(staged)
    assert all(path.exists() for path in final)
    assert sorted(p.name for p in (tmp_path / "Polyp").iterdir()) == sorted(
        p.name for p in final[1:]
    )
    with Image.open(final[2]) as image:
        assert image.size == (64, 64)


def test_each_key_frame_holds_the_pixels_of_its_own_frame(video, marks, tmp_path):
    wanted = (5, 101)
    with av.open(str(video)) as container:
        decoded = {k: f.to_image() for k, f in enumerate(container.decode(video=0)) if k in wanted}
    picks = [KeyFrame("Polyp", index, index / 4, 0.9) for index in wanted]
    publish(stage(video, marks, picks, tmp_path))

    for pick in picks:
        with Image.open(key_frame_path(tmp_path, "study", pick)) as image:
            written = np.asarray(image.convert("RGB"), np.float64)
        own, other = (
            np.abs(written - np.asarray(decoded[index], np.float64)).mean()
            for index in (pick.frame_index, next(k for k in wanted if k != pick.frame_index))
        )
        assert own < 3 < other  # JPEG's loss only, and far from the other frame


def test_a_pick_the_video_does_not_reach_is_an_error_and_nothing_is_left(video, marks, tmp_path):
    picks = [KeyFrame("Polyp", 3, 0.75, 0.9), KeyFrame("Polyp", 500, 125.0, 0.8)]
    frames = read_frames(video, [marks[3]], MODEL_SIZE)  # frame 500 was never scored
    with pytest.raises(UnreadableVideoError, match="500"):
        stage_key_frames(picks, frames, tmp_path, "study")
    assert list(tmp_path.rglob("*.staging")) == []
