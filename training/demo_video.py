"""Synthetic capsule videos for demos, tests and benchmarks. NOT real endoscopy data.

A video is a time line of segments: stretches of the Normal class (when the class list has
one) alternate with episodes of the other conditions, taken in class order so that every
condition appears once the video is long enough. Each frame is a demo frame of its segment's
class (``demo_data.seeded_synthetic_image``); frames are drawn from a small pool per class,
which keeps a 50,000-frame benchmark video quick to make while neighbouring frames still differ.

The truth time line is written beside each video as ``<stem>.truth.json`` so that tests and the
demo can check what the daemon found against what is there. The MP4 is written with its index
at the front (``+faststart``): a copy cut in half still starts with the frames before the cut,
as a truncated capsule export does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from gicls.training.demo_data import NOTICE_FILE, SYNTHETIC_NOTICE, seeded_synthetic_image

TRUTH_SUFFIX = ".truth.json"
# Distinct synthetic pictures per class that the frames of a video cycle through.
POOL_PER_CLASS = 24
# Segment lengths in frames: long enough to pick key frames from, short enough that a
# few-hundred-frame test video holds several conditions.
SEGMENT_FRAMES = (12, 40)
# H.264 near-lossless, so the small cues of the demo frames survive the encoding; MPEG-4 part 2
# at its best quantiser when the FFmpeg inside PyAV was built without libx264.
_CODEC_OPTIONS = {"libx264": {"crf": "12", "preset": "veryfast"}, "mpeg4": {"qscale": "2"}}


@dataclass(frozen=True)
class Segment:
    class_name: str
    first_frame: int
    last_frame: int  # inclusive
    start_s: float
    end_s: float  # time of the frame after the last one


@dataclass(frozen=True)
class VideoTruth:
    video: str  # file name of the video beside the truth file
    fps: float
    frames: int
    size: int
    codec: str
    segments: tuple[Segment, ...]

    def class_at(self, frame_index: int) -> str:
        for segment in self.segments:
            if segment.first_frame <= frame_index <= segment.last_frame:
                return segment.class_name
        raise IndexError(f"frame {frame_index} is outside the {self.frames} frames of {self.video}")


def video_codec() -> str:
    """The best encoder the installed PyAV offers for the demo videos."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def plan_time_line(classes: Sequence[str], frames: int, fps: float, seed: int) -> list[Segment]:
    """Segments covering frames 0..frames-1: Normal between condition episodes."""
    rng = np.random.default_rng([seed, frames])
    normal = next((name for name in classes if name.lower() == "normal"), None)
    conditions = [name for name in classes if name != normal]
    segments: list[Segment] = []
    start, turn = 0, 0
    while start < frames:
        if normal is not None and turn % 2 == 0:
            name = normal
        else:
            step = turn // 2 if normal is not None else turn
            name = conditions[step % len(conditions)]
        length = int(rng.integers(SEGMENT_FRAMES[0], SEGMENT_FRAMES[1] + 1))
        last = min(frames, start + length) - 1
        segments.append(Segment(name, start, last, start / fps, (last + 1) / fps))
        start, turn = last + 1, turn + 1
    return segments


def write_video(
    path: Path, classes: Sequence[str], frames: int, size: int, fps: float, seed: int = 0
) -> VideoTruth:
    """Encode one synthetic video at ``path`` (.mp4) and its truth file beside it."""
    segments = plan_time_line(classes, frames, fps, seed)
    codec = video_codec()
    pool: dict[tuple[str, int], np.ndarray] = {}
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = _CODEC_OPTIONS[codec]
        for segment in segments:
            index = classes.index(segment.class_name)
            for frame_index in range(segment.first_frame, segment.last_frame + 1):
                key = (segment.class_name, frame_index % POOL_PER_CLASS)
                if key not in pool:
                    pool[key] = seeded_synthetic_image(
                        segment.class_name, index, key[1], size, seed
                    )
                frame = av.VideoFrame.from_ndarray(pool[key], format="rgb24")
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    truth = VideoTruth(path.name, fps, frames, size, codec, tuple(segments))
    truth_path(path).write_text(json.dumps(asdict(truth), indent=1) + "\n")
    return truth


def truth_path(video: Path) -> Path:
    return video.with_name(video.stem + TRUTH_SUFFIX)


def read_truth(video: Path) -> VideoTruth:
    data = json.loads(truth_path(video).read_text())
    segments = tuple(Segment(**segment) for segment in data.pop("segments"))
    return VideoTruth(**data, segments=segments)


def generate_demo_videos(
    root: Path,
    classes: Sequence[str],
    videos: int,
    frames: int,
    size: int,
    fps: float,
    seed: int = 0,
) -> list[VideoTruth]:
    """Write ``root/synthetic_study_<n>.mp4`` (+ truth files); returns their time lines."""
    root.mkdir(parents=True, exist_ok=True)
    (root / NOTICE_FILE).write_text(SYNTHETIC_NOTICE)
    return [
        write_video(root / f"synthetic_study_{n:02d}.mp4", classes, frames, size, fps, seed + n)
        for n in range(videos)
    ]
