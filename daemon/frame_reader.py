"""A few frames of a video read again after its first pass: by seeking, checked, else in order.

Key frames are chosen only when the whole video is scored, and their pixels are wanted at the
video's own resolution. Decoding the whole video a second time to reach them cost as much as
the first decode (95-131 s of a 50,000-frame study's 540-714 s, BENCHMARKS.md). Here each
wanted frame is reached by seeking to the keyframe before it and decoding forward from there;
a frame in the same group of pictures as the one read before it is reached by decoding on,
without a seek (the first pass noted each frame's last keyframe for that).

Why seek, rather than keep the candidates' pixels during the first pass: the picks are final
only at the end. With the minimum gap between picks, a better frame coming later can push out
a pick and so bring back a frame that had been pushed out by that pick, so the frames that may
still be picked are every frame within a gap's reach of the lists, not ``key_frames_per_class``
of them; and each candidate would cost an RGB conversion in the decode of the first pass, the
part that limits a video's speed. Seeking reads only the frames finally chosen.

A seek is trusted only when it gives the frame the first pass saw: the same pts, and the same
crc32 of the frame preprocessed as for the model. Where seeking decodes a frame otherwise (an
open GOP, a keyframe flag that lies, repeated timestamps), it differs there. When a frame
cannot be found that way, even from an earlier keyframe, the file does not seek as its first
pass says: seeking stops, and the frames still wanted come from one decode from the start, as
the first pass decoded them, so the pixels are the first pass's in every case.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from gicls.daemon.video_decode import (
    NO_PTS,
    FrameBatch,
    RgbConverter,
    frame_crc,
    iter_decoded,
    pts_of,
    video_stream,
)
from gicls.errors import UnreadableVideoError
from gicls.logs import get_logger
from gicls.models.preprocessing import preprocess_image

log = get_logger(__name__)

# Seeks for one frame: the first to the keyframe before it; the others each to the keyframe
# before where the previous one landed, for a demuxer that seeks by decode time and lands
# after the frame, or a frame that decodes only from an earlier keyframe (open GOP).
SEEKS_PER_FRAME = 3


@dataclass(frozen=True)
class FrameMark:
    """Where the first pass found frame ``index`` and what it looked like (FrameBatch)."""

    index: int
    pts: int
    key_pts: int
    crc: int


class FrameMarks:
    """The marks of every scored frame of one video, kept batch by batch (32 bytes a frame:
    1.6 MB for a 50,000-frame study, beside the picker's candidates)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._table: np.ndarray | None = None

    def add(self, batch: FrameBatch) -> None:
        columns = (batch.frame_index, batch.pts, batch.key_pts, batch.crc.astype(np.int64))
        self._parts.append(np.stack(columns, axis=1))
        self._table = None

    def __getitem__(self, index: int) -> FrameMark:
        if self._table is None:
            self._table = np.concatenate(self._parts) if self._parts else np.zeros((0, 4), int)
        indices = self._table[:, 0]  # ascending: frames are scored in stream order
        at = int(np.searchsorted(indices, index))
        if at == len(indices) or indices[at] != index:
            raise KeyError(index)
        return FrameMark(*(int(value) for value in self._table[at]))


def read_frames(
    video: Path, marks: Sequence[FrameMark], image_size: int
) -> Iterator[tuple[int, Image.Image]]:
    """(index, RGB image at the video's own size) of each marked frame, as the first pass
    decoded it; ``image_size``: the size the first pass preprocessed to for its crc. A frame
    the video no longer holds is not yielded (the caller says which are missing)."""
    wanted = {mark.index: mark for mark in marks}
    for index, image in seek_frames(video, list(wanted.values()), image_size):
        del wanted[index]
        yield index, image
    if wanted:
        log.warning("frames_read_in_order", video=video.name, frames=len(wanted))
        yield from frames_in_order(video, set(wanted))


def seek_frames(
    video: Path, marks: Sequence[FrameMark], image_size: int
) -> Iterator[tuple[int, Image.Image]]:
    """The marked frames that seeking finds and the check confirms, in pts order; stops at
    the first one it cannot confirm (read_frames reads the rest in order)."""
    try:
        with av.open(str(video)) as container:
            seeker = _Seeker(container, video_stream(container))
            for mark in sorted(marks, key=lambda m: m.pts):
                image = seeker.read(mark, image_size)
                if image is None:
                    return
                yield mark.index, image
    except av.FFmpegError:
        return  # a file that does not seek cleanly is read in order


def frames_in_order(video: Path, indices: set[int]) -> Iterator[tuple[int, Image.Image]]:
    """The frames at ``indices`` by one decode from the start, up to the last of them. A
    damaged video yields the frames before its damage."""
    to_rgb = RgbConverter()
    left = set(indices)
    try:
        for decoded in iter_decoded(video):
            if decoded.index in left:
                left.discard(decoded.index)
                # Only these frames are converted to RGB: converting is most of a frame's cost.
                yield decoded.index, to_rgb(decoded.frame)
                if not left:
                    return
    except UnreadableVideoError:
        return


class _Seeker:
    """One open video, read forward from where the last frame was found or from a seek."""

    def __init__(self, container: av.container.InputContainer, stream: av.VideoStream) -> None:
        self._container = container
        self._stream = stream
        self._to_rgb = RgbConverter()
        self._frames: Iterator[av.VideoFrame] | None = None
        self._last_pts = NO_PTS  # of the last frame decoded
        self._landed = NO_PTS  # of the first frame decoded after the last seek

    def read(self, mark: FrameMark, image_size: int) -> Image.Image | None:
        """The frame of ``mark`` if it is found and checks out, else None."""
        if mark.pts == NO_PTS or mark.key_pts == NO_PTS:
            return None  # nothing to seek to, or to tell the frame by
        # Decoding on is cheaper than a seek while no keyframe lies between here and the frame.
        if not (self._frames is not None and mark.key_pts <= self._last_pts < mark.pts):
            self._seek(mark.pts)
        before = NO_PTS
        for attempt in range(SEEKS_PER_FRAME):
            frame = self._decode_to(mark.pts)
            if attempt and not NO_PTS < self._landed < before:
                return None  # the seek did not go back: there is no earlier keyframe to try
            if frame is not None:
                image = self._to_rgb(frame)
                if frame_crc(preprocess_image(image, image_size)) == mark.crc:
                    return image
            if self._landed == NO_PTS:
                return None
            before = self._landed
            self._seek(before - 1)  # to the keyframe before the one this read started from
        return None

    def _seek(self, pts: int) -> None:
        self._close_frames()
        self._container.seek(pts, stream=self._stream, backward=True)
        self._frames = self._container.decode(self._stream)
        self._landed = NO_PTS

    def _decode_to(self, pts: int) -> av.VideoFrame | None:
        """Decode on to the frame at ``pts``; None once past it, or at the end."""
        if self._frames is None:
            return None
        for frame in self._frames:
            current = pts_of(frame)
            if current == NO_PTS:
                break
            if self._landed == NO_PTS:
                self._landed = current
            self._last_pts = current
            if current == pts:
                return frame
            if current > pts:
                return None
        self._close_frames()
        return None

    def _close_frames(self) -> None:
        if self._frames is not None:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
        self._frames = None
