"""Frames read again after the first pass: seeking gives the first pass's frames, checked, and
the same JPEG bytes as a decode in order; what does not check out is read in order."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import av
import pytest
from PIL import Image

from gicls.daemon.frame_reader import FrameMarks, frames_in_order, read_frames, seek_frames
from gicls.daemon.key_frames import KEY_FRAME_QUALITY, KeyFrame, stage_key_frames
from gicls.daemon.video_decode import NO_PTS, iter_frame_batches
from gicls.training.demo_video import write_video

FRAMES = 240
MODEL_SIZE = 32


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "study.mp4"
    write_video(path, ("Bleeding", "Normal", "Polyp"), FRAMES, 64, 4.0)
    return path


@pytest.fixture(scope="module")
def keyframes(video) -> list[int]:
    with av.open(str(video)) as container:
        found = [k for k, frame in enumerate(container.decode(video=0)) if frame.key_frame]
    # Else every seek would start from frame 0 and prove nothing.
    assert len(found) >= 4, found
    return found


def first_pass(video: Path, frame_step: int = 1) -> FrameMarks:
    marks = FrameMarks()
    for batch in iter_frame_batches(video, MODEL_SIZE, max_batch=16, frame_step=frame_step):
        marks.add(batch)
    return marks


def hard_picks(keyframes: list[int], frame_step: int) -> list[int]:
    """Frames on, just before and just after keyframes, neighbours, both ends; on the step."""
    around = {0, 1, FRAMES - 1, 100, 101, 102}
    for key in keyframes[1:]:
        around |= {key - 2, key - 1, key, key + 1}
    return sorted(k for k in around if 0 <= k < FRAMES and k % frame_step == 0)


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=KEY_FRAME_QUALITY)
    return buffer.getvalue()


def decoded_in_order(video: Path, indices: set[int]) -> dict[int, bytes]:
    """Today's reference, without gicls: every frame decoded in order, as JPEG bytes."""
    with av.open(str(video)) as container:
        return {
            k: jpeg_bytes(frame.to_image())
            for k, frame in enumerate(container.decode(video=0))
            if k in indices
        }


@pytest.mark.parametrize("frame_step", [1, 3])
def test_seeking_reads_every_pick_as_the_decode_in_order_does_to_the_jpeg_byte(
    video, keyframes, frame_step, tmp_path
):
    marks = first_pass(video, frame_step)
    wanted = hard_picks(keyframes, frame_step)
    sought = dict(seek_frames(video, [marks[k] for k in wanted], MODEL_SIZE))
    assert sorted(sought) == wanted  # all by seeking: nothing was left to the decode in order
    reference = decoded_in_order(video, set(wanted))
    assert {k: jpeg_bytes(image) for k, image in sought.items()} == reference

    # And through the staging the daemon does, in any order of picks, onto the same files.
    picks = [KeyFrame("Polyp", k, k / 4, 0.5) for k in reversed(wanted)]
    frames = read_frames(video, [marks[k] for k in wanted], MODEL_SIZE)
    staged = stage_key_frames(picks, frames, tmp_path, "study")
    assert [item.staging.read_bytes() for item in staged] == [reference[k] for k in wanted]


def test_a_frame_that_does_not_check_out_ends_the_seeking_and_is_read_in_order(video, keyframes):
    marks = first_pass(video)
    wanted = [10, 60, 61, 150, 230]
    listed = [marks[k] for k in wanted]
    listed[2] = dataclasses.replace(listed[2], crc=listed[2].crc ^ 1)  # not what 61 looks like

    assert [k for k, _ in seek_frames(video, listed, MODEL_SIZE)] == [10, 60]
    read = {k: jpeg_bytes(image) for k, image in read_frames(video, listed, MODEL_SIZE)}
    assert read == decoded_in_order(video, set(wanted))


def test_frames_without_timestamps_are_read_in_order(video):
    marks = first_pass(video)
    listed = [dataclasses.replace(marks[k], pts=NO_PTS) for k in (7, 90)]
    assert list(seek_frames(video, listed, MODEL_SIZE)) == []
    read = {k: jpeg_bytes(image) for k, image in read_frames(video, listed, MODEL_SIZE)}
    assert read == decoded_in_order(video, {7, 90})


def test_the_decode_in_order_stops_after_the_last_frame_wanted_and_skips_what_is_not_there(
    video,
):
    read = dict(frames_in_order(video, {3, 12, FRAMES + 5}))
    assert sorted(read) == [3, 12]


def test_marks_are_found_by_frame_index_across_batches_and_only_for_scored_frames(video):
    marks = first_pass(video, frame_step=3)
    assert [marks[k].index for k in (0, 45, 237)] == [0, 45, 237]
    assert marks[45].key_pts <= marks[45].pts < marks[48].pts
    with pytest.raises(KeyError):
        marks[46]  # frame_step 3: never scored
