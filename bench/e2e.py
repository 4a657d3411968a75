"""End-to-end benchmark: the classic per-image loop, the bare fused ensemble and gicls itself.

Every figure is measured in this one run on the same N synthetic 224x224 JPEGs and one bundle
of ten untrained seed_cnn models (speed does not depend on the weights):

  a  classic loop: per image, keras load_img + model.predict on that one image, ten models
  b  bare fused ensemble (float32 and bfloat16): one graph call per batch of max_batch
     in-memory uint8 tensors, best of 3 passes; the ceiling for this architecture here
  c  `gicls-daemon run --once` (real subprocess) on an inbox of the N files, float32:
     images / (daemon_ready -> last batch_done) from the daemon's own JSON log; this covers
     scan, settle (stability_seconds = 0), claim, read + sha256, decode, infer, link, unlink,
     journal, audit rows and every fsync, but not the TensorFlow import or model load
  d  = c with [inference] precision = "bfloat16"; argmax agreement = share of files whose
     predicted_class is the same in the two runs' audit logs
  e  training: images per second of training pass through `gicls-train fit`, against
     image_dataset_from_directory + model.fit of the classic recipe on the same balanced
     folder at the same settings, and the arithmetic ceiling (bench/training_speed.py)
  f  peak RSS of the daemon (kernel high-water mark via wait4), and one image dropped into an
     idle daemon (default stability_seconds / max_wait_ms), 20 times: drop -> audit row
     (processed_at) and the row's latency_ms (settled -> logged)
  scale  peak RSS with 5,000 vs 50,000 small files waiting at start-up (64 px bundle), each
     daemon stopped (SIGTERM) once it has logged SCALE_ROWS rows

    .venv/bin/python bench/e2e.py                 # the whole table (make bench)
    .venv/bin/python bench/e2e.py --images 64 --skip training,scale   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import fixtures, training_speed  # noqa: E402
from bench.daemon_runs import (  # noqa: E402
    Daemon,
    count_rows,
    parse_ts,
    run_once,
    write_site,
)

DEFAULT_WORK = REPO_ROOT / "bench" / "results" / "e2e"
MAX_BATCH = 32
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32, 64)
LATENCY_DROPS = 20
SCALE_COUNTS = (5_000, 50_000)
SCALE_ROWS = 2_000
SCALE_IMAGE_SIZE = 64


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------------- in-process figures


def classic_loop(models_dir: Path, paths: list[Path], classes) -> float:
    """Images per second of the classic script: each image, each model, one predict call."""
    import keras
    import numpy as np

    models = [keras.models.load_model(models_dir / f"{c}_model.keras") for c in classes]
    warm = np.zeros((1, fixtures.IMAGE_SIZE, fixtures.IMAGE_SIZE, 3), np.float32)
    for model in models:
        model.predict(warm, verbose=0)
    started = time.perf_counter()
    for path in paths:
        image = keras.utils.load_img(path, target_size=(fixtures.IMAGE_SIZE, fixtures.IMAGE_SIZE))
        batch = np.expand_dims(keras.utils.img_to_array(image), 0)
        scores = [float(model.predict(batch, verbose=0)[0, 0]) for model in models]
        _ = classes[int(np.argmax(scores))]
    return len(paths) / (time.perf_counter() - started)


def score_pass(ensemble, images, batch: int) -> None:
    """Score ``images`` once, ``batch`` at a time, as the daemon sends them."""
    for start in range(0, len(images), batch):
        ensemble(images[start : start + batch])


def fused_rate(ensemble, images, batch: int, passes: int = 3) -> float:
    ensemble.warm_up(min(batch, len(images)))
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        score_pass(ensemble, images, batch)
        best = min(best, time.perf_counter() - started)
    return len(images) / best


def bare_figures(models_dir: Path, work: Path, count: int, skip: str) -> dict:
    """b, b' and the batch sweep, with the thread settings the daemon uses."""
    import numpy as np

    from gicls.daemon.serving import configure_threads
    from gicls.models.ensemble import FusedEnsemble, argmax_agreement
    from gicls.models.preprocessing import decode_image

    configure_threads()
    paths = sorted((work / "images").glob("img_*.jpg"))[:count]
    pixels = np.stack([decode_image(p, fixtures.IMAGE_SIZE) for p in paths])
    rows = np.arange(len(pixels))
    f32 = FusedEnsemble.from_bundle(models_dir)
    bf16 = FusedEnsemble.from_bundle(models_dir, precision="bfloat16")
    result = {
        "b": fused_rate(f32, pixels, MAX_BATCH),
        "b_bf16": fused_rate(bf16, pixels, MAX_BATCH),
        "bare_agreement": argmax_agreement(
            f32.score_rows(pixels, rows), bf16.score_rows(pixels, rows)
        ),
        "sweep": {},
    }
    if "sweep" not in skip:
        subset = pixels[: min(len(pixels), 64)]
        result["sweep"] = {
            "float32": {b: fused_rate(f32, subset, b, passes=2) for b in SWEEP_BATCHES},
            "bfloat16": {b: fused_rate(bf16, subset, b, passes=2) for b in SWEEP_BATCHES},
        }
    return result


