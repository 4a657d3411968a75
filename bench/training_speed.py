"""Figure e of bench/e2e.py: training speed of gicls-train fit against the classic pipeline.

All on the same synthetic 224x224 JPEGs, two classes, batch 32, image_size 224, the seed_cnn
network; each run in a fresh process, TRAIN_EPOCHS epochs. The rate of a run is its training
images per second of training pass (epoch time minus its validation pass) over every epoch but
the first, which also traces the graph, as a mean and in the fastest of those epochs:

  classic    image_dataset_from_directory (decodes and resizes every epoch) + model.fit of the
             classic recipe (Rescaling, flip, rotation 0.2 inside the model) on the balanced
             folder `gicls-train balance` writes
  gicls...   `gicls-train fit <one condition>` (real subprocess), rates from its epoch_done
             log lines; the variants change one setting each (VARIANTS)
  ceiling    the same network without augmentation layers, fitted on one uint8 batch held in
             memory and repeated: the arithmetic of a training step at this batch and
             precision, which no input pipeline or cheaper augmentation can beat; and the
             same with the classic flip + rotation layers: the ceiling of any pipeline that
             keeps the classic augmentation (the gap between the two is the augmentation)

    .venv/bin/python -m bench.training_speed              # this figure alone
    .venv/bin/python -m bench.training_speed --profile    # + where gicls' epoch goes

``--profile`` also runs the product's own fit (``fit_into``, the classic settings, the same
images) once more under TensorFlow's profiler for its second epoch, and prints the share of op
time per part of the step: convolutions forward (the epoch's validation pass included) and
backward, the augmentation layers, pooling, the optimizer, the input pipeline (the uint8
gather) and the rest.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.daemon_runs import BIN

TRAIN_CLASSES = ("lesion", "normal")
TRAIN_IMAGES = 480
TRAIN_EPOCHS = 5
BATCH = 32
DEFAULT_WORK = Path(__file__).resolve().parent / "results" / "training_speed"
CLASSIC_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "classic-config.toml"

# name -> (table label, config sections layered over the classic settings)
VARIANTS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "gicls": ("gicls-train fit, same settings: flip + rotation 0.2, float32", {}),
    "gicls_dihedral": (
        "gicls-train fit, flip + quarter turns instead of rotation",
        {"augment": {"rotation": 0.0, "rot90": True}},
    ),
    "gicls_bf16": (
        "gicls-train fit, same settings, mixed_bfloat16",
        {"train": {"precision": "mixed_bfloat16"}},
    ),
    "gicls_dihedral_bf16": (
        "gicls-train fit, quarter turns + mixed_bfloat16",
        {"train": {"precision": "mixed_bfloat16"}, "augment": {"rotation": 0.0, "rot90": True}},
    ),
}


def rate(images: int, epoch_seconds: list[float], validation_seconds: list[float]) -> dict:
    """Images per second of training pass over every epoch but the first, and in the fastest.

    The mean is what a run costs; the fastest epoch is what the pipeline can do when nothing
    else (the machine's noise, a stall in the input pipeline) gets in the way.
    """
    train_seconds = [e - v for e, v in zip(epoch_seconds, validation_seconds, strict=True)][1:]
    return {
        "train_images": images,
        "train_seconds": train_seconds,
        "rate": images * len(train_seconds) / sum(train_seconds),
        "best_rate": images / min(train_seconds),
    }


def classic_sections() -> dict[str, dict[str, Any]]:
    """The classic settings (examples/classic-config.toml), the base of every gicls variant."""
    return tomllib.loads(CLASSIC_CONFIG.read_text(encoding="utf-8"))


def gicls_fit(work: Path, tree: Path, name: str, sections: dict[str, dict[str, Any]]) -> dict:
    """Run `gicls-train fit` on the first class of ``tree``; its rate from the epoch log."""
    root = work / f"train_{name}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    classic = classic_sections()
    config = {
        **classic,
        "paths": {
            "training_dir": str(tree),
            "balanced_dir": str(root / "Balanced_Data"),
            "models_dir": str(root / "Models"),
        },
        "balance": {
            **classic["balance"],
            "target_count": TRAIN_IMAGES // 2,
            "materialize": "hardlink",
        },
        "train": {
            **classic["train"],
            "image_size": fixtures.IMAGE_SIZE,
            "batch_size": BATCH,
            "epochs": TRAIN_EPOCHS,
            # Every epoch runs: the figure must not depend on when early stopping fires.
            "early_stopping_patience": TRAIN_EPOCHS,
            **sections.get("train", {}),
        },
        "augment": {**classic["augment"], **sections.get("augment", {})},
    }
    (root / "config.toml").write_text(fixtures.config_text(config, TRAIN_CLASSES))
    out = subprocess.run(
        [str(BIN / "gicls-train"), "fit", TRAIN_CLASSES[0], "-c", str(root / "config.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    (root / "train.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"gicls-train fit failed; see {root / 'train.log'}")
    epochs = [
        json.loads(line)
        for line in out.stderr.splitlines()  # logs go to stderr
        if line.startswith("{") and '"epoch_done"' in line
    ]
    manifest = json.loads((root / "Models" / "manifest.json").read_text())
    return rate(
        manifest["models"][TRAIN_CLASSES[0]]["train_entries"],
        [float(e["seconds"]) for e in epochs],
        [float(e["validation_seconds"]) for e in epochs],
    )


def in_fresh_process(*args: str) -> dict:
    """Run this module with ``args`` in a new interpreter: nothing left over from other runs."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.training_speed", *args],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def classic_fit(balanced: Path) -> dict:
    """The classic recipe: image_dataset_from_directory + model.fit, same model and settings."""
    import keras

    from gicls.models.architectures import CLASSIC_AUGMENT, build_model
    from gicls.training.fit import EpochTimer

    size = fixtures.IMAGE_SIZE
    train, val = keras.utils.image_dataset_from_directory(
        balanced,
        validation_split=0.2,
        subset="both",
        seed=42,
        image_size=(size, size),
        batch_size=BATCH,
        label_mode="binary",
    )
    model = build_model("seed_cnn", size, CLASSIC_AUGMENT)
    model.compile(
        optimizer=keras.optimizers.Adam(0.001), loss="binary_crossentropy", metrics=["accuracy"]
    )
    timer = EpochTimer()
    model.fit(train, validation_data=val, epochs=TRAIN_EPOCHS, callbacks=[timer], verbose=0)
    images = sum(int(x.shape[0]) for x, _ in train)
    return rate(images, timer.epoch_seconds, timer.validation_seconds)


