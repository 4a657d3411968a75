"""Study video benchmark: a long synthetic capsule video through ``gicls-daemon run --once``.

Figures, all from one run on one machine:

- frames per second of the daemon on the video (``video_started`` to ``video_done`` in its log:
  demux, decode, preprocessing, scoring, the Parquet table, the second decode for key frames),
  and of the bare fused ensemble on the same frames already decoded (the first
  ``--bare-frames`` of the video, best of three passes at ``max_batch``); their ratio (goal
  >= 0.85);
- the daemon's peak RSS (VmHWM) when ``--checkpoint`` frames are done and at the end: flat when
  nothing grows with the length of the video;
- the time ``gicls-audit report`` takes to write that study's report.

Usage: ``python -m bench.study_video --frames 50000`` (``make bench-study``; the issue's size,
long on two cores) or ``--frames 2000 --checkpoint 500`` to check it works.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import fixtures
from bench.daemon_runs import BIN, Daemon, parse_ts, write_site
from bench.e2e import fused_rate

DEFAULT_WORK = Path(__file__).resolve().parent / "results" / "study_video"
MAX_BATCH = 32  # the daemon's default
FPS = 4.0
STEM = "bench_study"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bare_rate(models_dir: Path, video: Path, frames: int) -> float:
    """Frames per second of the fused ensemble alone on the first ``frames`` of ``video``."""
    import numpy as np

    from gicls.daemon.serving import configure_threads
    from gicls.daemon.video_decode import iter_frame_batches
    from gicls.models.ensemble import FusedEnsemble

    configure_threads()
    ensemble = FusedEnsemble.from_bundle(models_dir)
    batches = []
    for batch in iter_frame_batches(video, ensemble.image_size, MAX_BATCH):
        batches.append(batch.pixels)
        if sum(len(b) for b in batches) >= frames:
            break
    return fused_rate(ensemble, np.concatenate(batches)[:frames], MAX_BATCH)


def daemon_figures(root: Path, models_dir: Path, video: Path, checkpoint: int) -> dict:
    config = write_site(
        root, models_dir, {"max_batch": MAX_BATCH, "stability_seconds": 0.5, "max_wait_ms": 100}
    )
    shutil.copy(video, root / "inbox" / video.name)
    daemon = Daemon(root, once=True)
    checkpoint_rss: list[float] = []

    def watch_checkpoint() -> None:  # beside Daemon.wait, which samples VmHWM and reaps
        while daemon.process.returncode is None and not checkpoint_rss:
            if any(
                e.get("event") == "video_progress" and e.get("frames_done", 0) >= checkpoint
                for e in daemon.events()
            ):
                checkpoint_rss.append(daemon.peak_kib / 1024)
            time.sleep(0.5)

    watcher = threading.Thread(target=watch_checkpoint, daemon=True)
    watcher.start()
    run = daemon.wait()
    rss_at_checkpoint = checkpoint_rss[0] if checkpoint_rss else None
    started, done = run.first("video_started"), run.first("video_done")
    if started is None or done is None:
        raise RuntimeError(f"the daemon did not finish the video; see {run.log_path}")
    seconds = parse_ts(done["timestamp"]) - parse_ts(started["timestamp"])
    report_started = time.perf_counter()
    subprocess.run(
        [str(BIN / "gicls-audit"), "report", STEM, "-c", str(config)],
        check=True,
        capture_output=True,
    )
    return {
        "frames_scored": done["frames_scored"],
        "daemon_fps": done["frames_scored"] / seconds,
        "video_seconds": seconds,
        "peak_rss_mib_at_checkpoint": rss_at_checkpoint,
        "peak_rss_mib": run.peak_rss_mib,
        "report_seconds": time.perf_counter() - report_started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000, help="frames in the video")
    parser.add_argument("--size", type=int, default=336, help="video frame side in pixels")
    parser.add_argument("--checkpoint", type=int, default=5_000, help="RSS read at this frame")
    parser.add_argument(
        "--bare-frames", type=int, default=1_024, help="frames the bare ensemble scores"
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args(argv)
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    models_dir = work / "bundle"
    if not (models_dir / "manifest.json").exists():
        log(f"writing the bundle (10 x seed_cnn, {fixtures.IMAGE_SIZE} px, untrained)")
        fixtures.write_bundle(models_dir)
    video = work / f"{STEM}.mp4"
    from gicls.config import DEFAULT_CLASSES
    from gicls.training.demo_video import read_truth, write_video

    if not video.exists() or read_truth(video).frames != args.frames:
        log(f"writing a {args.frames}-frame {args.size} px synthetic video")
        write_video(video, DEFAULT_CLASSES, args.frames, args.size, FPS)
    log("bare fused ensemble on the video's frames")
    bare = bare_rate(models_dir, video, min(args.bare_frames, args.frames))
    log("gicls-daemon run --once on the video")
    site = work / "site"
    shutil.rmtree(site, ignore_errors=True)
    figures = {"frames": args.frames, "size": args.size, "bare_fps": bare}
    figures |= daemon_figures(site, models_dir, video, args.checkpoint)
    figures["ratio"] = figures["daemon_fps"] / bare
    print(json.dumps(figures, indent=1))
    print(
        f"{args.frames} frames at {args.size} px: daemon {figures['daemon_fps']:.1f} frames/s, "
        f"bare ensemble {bare:.1f} frames/s, ratio {figures['ratio']:.2f} (goal >= 0.85); "
        f"peak RSS {figures['peak_rss_mib_at_checkpoint'] or float('nan'):.0f} MiB at "
        f"{args.checkpoint} frames, {figures['peak_rss_mib']:.0f} MiB at the end; "
        f"report {figures['report_seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