# ---------------------------------------------------------------------------- daemon figures


def daemon_site(root: Path, models_dir: Path, paths: list[Path], **overrides) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    inference = overrides.pop("inference", None)
    settings = {"max_batch": MAX_BATCH, "max_wait_ms": 500, "stability_seconds": 0.0}
    write_site(root, models_dir, {**settings, **overrides}, inference)
    for path in paths:
        os.link(path, root / "inbox" / path.name)
    return root


def end_to_end(root: Path, models_dir: Path, paths: list[Path], precision: str):
    daemon_site(root, models_dir, paths, inference={"precision": precision})
    run = run_once(root)
    rows = run.rows()
    if len(rows) != len(paths) or any(r["status"] != "classified" for r in rows):
        raise RuntimeError(f"{root}: expected {len(paths)} classified rows, got {len(rows)}")
    served = "float32"
    if run.first("bfloat16_accepted"):
        served = "bfloat16"
    return run, len(paths) / run.processing_seconds(), served


def idle_latency(root: Path, models_dir: Path, samples: list[Path]) -> dict:
    """Drop one file at a time into an idle daemon with the default readiness settings."""
    from gicls.config import DaemonConfig

    defaults = DaemonConfig()
    daemon_site(
        root,
        models_dir,
        [],
        max_wait_ms=defaults.max_wait_ms,
        stability_seconds=defaults.stability_seconds,
    )
    daemon = Daemon(root, once=False)
    daemon.wait_for("daemon_ready", timeout=300)
    drop_to_logged, settled_to_logged = [], []
    try:
        for k in range(LATENCY_DROPS):
            time.sleep(0.5)
            staging = root / "inbox" / f".drop_{k}.jpg"  # ignored: dot-file
            staging.write_bytes(samples[k % len(samples)].read_bytes())
            dropped = time.time()
            os.rename(staging, root / "inbox" / f"drop_{k:02d}.jpg")
            deadline = time.monotonic() + 60
            while count_rows(root / "audit_log.csv") < k + 1:
                daemon._sample_hwm()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"drop {k} not logged; see {daemon.run.log_path}")
                time.sleep(0.01)
            row = daemon.run.rows()[k]
            drop_to_logged.append((parse_ts(row["processed_at"]) - dropped) * 1000)
            settled_to_logged.append(float(row["latency_ms"]))
    finally:
        daemon.stop()
    run = daemon.wait()

    def pct(values, q):
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "stability_seconds": defaults.stability_seconds,
        "max_wait_ms": defaults.max_wait_ms,
        "drop_p50": pct(drop_to_logged, 0.5),
        "drop_p95": pct(drop_to_logged, 0.95),
        "settled_p50": pct(settled_to_logged, 0.5),
        "settled_p95": pct(settled_to_logged, 0.95),
        "peak_rss_mib": run.peak_rss_mib,
    }


