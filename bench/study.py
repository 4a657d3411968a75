"""Study benchmark: a long synthetic study, as a capsule video and as a folder of frames,
through ``gicls-daemon run --once``.

Figures, all from one run on one machine, for each kind of study (``--kind``):

- frames per second of the daemon on the study (video: ``video_started`` to ``video_done`` in
  its log: demux, decode, preprocessing, scoring, the Parquet table, reading the key frames;
  also the scoring alone, to ``video_scored``, and the seconds from there to ``video_done``;
  folder: ``daemon_ready`` to the last ``batch_done``: claim, JPEG decode, scoring,
  routing, the audit row of every frame), and of the bare fused ensemble on the same frames
  already decoded, measured two ways, each with its ratio (goal >= 0.85): on the first
  ``--bare-frames``, best of three passes at ``max_batch`` (a peak rate, taken in a minute or
  two); and on every frame of the study, scored chunk by chunk after each chunk is decoded,
  once before the daemon's run and once after it, the ratio against the faster of the two
  (a sustained rate over as long as the daemon runs, and the issue's "same frames");
- the daemon's peak RSS (VmHWM) when ``--checkpoint`` frames are done, when 90 % are, and at
  the end (which adds the key frames, the Parquet file and the report): the first two equal
  when nothing grows with the length of the study;
- what limits the ratio on this machine: CPU seconds (all threads, ``time.process_time``) per
  frame of the decoding and preprocessing the bare ensemble is spared, and of scoring, and
  from them the ratio the daemon could reach at best if it kept every core busy with nothing
  else: ``cores x scoring wall time / (scoring CPU + decoding CPU)``, at most 1;
- where the CPU went (``bench.cpu_use``): during each whole-study bare pass (its scoring)
  and during the daemon's run between the first two RSS readings above, CPU ms a frame of the
  process and of its busiest threads, and the cores the rest of the machine kept busy, left
  idle, or lost to the host (steal): whether a slow run was short of CPU or spent more of it;
- the time ``gicls-audit report`` takes to write that study's report;
- folder only: ``gicls-audit summary`` at the checkpoint and at the end, and ``gicls-audit
  verify`` at the end (one audit row per frame): seconds and peak RSS, so the audit tools'
  memory can be read against the number of rows.

The bundle is ten untrained ``seed_cnn`` models at ``--model-size`` (default: the product's
default image size; speed does not depend on the weights). The folder's frames are the
video's frames, decoded and saved as JPEG, so both kinds score the same pictures.

Usage: ``python -m bench.study --frames 50000`` (``make bench-study``; the issue's size) or
``--frames 2000 --checkpoint 500`` to check it works.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from bench import cpu_use, fixtures
from bench.daemon_runs import BIN, Daemon, count_rows, parse_ts, peak_rss_kib, write_site
from bench.e2e import fused_rate, score_pass

DEFAULT_WORK = Path(__file__).resolve().parent / "results" / "study"
MAX_BATCH = 32  # the daemon's default
FPS = 4.0
STEM = "bench_study"
FOLDER_STUDY = "bench_study_folder"
JPEG_QUALITY = 90
# The whole-study bare passes decode this many frames, then score them without a pause.
WHOLE_STUDY_CHUNK = 1_024
CORES = len(os.sched_getaffinity(0))  # the cores this bench (and the daemon it starts) may use
# A 50,000-frame study on two cores takes a while; the daemon must finish within this.
DAEMON_TIMEOUT_SECONDS = 4 * 3600


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def video_chunks(video: Path, image_size: int, chunk: int) -> Iterator[np.ndarray]:
    """Every frame of ``video`` as the daemon preprocesses it, ``chunk`` frames at a time
    (uint8 arrays): a 50,000-frame study never has to be in memory at once."""
    from gicls.daemon.video_decode import iter_frame_batches

    batches: list[np.ndarray] = []
    held = 0  # frames in batches
    for batch in iter_frame_batches(video, image_size, MAX_BATCH):
        batches.append(batch.pixels)
        held += len(batch.pixels)
        if held >= chunk:
            pixels = np.concatenate(batches)
            yield pixels[:chunk]
            batches, held = [pixels[chunk:]], held - chunk
    if held:
        yield np.concatenate(batches)


def folder_chunks(folder: Path, image_size: int, chunk: int) -> Iterator[np.ndarray]:
    """The JPEGs of ``folder`` (name order) decoded as the daemon decodes them, ``chunk``
    frames at a time."""
    from gicls.models.preprocessing import decode_many

    paths = sorted(folder.glob("*.jpg"))
    for start in range(0, len(paths), chunk):
        pixels, failures = decode_many(paths[start : start + chunk], image_size, 2)
        if failures:
            raise RuntimeError(f"{len(failures)} benchmark frames did not decode")
        yield pixels


@dataclass(frozen=True)
class BareFigures:
    """The fused ensemble alone, and what the daemon spends that it is spared."""

    fps: float  # frames per second, best of three passes
    precision: str  # what "auto" served
    decode_cpu_ms: float  # CPU ms (all threads) per frame to decode and preprocess
    score_cpu_ms: float  # CPU ms (all threads) per frame to score
    score_wall_ms: float  # wall ms per frame to score (the same pass)

    def ratio_ceiling(self, cores: int) -> float:
        """The best daemon/bare ratio on ``cores`` busy cores doing nothing but decode and
        score: the daemon needs both CPU costs per frame, the bare ensemble only scoring's."""
        return min(1.0, cores * self.score_wall_ms / (self.score_cpu_ms + self.decode_cpu_ms))


