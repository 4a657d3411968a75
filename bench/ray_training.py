"""Ray training fan-out against sequential local training, in one run on the same data.

Both are `gicls-train all` as real subprocesses on one synthetic labelled tree (the project's
demo images), with the same settings; only ``[cluster] backend`` differs. The ray run starts a
private Ray on this machine (``address = "local"``: every core, one fit per ``cpus_per_fit``),
so its time includes starting Ray and its workers importing TensorFlow. Two spans per run:

  total   the whole command, process start to exit
  fits    from the split being drawn (``split_done``) to the last fit's last epoch
          (``epoch_done``): where the two backends differ

The ratio is sequential / ray: above 1 the fan-out is faster.

    .venv/bin/python -m bench.ray_training                     # 4 classes x 40 images, 64 px
    .venv/bin/python -m bench.ray_training --classes 6 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from bench.daemon_runs import BIN, parse_ts
from bench.fixtures import config_text
from gicls.config import DEFAULT_CLASSES
from gicls.training.demo_data import generate_demo_data

DEFAULT_WORK = Path(__file__).resolve().parent / "results" / "ray_training"


def run_training(folder: Path, sections: dict, classes: tuple[str, ...]) -> dict[str, float]:
    """`gicls-train all` in ``folder``; its total and fits spans in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    config.write_text(config_text(sections, classes))
    started = time.perf_counter()
    done = subprocess.run(
        [BIN / "gicls-train", "all", "-c", config], capture_output=True, text=True, check=False
    )
    total = time.perf_counter() - started
    (folder / "stderr.log").write_text(done.stderr)  # its timeline, to read after the run
    if done.returncode != 0:
        raise SystemExit(f"gicls-train all failed in {folder}:\n{done.stderr[-3000:]}")
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    split = next(parse_ts(e["timestamp"]) for e in events if e["event"] == "split_done")
    last_epoch = max(parse_ts(e["timestamp"]) for e in events if e["event"] == "epoch_done")
    return {"total": total, "fits": last_epoch - split}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=4, help="conditions (= fits)")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=64, help="image and model input side")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cpus-per-fit", type=float, default=1.0)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()

    classes = DEFAULT_CLASSES[: args.classes]
    shutil.rmtree(args.work, ignore_errors=True)
    data = args.work / "data"
    generate_demo_data(data, classes, args.per_class, args.size)
    common = {
        "paths": {"training_dir": data},
        "balance": {"target_count": args.per_class * 2, "materialize": "none"},
        "train": {"image_size": args.size, "epochs": args.epochs},
    }
    spans = {}
    for backend in ("local", "ray"):
        cluster = {"backend": backend, "address": "local", "cpus_per_fit": args.cpus_per_fit}
        spans[backend] = run_training(args.work / backend, {**common, "cluster": cluster}, classes)

    print(
        f"{args.classes} fits, {args.per_class} images/class at {args.size} px, "
        f"{args.epochs} epochs, cpus_per_fit {args.cpus_per_fit:g}"
    )
    print(f"{'span':<8}{'sequential s':>14}{'ray s':>10}{'sequential/ray':>16}")
    for span in ("total", "fits"):
        local, ray = spans["local"][span], spans["ray"][span]
        print(f"{span:<8}{local:>14.1f}{ray:>10.1f}{local / ray:>16.2f}")


if __name__ == "__main__":
    main()