def scale_rss(work: Path, count: int) -> dict:
    """Peak RSS of a daemon that finds ``count`` small files waiting at start-up."""
    import numpy as np
    from PIL import Image

    models_dir = work / f"bundle_{SCALE_IMAGE_SIZE}"
    if not (models_dir / "manifest.json").exists():
        fixtures.write_bundle(models_dir, image_size=SCALE_IMAGE_SIZE)
    pool = work / "scale_pool"  # written once, reused by later runs
    pool.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in range(max(SCALE_COUNTS)):
        path = pool / f"s_{n:06d}.jpg"
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # always drawn: same files
        if not path.exists():
            Image.fromarray(pixels).save(path, quality=85)
    waiting = [pool / f"s_{n:06d}.jpg" for n in range(count)]
    root = daemon_site(work / f"scale_{count}", models_dir, waiting)
    daemon = Daemon(root, once=True)
    deadline = time.monotonic() + 1800
    while count_rows(root / "audit_log.csv") < SCALE_ROWS and daemon.process.poll() is None:
        daemon._sample_hwm()
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    daemon.stop()
    run = daemon.wait()
    ready = run.first("daemon_ready") or {}
    return {"count": count, "peak_rss_mib": run.peak_rss_mib, "waiting": ready.get("waiting")}


# ------------------------------------------------------------------------------------ report


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import tensorflow as tf

    python = platform.python_version()
    return f"{model}, {os.cpu_count()} cores, TensorFlow {tf.__version__}, Python {python}"