def load_bare_ensemble(models_dir: Path):
    """The fused ensemble loaded as the daemon loads it (``[inference] precision`` at its
    default, "auto": bfloat16 where the CPU has it and the guard accepts it)."""
    from gicls.config import DEFAULT_CLASSES, InferenceConfig
    from gicls.daemon.serving import configure_threads, load_ensemble

    configure_threads()
    return load_ensemble(models_dir, DEFAULT_CLASSES, InferenceConfig().precision, MAX_BATCH)


def bare_figures(ensemble, chunks: Iterator[np.ndarray]) -> BareFigures:
    """The fused ensemble alone on the study's first chunk of frames, already decoded, and
    the CPU cost of decoding those frames (the chunks are decoded as they are asked for) and
    of scoring them."""
    cpu_started = time.process_time()
    frames = next(chunks)
    decode_cpu = time.process_time() - cpu_started
    fps = fused_rate(ensemble, frames, MAX_BATCH)
    # One more pass, warm, for its CPU time against its wall time.
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    score_pass(ensemble, frames, MAX_BATCH)
    score_wall = time.perf_counter() - wall_started
    score_cpu = time.process_time() - cpu_started
    per_frame_ms = 1000 / len(frames)
    return BareFigures(
        fps=fps,
        precision=ensemble.precision,
        decode_cpu_ms=decode_cpu * per_frame_ms,
        score_cpu_ms=score_cpu * per_frame_ms,
        score_wall_ms=score_wall * per_frame_ms,
    )


def whole_study_fps(ensemble, chunks: Iterable[np.ndarray], label: str) -> tuple[float, dict]:
    """Frames per second of the fused ensemble over every frame of the study, as the daemon
    must score them: each chunk is decoded first, and only its scoring is timed. Also where
    the CPU went while it scored (this process by thread, the rest of the machine)."""
    frames, seconds = 0, 0.0
    scoring = None
    for number, pixels in enumerate(chunks, start=1):
        before = cpu_use.snapshot(os.getpid())
        started = time.perf_counter()
        score_pass(ensemble, pixels, MAX_BATCH)
        seconds += time.perf_counter() - started
        use = cpu_use.between(before, cpu_use.snapshot(os.getpid()))
        scoring = use if scoring is None else scoring + use
        frames += len(pixels)
        if number % 10 == 0:
            log(f"{label}: {frames} frames, {frames / seconds:.1f} frames/s so far")
    log(f"{label}, scoring only: {scoring.describe(frames)}")
    return frames / seconds, scoring.as_dict(frames)


def write_folder(video: Path, folder: Path, frames: int) -> None:
    """Every frame of ``video`` as ``frame_<index>.jpg`` in ``folder`` (a capsule export)."""
    from gicls.daemon.video_decode import iter_frames

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for index, _time_s, image in iter_frames(video):
        image.save(partial / f"frame_{index:06d}.jpg", quality=JPEG_QUALITY)
    written = sum(1 for _ in partial.glob("*.jpg"))
    if written != frames:
        raise RuntimeError(f"wrote {written} frames of the {frames} expected from {video}")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


