"""Precision benchmark: float32 against bfloat16 (and float16) of one bundle, in one run, and
the guard's verdict under the criterion before issue 14 and under today's.

  bundle  ten untrained seed_cnn models at --size px (default 128) whose guard frames are
          --frames synthetic capsule-like frames of the demo generator, or --models DIR (a
          trained bundle, with its own held-out guard frames)
  speed   images/s of the bare fused ensemble on --images synthetic frames, batches of 32,
          best of 3 passes, per precision served (bench.e2e.fused_rate); the ratio to float32
  guard   on the bundle's guard frames: "old" = argmax agreement on at least 99.5 % of them
          (the criterion before issue 14), "new" = gicls.models.guard.judge_agreement

    .venv/bin/python -m bench.precision
    .venv/bin/python -m bench.precision --models demo/Models --precisions bfloat16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.e2e import fused_rate  # noqa: E402

BATCH = 32
# The criterion before issue 14: this share of the guard frames' argmax had to agree.
OLD_MIN_AGREEMENT = 0.995


def synthetic_frames(count: int, size: int, seed: int) -> np.ndarray:
    """uint8 (count, size, size, 3) demo-generator frames, cycling through the classes' cues."""
    from gicls.config import DEFAULT_CLASSES
    from gicls.training.demo_data import seeded_synthetic_image

    return np.stack(
        [
            seeded_synthetic_image(DEFAULT_CLASSES[n % 10], n % 10, n, size, seed)
            for n in range(count)
        ]
    )


def measure(models_dir: Path, precisions: list[str], images: int) -> None:
    from gicls.models.ensemble import FusedEnsemble

    exact = FusedEnsemble.from_bundle(models_dir)
    frames = synthetic_frames(images, exact.image_size, seed=1)
    base = fused_rate(exact, frames, BATCH)
    guard = exact.manifest.guard.images if exact.manifest.guard else 0
    print(f"bundle {models_dir} ({exact.bundle_id}), {len(exact.classes)} models, ", end="")
    print(f"{exact.image_size} px, {guard} guard frames; timed on {images} synthetic frames")
    print(f"float32: {base:.1f} images/s")
    for precision in precisions:
        ensemble = FusedEnsemble.from_bundle(models_dir, precision=precision)
        verdict = ensemble.verdict
        if verdict is None:
            print(f"{precision}: not judged ({ensemble.refused})")
            continue
        old = verdict.agreeing_all / verdict.frames
        old_says = "accepted" if old >= OLD_MIN_AGREEMENT else "refused"
        new_says = "accepted" if verdict.refused is None else f"refused ({verdict.refused})"
        print(f"{precision}: old criterion: argmax agrees on {verdict.agreeing_all}/", end="")
        print(f"{verdict.frames} = {old:.4f} (>= {OLD_MIN_AGREEMENT} needed): {old_says}")
        print(f"{precision}: new criterion: {verdict.describe()}: {new_says}")
        if ensemble.precision != precision:
            print(f"{precision}: not served, so not timed")
            continue
        rate = fused_rate(ensemble, frames, BATCH)
        print(f"{precision}: {rate:.1f} images/s = {rate / base:.2f}x float32")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="a bundle (default: untrained, generated)")
    parser.add_argument("--size", type=int, default=128, help="untrained bundle's image size")
    parser.add_argument("--frames", type=int, default=128, help="untrained bundle's guard frames")
    parser.add_argument("--images", type=int, default=256, help="frames timed per precision")
    parser.add_argument("--precisions", default="bfloat16,float16")
    args = parser.parse_args(argv)

    import gicls  # noqa: F401  (filters TensorFlow's start-up lines)
    from gicls.config import DEFAULT_CLASSES
    from gicls.daemon.serving import configure_threads
    from gicls.models.untrained import write_untrained_bundle

    configure_threads()  # as the daemon runs
    precisions = [p for p in args.precisions.split(",") if p]
    if args.models is not None:
        measure(args.models, precisions, args.images)
        return 0
    with tempfile.TemporaryDirectory(prefix="gicls-bench-precision-") as work:
        models_dir = write_untrained_bundle(
            Path(work) / "Models",
            DEFAULT_CLASSES,
            args.size,
            guard_frames=synthetic_frames(args.frames, args.size, seed=0),
        )
        measure(models_dir, precisions, args.images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