def plot_sweep(sweep: dict, e2e: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, points in sweep.items():
        ax.plot(list(points), list(points.values()), marker="o", label=f"bare fused, {label}")
    for label, points in e2e.items():
        ax.plot(
            list(points),
            list(points.values()),
            marker="s",
            linestyle="--",
            label=f"gicls-daemon --once, {label}",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (images per graph call / daemon max_batch)")
    ax.set_ylabel("images per second")
    ax.set_title("Ten seed_cnn models at 224 px, fused")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=192, help="N, the images every figure uses")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--skip", default="", help="comma list of: classic,sweep,latency,scale,training,e2e-sweep"
    )
    args = parser.parse_args(argv)
    if args.bare:
        print(json.dumps(bare_figures(args.bare, args.work.resolve(), args.images, args.skip)))
        return 0
    skip = set(filter(None, args.skip.split(",")))
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    log(f"load average before: {load_before}")

    models_dir = work / "bundle_224"
    if not (models_dir / "manifest.json").exists():
        log("writing the bundle (10 x seed_cnn, 224 px, untrained)")
        fixtures.write_bundle(models_dir)
    images_dir = work / "images"
    paths = sorted(images_dir.glob("img_*.jpg"))[: args.images]
    if len(paths) < args.images:
        log(f"writing {args.images} JPEGs")
        paths = fixtures.write_images(images_dir, args.images)

    from gicls.config import DEFAULT_CLASSES

    results: dict = {"n": len(paths)}
    if "classic" not in skip:
        log("a: classic per-image predict loop")
        results["a"] = classic_loop(models_dir, paths, DEFAULT_CLASSES)

    log("b: bare fused ensemble (fresh process, the daemon's thread settings)")
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--bare",
            str(models_dir),
            "--images",
            str(len(paths)),
            "--work",
            str(work),
        ]
        + (["--skip", "sweep"] if "sweep" in skip else []),
        capture_output=True,
        text=True,
        check=True,
    )
    bare = json.loads(out.stdout.strip().splitlines()[-1])
    results.update({k: bare[k] for k in ("b", "b_bf16", "bare_agreement")})
    sweep = {k: {int(b): v for b, v in p.items()} for k, p in bare["sweep"].items()}

    log("c: gicls-daemon run --once, float32")
    run_c, results["c"], _ = end_to_end(work / "e2e_float32", models_dir, paths, "float32")
    log("d: gicls-daemon run --once, bfloat16")
    run_d, results["d"], results["d_served"] = end_to_end(
        work / "e2e_bfloat16", models_dir, paths, "bfloat16"
    )
    guard = run_d.first("bfloat16_accepted") or run_d.first("bfloat16_refused") or {}
    results["d_guard"] = guard.get("agreement")
    predicted_c = {r["file_name"]: r["predicted_class"] for r in run_c.rows()}
    predicted_d = {r["file_name"]: r["predicted_class"] for r in run_d.rows()}
    results["agreement"] = sum(predicted_c[k] == predicted_d[k] for k in predicted_c) / len(
        predicted_c
    )
    results["rss_c"] = run_c.peak_rss_mib
    results["rss_d"] = run_d.peak_rss_mib
    e2e_sweep = {}
    if "e2e-sweep" not in skip:
        e2e_sweep = {"float32": {}, "bfloat16": {}}
        for batch in (8, 64):
            for precision in ("float32", "bfloat16"):
                log(f"e2e sweep: max_batch={batch} {precision}")
                root = work / f"sweep_{precision}_{batch}"
                daemon_site(
                    root, models_dir, paths, max_batch=batch, inference={"precision": precision}
                )
                e2e_sweep[precision][batch] = len(paths) / run_once(root).processing_seconds()
        e2e_sweep["float32"][MAX_BATCH] = results["c"]
        e2e_sweep["bfloat16"][MAX_BATCH] = results["d"]
        e2e_sweep = {k: dict(sorted(v.items())) for k, v in e2e_sweep.items()}

    if "latency" not in skip:
        log("f: idle single-image latency")
        results["f"] = idle_latency(work / "latency", models_dir, paths)
    if "scale" not in skip:
        for count in SCALE_COUNTS:
            log(f"scale: {count} files waiting")
            results[f"scale_{count}"] = scale_rss(work, count)
    if "training" not in skip:
        log("e: training")
        results["e"] = training_speed.figures(work, log)

    results["load_after"] = load_average()
    results["load_before"] = load_before
    results["machine"] = machine()
    plot = work.parent / "throughput_vs_batch.png"
    if sweep:
        plot_sweep(sweep, e2e_sweep, plot)
    results["sweep"] = {k: {str(b): v for b, v in p.items()} for k, p in sweep.items()}
    results["e2e_sweep"] = {k: {str(b): v for b, v in p.items()} for k, p in e2e_sweep.items()}
    (work.parent / "e2e.json").write_text(json.dumps(results, indent=2))
    print(render(results, plot if sweep else None))
    return 0


def ratios(r: dict) -> dict:
    """The ratios the benchmark's goals are stated in, from its measured figures ``r``."""
    q: dict = {"c/b": r["c"] / r["b"], "d/c": r["d"] / r["c"], "d/b_bf16": r["d"] / r["b_bf16"]}
    if "a" in r:
        q["c/a"] = r["c"] / r["a"]
    if "e" in r:
        classic = r["e"]["classic"]
        for name, e in r["e"].items():
            if name != "classic":
                q[f"e:{name}/classic"] = (
                    e["rate"] / classic["rate"],
                    e["best_rate"] / classic["best_rate"],
                )
    if "f" in r:
        q["f:p95_limit_ms"] = 1000 * r["f"]["stability_seconds"] + 1000
        q["f:p95_met"] = r["f"]["drop_p95"] <= q["f:p95_limit_ms"]
    if all(f"scale_{c}" in r for c in SCALE_COUNTS):
        small, large = (r[f"scale_{c}"]["peak_rss_mib"] for c in SCALE_COUNTS)
        q["scale:rss_ratio"] = large / small
    return q


