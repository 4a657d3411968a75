"""Key frames read again after a video's first pass: one decode in order against seeking.

Both read the same frames of the same video back to back in one process: the decode in order
(``frame_reader.frames_in_order``, how every key frame was read before seeking, and still the
fallback) and the seeks (``frame_reader.seek_frames``), after a first pass that notes the marks
as a video job does. Prints the seconds of each and whether the pixels are the same.

``--picks`` frames spread evenly over the video, last one near its end (a decode in order
stops after the last pick): 100 picks in 5,000 frames are as dense as a study's 100 key
frames in 5,000 frames; 10 in 5,000 as dense as the same 100 in 50,000.

Usage: ``python -m bench.key_frame_reads`` after ``bench.study`` wrote its video, or
``--video PATH --picks 100,10``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.study import DEFAULT_WORK, MAX_BATCH, STEM


def spread(frames: int, picks: int) -> list[int]:
    """``picks`` frame indices evenly over ``frames``, the last one at 99 % of the video."""
    last = frames * 99 // 100
    return sorted({last * (k + 1) // picks for k in range(picks)})


def main(argv: list[str] | None = None) -> int:
    from gicls.config import TrainConfig
    from gicls.daemon.frame_reader import FrameMarks, frames_in_order, seek_frames
    from gicls.daemon.video_decode import iter_frame_batches

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_WORK / f"{STEM}.mp4")
    parser.add_argument("--picks", default="100,10", help="comma list of pick counts")
    parser.add_argument("--model-size", type=int, default=TrainConfig().image_size)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    marks = FrameMarks()
    frames = 0
    for batch in iter_frame_batches(args.video, args.model_size, MAX_BATCH):
        marks.add(batch)
        frames += len(batch)
    print(f"{args.video.name}: {frames} frames; first pass {time.perf_counter() - started:.1f} s")
    for count in (int(text) for text in args.picks.split(",")):
        wanted = spread(frames, count)
        started = time.perf_counter()
        in_order = dict(frames_in_order(args.video, set(wanted)))
        in_order_s = time.perf_counter() - started
        started = time.perf_counter()
        sought = dict(seek_frames(args.video, [marks[k] for k in wanted], args.model_size))
        seek_s = time.perf_counter() - started
        same = sorted(sought) == wanted and all(
            sought[k].tobytes() == in_order[k].tobytes() for k in wanted
        )
        print(
            f"{len(wanted)} picks up to frame {wanted[-1]}: in order {in_order_s:.1f} s, "
            f"seeking {seek_s:.1f} s ({len(sought)} by seeking); same pixels: {same}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