def ceiling_fit(images: int, precision: str, augmented: bool = False) -> dict:
    """seed_cnn fitted on one in-memory batch repeated: the arithmetic alone, without
    augmentation, or (``augmented``) with the classic flip and rotation layers, which says how
    much of the gap to the bare ceiling is the augmentation itself rather than the input
    pipeline."""
    import keras
    import numpy as np
    import tensorflow as tf

    from gicls.models.architectures import CLASSIC_AUGMENT
    from gicls.training.fit import EpochTimer, new_model

    size = fixtures.IMAGE_SIZE
    pixels = np.random.default_rng(0).integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)
    labels = (np.arange(BATCH) % 2).astype(np.float32).reshape(-1, 1)
    augment = (
        CLASSIC_AUGMENT
        if augmented
        else CLASSIC_AUGMENT.model_copy(update={"flip": "none", "rotation": 0.0})
    )
    model = new_model("seed_cnn", size, augment, precision)
    model.compile(
        optimizer=keras.optimizers.Adam(0.001), loss="binary_crossentropy", metrics=["accuracy"]
    )
    timer = EpochTimer()
    steps = images // BATCH
    model.fit(
        tf.data.Dataset.from_tensors((pixels, labels)).repeat(),
        steps_per_epoch=steps,
        epochs=TRAIN_EPOCHS,
        callbacks=[timer],
        verbose=0,
    )
    return rate(steps * BATCH, timer.epoch_seconds, timer.validation_seconds)


def figures(work: Path, log=print) -> dict:
    """Every training figure, each run in its own process, on one set of TRAIN_IMAGES JPEGs."""
    work = work.resolve()
    images = sorted((work / "train_images").glob("img_*.jpg"))
    if len(images) < TRAIN_IMAGES:
        images = fixtures.write_images(work / "train_images", TRAIN_IMAGES, seed=1)
    tree = work / "train_tree"
    shutil.rmtree(tree, ignore_errors=True)
    fixtures.write_labelled_tree(tree, images[:TRAIN_IMAGES], TRAIN_CLASSES)
    results = {}
    for name, (_, sections) in VARIANTS.items():
        log(f"training: gicls-train fit {TRAIN_CLASSES[0]} ({name})")
        results[name] = gicls_fit(work, tree, name, sections)
    # `fit` writes no balanced folders; `balance` writes the same sets (same seed and config).
    root = work / "train_gicls"
    subprocess.run(
        [str(BIN / "gicls-train"), "balance", TRAIN_CLASSES[0], "-c", str(root / "config.toml")],
        cwd=root,
        capture_output=True,
        check=True,
    )
    log("training: classic image_dataset_from_directory + model.fit")
    results["classic"] = in_fresh_process(
        "--classic", str(root / "Balanced_Data" / TRAIN_CLASSES[0])
    )
    for precision in ("float32", "mixed_bfloat16"):
        log(f"training: ceiling, in-memory tensors, no augmentation, {precision}")
        results[f"ceiling_{precision}"] = in_fresh_process(
            "--ceiling", str(results["gicls"]["train_images"]), "--precision", precision
        )
    log("training: ceiling, in-memory tensors, classic flip + rotation layers, float32")
    results["ceiling_augmented_float32"] = in_fresh_process(
        "--ceiling", str(results["gicls"]["train_images"]), "--augmented"
    )
    return results