def render(r: dict, plot: Path | None) -> str:
    n = r["n"]
    lines = [
        f"gicls end-to-end benchmark, N = {n} JPEGs 224x224, 10 x seed_cnn (untrained), "
        f"max_batch {MAX_BATCH}",
        f"machine: {r['machine']}",
        f"load average (1, 5, 15 min): before {r['load_before']}, after {r['load_after']}",
        "",
        f"{'figure':<62} {'value':>12}",
        f"{'-' * 62} {'-' * 12}",
    ]

    def row(label: str, value: str) -> None:
        lines.append(f"{label:<62} {value:>12}")

    if "a" in r:
        row("a  classic loop: predict per image per model (img/s)", f"{r['a']:.2f}")
    row("b  bare fused ensemble, float32, batch 32 (img/s)", f"{r['b']:.1f}")
    row("b' bare fused ensemble, bfloat16, batch 32 (img/s)", f"{r['b_bf16']:.1f}")
    row("c  gicls-daemon --once end to end, float32 (img/s)", f"{r['c']:.1f}")
    row(
        f"d  gicls-daemon --once end to end, bfloat16 [{r['d_served']} served] (img/s)",
        f"{r['d']:.1f}",
    )
    row(
        "d  argmax agreement bfloat16 vs float32, audit logs of c and d",
        f"{100 * r['agreement']:.2f} %",
    )
    if r.get("d_guard") is not None:
        row("d  start-up guard agreement (synthetic sample)", f"{100 * r['d_guard']:.2f} %")
    row("f  peak RSS of the daemon during c / d (MiB)", f"{r['rss_c']:.0f} / {r['rss_d']:.0f}")
    if "f" in r:
        f = r["f"]
        row(
            f"f  idle latency drop->logged p50 / p95 (ms; stability {f['stability_seconds']} s)",
            f"{f['drop_p50']:.0f} / {f['drop_p95']:.0f}",
        )
        row(
            "f  idle latency settled->logged (audit latency_ms) p50 / p95",
            f"{f['settled_p50']:.0f} / {f['settled_p95']:.0f}",
        )
    for count in SCALE_COUNTS:
        if f"scale_{count}" in r:
            s = r[f"scale_{count}"]
            row(
                f"scale  peak RSS, {count} files waiting at start-up (MiB)",
                f"{s['peak_rss_mib']:.0f}",
            )
    if "e" in r:
        epochs = training_speed.TRAIN_EPOCHS
        lines.append(f"e  training, img/s as mean of epochs 2-{epochs} / fastest epoch:")
        for name, label in training_speed.ROW_LABELS.items():
            e = r["e"][name]
            row(f"e  {label}", f"{e['rate']:.1f} / {e['best_rate']:.1f}")
    lines += ["", "ratios (goal)"]
    q = ratios(r)
    if "c/a" in q:
        row("c / a   (>= 15)", f"{q['c/a']:.1f}")
    row("c / b   (>= 0.85)", f"{q['c/b']:.2f}")
    row("d / c   (>= 1.6, agreement >= 99.5 %)", f"{q['d/c']:.2f}")
    row("d / b'", f"{q['d/b_bf16']:.2f}")
    for name in training_speed.ROW_LABELS:
        if f"e:{name}/classic" in q:
            mean, fastest = q[f"e:{name}/classic"]
            goal = "   (>= 1.5)" if name.startswith("gicls") else ""
            row(f"e  {name} / classic, mean / fastest{goal}", f"{mean:.2f} / {fastest:.2f}")
    if "f:p95_limit_ms" in q:
        row(
            f"f  p95 drop->logged <= stability + 1 s ({q['f:p95_limit_ms']:.0f} ms)",
            "met" if q["f:p95_met"] else "MISSED",
        )
    if "scale:rss_ratio" in q:
        row("scale  RSS(50k) / RSS(5k)   (<= 1.10)", f"{q['scale:rss_ratio']:.3f}")
    if plot:
        lines.append(f"\nthroughput vs batch size: {plot.relative_to(REPO_ROOT)}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
