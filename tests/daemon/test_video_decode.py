"""Streaming decode of capsule videos: real MP4 files from the demo generator."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from gicls.daemon.studies import has_video_extension
from gicls.daemon.video_decode import RgbConverter, iter_frame_batches, probe_video
from gicls.errors import UnreadableVideoError
from gicls.models.preprocessing import decode_image
from gicls.training.demo_video import write_video

FRAMES = 150
FPS = 4.0


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "study.mp4"
    write_video(path, ("Bleeding", "Normal", "Polyp"), FRAMES, 64, FPS)
    return path


def cut_in_half(video: Path, target: Path) -> Path:
    data = video.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def test_every_frame_comes_in_order_in_batches_of_at_most_max_batch(video):
    batches = list(iter_frame_batches(video, 32, max_batch=40))
    assert [len(b) for b in batches] == [40, 40, 40, 30]
    index = np.concatenate([b.frame_index for b in batches])
    times = np.concatenate([b.frame_time_s for b in batches])
    assert index.tolist() == list(range(FRAMES))
    np.testing.assert_allclose(times, np.arange(FRAMES) * 0.25)  # 4 fps
    assert batches[0].pixels.shape == (40, 32, 32, 3)
    assert batches[0].pixels.dtype == np.uint8


def test_frame_step_keeps_every_nth_frame_with_its_own_index_and_time(video):
    batches = list(iter_frame_batches(video, 32, max_batch=16, frame_step=7))
    index = np.concatenate([b.frame_index for b in batches])
    assert index.tolist() == list(range(0, FRAMES, 7))
    np.testing.assert_allclose(np.concatenate([b.frame_time_s for b in batches]), index / FPS)


def test_a_frame_gets_the_pixels_the_image_path_gives_the_same_frame_saved_as_png(video):
    """Same conversion and resize as training: a lossless export of frame k, decoded by
    decode_image, equals the video path's array for frame k."""
    with av.open(str(video)) as container:
        frames = container.decode(video=0)
        exported = [next(frames).to_image() for _ in range(12)]
    batch = next(iter_frame_batches(video, 48, max_batch=12))
    for k, image in enumerate(exported):
        png = io.BytesIO()
        image.save(png, format="PNG")
        png.seek(0)
        np.testing.assert_array_equal(batch.pixels[k], decode_image(png, 48))


def test_the_rgb_converter_gives_pyavs_to_image_pixels_when_rows_are_padded(tmp_path):
    """At 70 px a row of RGB is 210 bytes, which FFmpeg pads to its alignment: the converter
    must skip the padding exactly as ``to_image`` does."""
    path = tmp_path / "odd.mp4"
    write_video(path, ("Bleeding", "Normal"), 6, 70, FPS)
    to_rgb = RgbConverter()
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert frame.reformat(format="rgb24").planes[0].line_size > 70 * 3
            converted = to_rgb(frame)
            assert converted.mode == "RGB" and converted.size == (70, 70)
            np.testing.assert_array_equal(np.asarray(converted), np.asarray(frame.to_image()))


def test_a_truncated_video_yields_the_frames_before_the_cut_then_ffmpegs_message(video, tmp_path):
    half = cut_in_half(video, tmp_path / "half.mp4")
    got = []
    with pytest.raises(UnreadableVideoError) as raised:
        for batch in iter_frame_batches(half, 32, max_batch=32):
            got.extend(batch.frame_index.tolist())
    assert 0 < len(got) < FRAMES
    assert got == list(range(len(got)))
    assert raised.value.frames_decoded == len(got)
    assert "Invalid data found when processing input" in raised.value.detail
    assert raised.value.reason == "video_unreadable"


def test_a_video_cut_on_a_packet_boundary_is_still_reported_as_truncated(video, tmp_path):
    """FFmpeg decodes the last whole packet and ends quietly; the index knows better."""
    data = video.read_bytes()
    with av.open(str(video)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        # The end of the 100th packet's bytes: everything before is whole, nothing torn.
        end = packets[99].pos + packets[99].size
    (tmp_path / "cut.mp4").write_bytes(data[:end])
    got = []
    with pytest.raises(UnreadableVideoError, match=f"of the {FRAMES} frames"):
        for batch in iter_frame_batches(tmp_path / "cut.mp4", 32, max_batch=32):
            got.extend(batch.frame_index.tolist())
    assert 90 <= len(got) <= 100


def test_a_text_file_named_mp4_is_unreadable_and_yields_nothing(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("patient notes, not a video\n")
    batches = iter_frame_batches(fake, 32, max_batch=8)
    with pytest.raises(UnreadableVideoError) as raised:
        next(batches)
    assert raised.value.frames_decoded == 0
    assert "Invalid data found when processing input" in str(raised.value)
    with pytest.raises(UnreadableVideoError):
        probe_video(fake)


def test_probe_reads_the_container_without_decoding(video):
    info = probe_video(video)
    assert info.frames == FRAMES
    assert info.fps == FPS
    assert info.duration_s == pytest.approx(FRAMES / FPS)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        *[("a.mp4", True), ("A.MKV", True), ("x.Mov", True), ("b.avi", True), ("c.mpg", True)],
        *[("d.jpg", False), ("mp4", False), ("e.mp4.part", False)],
    ],
)
def test_video_extensions_in_any_case(name, expected):
    assert has_video_extension(name) is expected