def profile_epoch(config_path: Path, trace_dir: Path) -> dict[str, float]:
    """Share of op time per part of the step in epoch 2 of gicls' own fit of the condition."""
    import tensorflow as tf

    from gicls.config import load_config
    from gicls.training.pipeline import balance_all, fit_into, prepare_data

    config = load_config(config_path)
    data = prepare_data(config, config.train.image_size)
    balanced = balance_all(config, data, [TRAIN_CLASSES[0]], write=False)[TRAIN_CLASSES[0]]
    shutil.rmtree(trace_dir, ignore_errors=True)
    epochs_done: list[dict[str, Any]] = []

    def around_epoch_two(fields: dict[str, Any]) -> None:
        epochs_done.append(fields)
        if len(epochs_done) == 1:
            tf.profiler.experimental.start(str(trace_dir))
        elif len(epochs_done) == 2:
            tf.profiler.experimental.stop()

    with tempfile.TemporaryDirectory() as folder:
        fit_into(config, data, balanced, Path(folder), "profile", around_epoch_two)
    shares = op_time_shares(next(trace_dir.rglob("*.xplane.pb")))
    shares["epoch_seconds"] = float(epochs_done[1]["seconds"])
    return shares


# What an op is for, from its name (the first pattern that matches wins).
OP_PARTS = (
    ("input pipeline (gather, prefetch)", "Iterator"),
    ("input pipeline (gather, prefetch)", "PyFunc"),
    ("augmentation layers (flip, rotation)", "random_"),
    ("optimizer (Adam)", "adam/"),
    ("convolutions, backward", "gradient_tape/*conv2d"),
    ("convolutions, forward", "conv2d"),
    ("pooling", "max_pooling"),
)


def op_part(op_name: str) -> str:
    for part, pattern in OP_PARTS:
        if fnmatch.fnmatch(op_name, f"*{pattern}*"):
            return part
    return "other (activations, dense, loss, metrics)"


def op_time_shares(xplane: Path) -> dict[str, float]:
    """Op time per part in a TensorFlow profiler trace (XSpace), as shares of all op time.

    Counts the op events of TensorFlow's compute threads (``tf_Compute``, where the executor
    runs each op; the intra-op Eigen threads work inside those events) and of the input
    pipeline's threads (``tf_data``).
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(xplane.read_bytes())
    host = next(plane for plane in space.planes if plane.name == "/host:CPU")
    seconds: dict[str, float] = {}
    for line in host.lines:
        if not line.name.startswith(("tf_Compute", "tf_data")):
            continue
        for event in line.events:
            metadata = host.event_metadata[event.metadata_id]
            if not metadata.display_name:  # executor bookkeeping, not an op
                continue
            part = op_part(metadata.name)
            seconds[part] = seconds.get(part, 0.0) + event.duration_ps / 1e12
    total = sum(seconds.values())
    return {part: value / total for part, value in sorted(seconds.items(), key=lambda i: -i[1])}


ROW_LABELS = {
    "classic": "classic image_dataset_from_directory + fit",
    **{name: label for name, (label, _) in VARIANTS.items()},
    "ceiling_float32": "ceiling: in-memory tensors, no augmentation, float32",
    "ceiling_mixed_bfloat16": "ceiling: in-memory tensors, no augmentation, mixed_bfloat16",
    "ceiling_augmented_float32": "ceiling: in-memory tensors, flip + rotation 0.2, float32",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--classic", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--augmented", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile", action="store_true", help="also profile epoch 2 of gicls' own fit"
    )
    args = parser.parse_args(argv)
    if args.profile_config:
        trace_dir = args.profile_config.parent / "profile"
        print(json.dumps(profile_epoch(args.profile_config, trace_dir)))
    elif args.classic:
        print(json.dumps(classic_fit(args.classic)))
    elif args.ceiling:
        print(json.dumps(ceiling_fit(args.ceiling, args.precision, args.augmented)))
    else:
        results = figures(args.work, log=lambda m: print(m, file=sys.stderr, flush=True))
        classic = results["classic"]
        print(f"{'img/s, mean / fastest epoch':<64} {'':>15}  x classic, mean / fastest")
        for name, label in ROW_LABELS.items():
            r = results[name]
            print(
                f"{label:<64} {r['rate']:6.1f} / {r['best_rate']:6.1f}  "
                f"{r['rate'] / classic['rate']:5.2f} / {r['best_rate'] / classic['best_rate']:5.2f}"
            )
        if args.profile:
            print_profile(args.work.resolve() / "train_gicls" / "config.toml")
    return 0


def print_profile(config_path: Path) -> None:
    print(file=sys.stderr, flush=True)
    print("training: profiling epoch 2 of gicls-train's fit (classic settings)", file=sys.stderr)
    shares = in_fresh_process("--profile-config", str(config_path))
    epoch = shares.pop("epoch_seconds")
    print(f"\nwhere epoch 2 of gicls' fit goes ({epoch:.1f} s; share of op time, TF profiler):")
    for part, share in shares.items():
        print(f"  {part:<44} {share:6.1%}")


if __name__ == "__main__":
    sys.exit(main())
