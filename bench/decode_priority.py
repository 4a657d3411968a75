"""Does the video decode thread's priority change how fast the ensemble scores beside it?

In one process, on the first ``--frames`` frames of the study bench's video (``make
bench-study`` writes it), alternating rounds of four passes, the order rotated each round:

- ``decoded``: the frames decoded beforehand, scored batch by batch (the bare ensemble);
- ``normal``: fed by the daemon's ``Prefetcher`` over ``iter_frame_batches``, decoding on its
  own thread at normal priority while the ensemble scores (the daemon before the change);
- ``idle``: the same with the decode thread at SCHED_IDLE (``background=True``, as the daemon
  decodes videos now; generous ``starved_after`` so it never hands over here);
- ``nice``: the same thread at nice 19.

Prints each pass (frames/s, CPU ms a frame of the process and of its two busiest threads,
TensorFlow's compute threads) and, per variant, the median over rounds of its frames/s
against the ``decoded`` pass of the same round: the machine's speed drifts by more than the
effect, so only the ratios within a round are compared.

    .venv/bin/python -m bench.decode_priority [--frames 768] [--rounds 6]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator

import numpy as np

from bench import cpu_use
from bench.study import DEFAULT_WORK, MAX_BATCH, load_bare_ensemble

VIDEO = DEFAULT_WORK / "bench_study.mp4"
BUNDLE = DEFAULT_WORK / "bundle-128"
IMAGE_SIZE = 128


def main() -> None:
    from gicls.daemon.prefetch import Prefetcher, lower_own_priority
    from gicls.daemon.video_decode import iter_frame_batches
    from gicls.daemon.video_job import DECODE_AHEAD_BATCHES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=768)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if not VIDEO.is_file() or not BUNDLE.is_dir():
        raise SystemExit(f"run `make bench-study` first: it writes {VIDEO} and {BUNDLE}")
    batches = args.frames // MAX_BATCH
    ensemble = load_bare_ensemble(BUNDLE)
    first = itertools.islice(iter_frame_batches(VIDEO, IMAGE_SIZE, MAX_BATCH), batches)
    frames = np.concatenate([batch.pixels for batch in first])
    ensemble.warm_up(MAX_BATCH)

    def decoded() -> None:
        for start in range(0, len(frames), MAX_BATCH):
            ensemble(frames[start : start + MAX_BATCH])

    def prefetched(lower: Callable[[], object] | None, background: bool) -> Callable[[], None]:
        def lowered(source: Iterator) -> Iterator:
            if lower is not None:
                lower()
            yield from source

        def run() -> None:
            source = lowered(iter_frame_batches(VIDEO, IMAGE_SIZE, MAX_BATCH))
            reader = Prefetcher(
                source, DECODE_AHEAD_BATCHES, "video-decode", background, starved_after=600
            )
            for batch in itertools.islice(reader, batches):
                ensemble(batch.pixels)
            reader.close()

        return run

    variants = {
        "decoded": decoded,
        "normal": prefetched(None, background=False),
        "idle": prefetched(None, background=True),
        "nice": prefetched(lambda: os.setpriority(os.PRIO_PROCESS, 0, 19), background=False),
    }
    if not lower_own_priority_allowed(lower_own_priority):
        raise SystemExit("this system refuses SCHED_IDLE: nothing to compare")
    names = list(variants)
    fps: dict[str, list[float]] = {name: [] for name in names}
    print(f"load average before: {os.getloadavg()}", flush=True)
    for round_number in range(args.rounds):
        order = names[round_number % 4 :] + names[: round_number % 4]
        for name in order[::-1] if round_number % 2 else order:
            before, started = cpu_use.snapshot(os.getpid()), time.perf_counter()
            variants[name]()
            wall = time.perf_counter() - started
            use = cpu_use.between(before, cpu_use.snapshot(os.getpid()))
            rate = len(frames) / wall
            fps[name].append(rate)
            busiest = sum(sorted(use.threads.values(), reverse=True)[:2])
            print(
                f"round {round_number} {name}: {rate:.1f} frames/s, process "
                f"{1000 * use.process / len(frames):.2f} CPU ms/frame, two busiest threads "
                f"{1000 * busiest / len(frames):.2f}, others {use.cores(use.others):.2f} cores, "
                f"steal {use.cores(use.steal):.2f}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")
    for name in names[1:]:
        ratios = [mine / bare for mine, bare in zip(fps[name], fps["decoded"], strict=True)]
        print(
            f"{name} / decoded, same round: median {statistics.median(ratios):.3f} "
            f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
        )
    idle_over_normal = [i / n for i, n in zip(fps["idle"], fps["normal"], strict=True)]
    print(
        f"idle / normal, same round: median {statistics.median(idle_over_normal):.3f}, "
        f"idle faster in {sum(r > 1 for r in idle_over_normal)} of {args.rounds} rounds"
    )


def lower_own_priority_allowed(lower: Callable[[], bool]) -> bool:
    """Whether a thread here may take SCHED_IDLE (asked on a thread of its own)."""
    import threading

    allowed: list[bool] = []
    probe = threading.Thread(target=lambda: allowed.append(lower()))
    probe.start()
    probe.join()
    return allowed[0]


if __name__ == "__main__":
    main()
