"""Capsule videos decoded as a stream, in batches of preprocessed frames.

PyAV demuxes and decodes one packet at a time, so a 100,000-frame study never sits in memory:
at most one batch of ``max_batch`` preprocessed frames does. Every frame goes through
``preprocess_image``, the conversion and resize of the image path and of training, so a frame
exported as a JPEG and the same frame inside a video reach the model alike (up to the codec).

A corrupt or truncated file raises UnreadableVideoError with FFmpeg's message, but only after
the frames decoded before the damage were yielded: the caller keeps their scores.

Each batch also says where its frames sit in the stream and what they looked like (``pts``,
``key_pts``, ``crc``): enough to find a frame again later by seeking and to check that the
seek gave that very frame (frame_reader.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from gicls.errors import UnreadableImageError, UnreadableVideoError
from gicls.models.preprocessing import preprocess_image

# FFmpeg's AV_NOPTS_VALUE: a frame without a presentation timestamp (or no keyframe seen yet).
NO_PTS = int(np.iinfo(np.int64).min)


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive kept frames of one video.

    ``frame_index``: int64 (n,), the frame's position in the decoded stream (0-based, every
    frame counted, kept or not); ``frame_time_s``: float64 (n,), presentation time in seconds;
    ``pixels``: uint8 (n, image_size, image_size, 3); ``pts``: int64 (n,), the frame's
    timestamp in its stream's time base (NO_PTS: none); ``key_pts``: int64 (n,), the pts of
    the last keyframe decoded at or before the frame (NO_PTS: none); ``crc``: uint32 (n,),
    ``frame_crc`` of the frame's pixels.
    """

    frame_index: np.ndarray
    frame_time_s: np.ndarray
    pixels: np.ndarray
    pts: np.ndarray
    key_pts: np.ndarray
    crc: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_index)


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # as the container declares it; 0 when it does not say
    duration_s: float  # 0.0 when unknown
    fps: float  # average frame rate; 0.0 when unknown


def probe_video(path: Path) -> VideoInfo:
    """What the container says about its first video stream (no frame is decoded)."""
    try:
        with av.open(str(path)) as container:
            stream = video_stream(container)
            fps = float(stream.average_rate or 0.0)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = (container.duration or 0) / av.time_base
            return VideoInfo(int(stream.frames or 0), duration, fps)
    except av.FFmpegError as exc:
        raise UnreadableVideoError(_ffmpeg_message(exc), 0) from None


def frame_crc(pixels: np.ndarray) -> int:
    """crc32 of one preprocessed frame, uint8 (image_size, image_size, 3): the first pass
    keeps it so that a frame read again later can be checked against it (about 20 us a frame
    at 128 px on this 2-core machine, under load)."""
    return zlib.crc32(np.ascontiguousarray(pixels, np.uint8))


class Decoded(NamedTuple):
    index: int  # position in the decoded stream, every frame counted
    time_s: float
    frame: av.VideoFrame
    key_pts: int  # pts of the last keyframe decoded at or before this frame (NO_PTS: none)


def iter_frames(path: Path, frame_step: int = 1) -> Iterator[tuple[int, float, Image.Image]]:
    """Yield (frame_index, frame_time_s, RGB image at the video's own size) of every
    ``frame_step``-th frame. Raises UnreadableVideoError when the file is damaged, after the
    frames before the damage."""
    to_rgb = RgbConverter()
    for decoded in iter_decoded(path, frame_step):
        yield decoded.index, decoded.time_s, to_rgb(decoded.frame)


class RgbConverter:
    """``frame.to_image()`` with one swscale context for a whole video, and one copy.

    PyAV's ``to_image`` sets up a new converter for every frame, and at 336 px that cost more
    than decoding the frame (2.9 ms to decode, 3.5-4.9 ms more to convert, on a busy 2-core
    machine); a reused one converts in about 1.5 ms, to the same pixels. ``to_image`` then
    copies the pixels three times (row by row, to ``bytes``, into the image); Pillow's raw
    decoder reads the converted plane, skipping each row's padding, in one (RGB is not a mode
    Pillow maps without copying, so the image never refers to the frame's memory).
    """

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> Image.Image:
        plane = self._reformatter.reformat(frame, format="rgb24").planes[0]
        return Image.frombuffer(
            "RGB", (plane.width, plane.height), plane, "raw", "RGB", plane.line_size, 1
        )