class Watcher:
    """Beside ``Daemon.wait`` (which samples VmHWM and reaps): polls ``frames_done()`` and,
    as it reaches the early and then the late checkpoint, keeps the daemon's peak RSS and CPU
    times then (``steady_cpu``: between the two, the study in full flow); at the early one it
    also runs ``at_early`` once."""

    def __init__(
        self,
        daemon: Daemon,
        frames_done: Callable[[], int],
        checkpoints: tuple[int, int],
        at_early: Callable[[], dict] = dict,
    ) -> None:
        self.early_rss_mib: float | None = None
        self.late_rss_mib: float | None = None
        self.steady_cpu: dict | None = None
        self.figures: dict = {}
        self._daemon, self._frames_done = daemon, frames_done
        self._checkpoints, self._at_early = checkpoints, at_early
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        early, late = self._checkpoints
        pid = self._daemon.process.pid
        early_frames, early_cpu = 0, None
        while self._daemon.process.returncode is None:
            done = self._frames_done()
            if self.early_rss_mib is None and done >= early:
                early_frames, early_cpu = done, cpu_use.snapshot(pid)
                self.early_rss_mib = self._daemon.peak_kib / 1024
                self.figures = self._at_early()
            if done >= late:
                self.late_rss_mib = self._daemon.peak_kib / 1024
                if early_cpu is not None:
                    steady = cpu_use.between(early_cpu, cpu_use.snapshot(pid))
                    self.steady_cpu = steady.as_dict(done - early_frames)
                    log(f"daemon, study in full flow: {steady.describe(done - early_frames)}")
                return
            time.sleep(0.5)

    def join(self) -> None:
        self._thread.join(timeout=600)