def iter_decoded(path: Path, frame_step: int = 1) -> Iterator[Decoded]:
    """Like ``iter_frames``, but the decoded frames as they come, not yet converted to RGB
    (a reader may want the pixels of a few of them only), with their last keyframe's pts."""
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    decoded = 0
    key_pts = NO_PTS
    try:
        with av.open(str(path)) as container:
            stream = video_stream(container)
            # No frame threading: with it FFmpeg drops the error of a damaged packet and the
            # stream just ends early, which would publish a truncated video as complete.
            declared = int(stream.frames or 0)
            for frame in container.decode(stream):
                index = decoded
                decoded += 1
                if frame.key_frame:
                    key_pts = pts_of(frame)
                if index % frame_step == 0:
                    yield Decoded(index, _frame_time(frame, index, stream), frame, key_pts)
            if decoded < declared:
                # A cut after a packet boundary decodes cleanly and just stops: the index
                # (mp4, mov, avi) still says how many frames there were.
                raise av.error.InvalidDataError(
                    0, f"the stream ends after {decoded} of the {declared} frames its index lists"
                )
    except av.FFmpegError as exc:
        raise UnreadableVideoError(_ffmpeg_message(exc), decoded) from None


def iter_frame_batches(
    path: Path, image_size: int, max_batch: int, frame_step: int = 1
) -> Iterator[FrameBatch]:
    """Yield every ``frame_step``-th frame of ``path``, preprocessed, ``max_batch`` at most
    per batch. Raises UnreadableVideoError after yielding what was decoded before damage."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    buffer = _Buffer(image_size, max_batch)
    to_rgb = RgbConverter()
    try:
        for decoded in iter_decoded(path, frame_step):
            try:
                buffer.add(decoded, to_rgb(decoded.frame))
            except UnreadableImageError as exc:  # a pixel format with no honest RGB
                raise UnreadableVideoError(exc.detail, decoded.index) from None
            if buffer.full:
                yield buffer.take()
    except UnreadableVideoError:
        if buffer:
            yield buffer.take()
        raise
    if buffer:
        yield buffer.take()


class _Buffer:
    def __init__(self, image_size: int, capacity: int) -> None:
        self.image_size = image_size
        self.capacity = capacity
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.index = np.zeros(self.capacity, np.int64)
        self.time = np.zeros(self.capacity, np.float64)
        self.pixels = np.zeros((self.capacity, self.image_size, self.image_size, 3), np.uint8)
        self.pts = np.zeros(self.capacity, np.int64)
        self.key_pts = np.zeros(self.capacity, np.int64)
        self.crc = np.zeros(self.capacity, np.uint32)

    def add(self, decoded: Decoded, image: Image.Image) -> None:
        at = self.count
        self.index[at] = decoded.index
        self.time[at] = decoded.time_s
        self.pixels[at] = preprocess_image(image, self.image_size)
        self.pts[at] = pts_of(decoded.frame)
        self.key_pts[at] = decoded.key_pts
        self.crc[at] = frame_crc(self.pixels[at])
        self.count += 1

    @property
    def full(self) -> bool:
        return self.count == self.capacity

    def __bool__(self) -> bool:
        return self.count > 0

    def take(self) -> FrameBatch:
        n = self.count
        batch = FrameBatch(
            self.index[:n],
            self.time[:n],
            self.pixels[:n],
            self.pts[:n],
            self.key_pts[:n],
            self.crc[:n],
        )
        self._reset()  # fresh arrays: the batch handed out is never overwritten
        return batch


def pts_of(frame: av.VideoFrame) -> int:
    return NO_PTS if frame.pts is None else int(frame.pts)


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise av.error.InvalidDataError(0, "no video stream in the file")
    return container.streams.video[0]


def _frame_time(frame: av.VideoFrame, index: int, stream: av.video.stream.VideoStream) -> float:
    if frame.time is not None:
        return float(frame.time)
    # No timestamps (raw MPEG elementary streams can lack them): derive from the frame rate.
    rate = float(stream.average_rate or 0.0)
    return index / rate if rate > 0 else float(index)


def _ffmpeg_message(exc: av.FFmpegError) -> str:
    # PyAV's text is "[Errno N] <FFmpeg's message>: '<where>'"; the errno adds nothing.
    text = exc.strerror or str(exc)
    where = exc.filename
    if where and isinstance(where, str) and not where.startswith("/"):
        text = f"{text} ({where})"
    return text.splitlines()[0]