def audit_command(config: Path, *args: str) -> dict:
    """``gicls-audit ARGS -c config`` as a subprocess: seconds and peak RSS (VmHWM)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "gicls-audit"), *args, "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak_kib = 0
    while process.poll() is None:
        peak_kib = max(peak_kib, peak_rss_kib(process.pid))
        time.sleep(0.02)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"gicls-audit {' '.join(args)} failed ({process.returncode}): {stderr}")
    return {"seconds": time.perf_counter() - started, "peak_rss_mib": peak_kib / 1024}


def report_seconds(config: Path, study: str) -> float:
    return audit_command(config, "report", study)["seconds"]


# What the daemon does after the last frame is scored, inside the "at the end" RSS reading.
AT_THE_END = {"video": "key frames, Parquet file, report", "folder": "report"}


def late_checkpoint(frames: int) -> int:
    """Where the second RSS reading is taken: 90 % of the study scored."""
    return frames * 9 // 10


def run_video(site: Path, models_dir: Path, video: Path, checkpoint: int, frames: int) -> dict:
    config = write_site(
        site, models_dir, {"max_batch": MAX_BATCH, "stability_seconds": 0.5, "max_wait_ms": 100}
    )
    shutil.copy(video, site / "inbox" / video.name)
    daemon = Daemon(site, once=True)

    def frames_done() -> int:
        progress = [e for e in daemon.events() if e.get("event") == "video_progress"]
        return max((e.get("frames_done", 0) for e in progress), default=0)

    watcher = Watcher(daemon, frames_done, (checkpoint, late_checkpoint(frames)))
    run = daemon.wait(DAEMON_TIMEOUT_SECONDS)
    watcher.join()
    started, done = run.first("video_started"), run.first("video_done")
    scored = run.first("video_scored")
    if started is None or scored is None or done is None:
        raise RuntimeError(f"the daemon did not finish the video; see {run.log_path}")
    seconds = parse_ts(done["timestamp"]) - parse_ts(started["timestamp"])
    scoring_seconds = parse_ts(scored["timestamp"]) - parse_ts(started["timestamp"])
    return {
        "frames_scored": done["frames_scored"],
        "daemon_fps": done["frames_scored"] / seconds,
        "study_seconds": seconds,
        "scoring_fps": done["frames_scored"] / scoring_seconds,
        # After the last batch: the key frames, the Parquet file, the plan and its publishing.
        "finish_seconds": parse_ts(done["timestamp"]) - parse_ts(scored["timestamp"]),
        "peak_rss_mib_at_checkpoint": watcher.early_rss_mib,
        "peak_rss_mib_late": watcher.late_rss_mib,
        "daemon_cpu_in_full_flow": watcher.steady_cpu,
        "peak_rss_mib": run.peak_rss_mib,
        "report_seconds": report_seconds(config, STEM),
    }


def run_folder(site: Path, models_dir: Path, folder: Path, checkpoint: int, frames: int) -> dict:
    config = write_site(
        site,
        models_dir,
        {"max_batch": MAX_BATCH, "stability_seconds": 0.5, "max_wait_ms": 100},
    )
    # Hard links: the inbox gets the frames in a moment, as a finished copy would leave them.
    shutil.copytree(folder, site / "inbox" / FOLDER_STUDY, copy_function=_link)
    daemon = Daemon(site, once=True)
    audit_log = site / "audit_log.csv"
    watcher = Watcher(
        daemon,
        lambda: count_rows(audit_log),
        (checkpoint, late_checkpoint(frames)),
        lambda: {"rows": count_rows(audit_log), **audit_command(config, "summary")},
    )
    run = daemon.wait(DAEMON_TIMEOUT_SECONDS)
    watcher.join()
    rows = count_rows(audit_log)
    if rows != sum(1 for _ in folder.glob("*.jpg")):
        raise RuntimeError(f"{rows} audit rows for the folder's frames; see {run.log_path}")
    seconds = run.processing_seconds()
    return {
        "frames_scored": rows,
        "daemon_fps": rows / seconds,
        "study_seconds": seconds,
        "peak_rss_mib_at_checkpoint": watcher.early_rss_mib,
        "peak_rss_mib_late": watcher.late_rss_mib,
        "daemon_cpu_in_full_flow": watcher.steady_cpu,
        "peak_rss_mib": run.peak_rss_mib,
        "report_seconds": report_seconds(config, FOLDER_STUDY),
        "summary_at_checkpoint": watcher.figures,
        "summary_at_end": {"rows": rows, **audit_command(config, "summary")},
        "verify_at_end": {"rows": rows, **audit_command(config, "verify")},
    }


def _link(source: str, destination: str) -> None:
    Path(destination).hardlink_to(source)


def print_figures(kind: str, figures: dict, checkpoint: int) -> None:
    finish = (
        f"scoring {figures['scoring_fps']:.1f} frames/s, then "
        f"{figures['finish_seconds']:.1f} s from the last batch to video_done; "
        if kind == "video"
        else ""
    )
    whole = figures["bare_whole_study_fps"]
    print(
        f"{kind}: {figures['frames']} frames at {figures['size']} px, {figures['model_size']} px "
        f"models: daemon {figures['daemon_fps']:.1f} frames/s, bare ensemble "
        f"({figures['bare_precision']}) {figures['bare_fps']:.1f} frames/s at best on the first "
        f"frames, ratio {figures['ratio']:.2f} (goal >= 0.85); over every frame "
        f"{whole['before']:.1f} frames/s before the daemon and {whole['after']:.1f} after, "
        f"ratio {figures['ratio_whole_study']:.2f} against the faster; {finish}"
        f"peak RSS {figures['peak_rss_mib_at_checkpoint'] or float('nan'):.0f} MiB at "
        f"{checkpoint} frames, {figures['peak_rss_mib_late'] or float('nan'):.0f} MiB at "
        f"{late_checkpoint(figures['frames'])}, {figures['peak_rss_mib']:.0f} MiB at the end "
        f"(+ {AT_THE_END[kind]}); "
        f"report {figures['report_seconds']:.1f} s",
        flush=True,
    )
    print(
        f"  what limits it: decoding and preprocessing {figures['decode_cpu_ms_per_frame']:.2f} "
        f"CPU ms a frame, scoring {figures['score_cpu_ms_per_frame']:.2f} CPU ms in "
        f"{figures['score_wall_ms_per_frame']:.2f} ms of wall time "
        f"({figures['score_cpu_ms_per_frame'] / figures['score_wall_ms_per_frame']:.2f} cores "
        f"busy); with {figures['cores']} cores doing only both, the ratio is at most "
        f"{figures['ratio_ceiling']:.2f}",
        flush=True,
    )
    steady, bare_cpu = figures["daemon_cpu_in_full_flow"], figures["bare_whole_study_cpu"]
    if steady:
        print(
            f"  CPU, daemon in full flow (frames {checkpoint} to "
            f"{late_checkpoint(figures['frames'])}): "
            f"{steady['process_cpu_ms_per_frame']:.2f} ms a frame; bare ensemble over every "
            f"frame, before / after: {bare_cpu['before']['process_cpu_ms_per_frame']:.2f} / "
            f"{bare_cpu['after']['process_cpu_ms_per_frame']:.2f} ms a frame (scoring only). "
            "Cores busy elsewhere / stolen by the host, daemon: "
            f"{steady['cores_others']:.2f} / {steady['cores_steal']:.2f}; bare before: "
            f"{bare_cpu['before']['cores_others']:.2f} / {bare_cpu['before']['cores_steal']:.2f}"
            f"; after: {bare_cpu['after']['cores_others']:.2f} / "
            f"{bare_cpu['after']['cores_steal']:.2f}",
            flush=True,
        )
    for name in ("summary_at_checkpoint", "summary_at_end", "verify_at_end"):
        if figures.get(name):
            tool = figures[name]
            print(
                f"  gicls-audit {name.replace('_', ' ')}: {tool['rows']} rows, "
                f"{tool['seconds']:.1f} s, peak RSS {tool['peak_rss_mib']:.0f} MiB",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    from gicls.config import DEFAULT_CLASSES, TrainConfig
    from gicls.training.demo_video import read_truth, write_video

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000, help="frames in the study")
    parser.add_argument("--size", type=int, default=336, help="frame side in pixels")
    parser.add_argument(
        "--model-size",
        type=int,
        default=TrainConfig().image_size,
        help="the bundle's image size (default: the product's default)",
    )
    parser.add_argument("--kind", choices=("video", "folder", "both"), default="both")
    parser.add_argument("--checkpoint", type=int, default=5_000, help="RSS read at this frame")
    parser.add_argument(
        "--bare-frames",
        type=int,
        default=1_024,
        help="first frames the bare ensemble scores, best of three passes",
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args(argv)
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    models_dir = work / f"bundle-{args.model_size}"
    if not (models_dir / "manifest.json").exists():
        log(f"writing the bundle (10 x seed_cnn, {args.model_size} px, untrained)")
        fixtures.write_bundle(models_dir, args.model_size)
    video = work / f"{STEM}.mp4"
    if not video.exists() or read_truth(video).frames != args.frames:
        log(f"writing a {args.frames}-frame {args.size} px synthetic video")
        write_video(video, DEFAULT_CLASSES, args.frames, args.size, FPS)
    folder = work / "frames"
    kinds = ("video", "folder") if args.kind == "both" else (args.kind,)
    results = {}
    ensemble = load_bare_ensemble(models_dir)
    for kind in kinds:
        if kind == "video":
            chunks_of = partial(video_chunks, video, ensemble.image_size)
        else:
            if sum(1 for _ in folder.glob("*.jpg")) != args.frames:
                log(f"writing the video's frames as JPEGs into {folder}")
                write_folder(video, folder, args.frames)
            chunks_of = partial(folder_chunks, folder, ensemble.image_size)
        log(f"{kind}: bare fused ensemble on the study's first {args.bare_frames} frames")
        bare = bare_figures(ensemble, chunks_of(args.bare_frames))
        log(f"{kind}: bare fused ensemble on every frame of the study, before the daemon")
        whole_before, cpu_before = whole_study_fps(
            ensemble, chunks_of(WHOLE_STUDY_CHUNK), f"{kind} bare"
        )
        log(f"{kind}: gicls-daemon run --once on the study")
        site = work / f"site-{kind}"
        shutil.rmtree(site, ignore_errors=True)
        run = run_video if kind == "video" else run_folder
        figures = {
            "frames": args.frames,
            "size": args.size,
            "model_size": args.model_size,
            "bare_fps": bare.fps,
            "bare_precision": bare.precision,
            "cores": CORES,
            "decode_cpu_ms_per_frame": bare.decode_cpu_ms,
            "score_cpu_ms_per_frame": bare.score_cpu_ms,
            "score_wall_ms_per_frame": bare.score_wall_ms,
            "ratio_ceiling": bare.ratio_ceiling(CORES),
        }
        study = video if kind == "video" else folder
        figures |= run(site, models_dir, study, args.checkpoint, args.frames)
        log(f"{kind}: bare fused ensemble on every frame of the study, after the daemon")
        whole_after, cpu_after = whole_study_fps(
            ensemble, chunks_of(WHOLE_STUDY_CHUNK), f"{kind} bare"
        )
        figures["bare_whole_study_fps"] = {"before": whole_before, "after": whole_after}
        figures["bare_whole_study_cpu"] = {"before": cpu_before, "after": cpu_after}
        figures["ratio"] = figures["daemon_fps"] / bare.fps
        # Against the faster of the two whole-study passes: the machine's speed drifts over a
        # long study, and bracketing the daemon's run keeps the drift from flattering it.
        figures["ratio_whole_study"] = figures["daemon_fps"] / max(whole_before, whole_after)
        results[kind] = figures
        (work / f"{kind}.json").write_text(json.dumps(figures, indent=1) + "\n")
        print_figures(kind, figures, args.checkpoint)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
