"""Ten-class benchmark on the real Capsule Vision 2024 frames, through the normal CLI.

Trains a recipe (default: the product's own defaults) with ``gicls-train fit``, one condition
at a time (an interrupted run resumes at the condition it stopped in), on
../shared/data/capsule-vision-2024/training, with the challenge's validation/ as gicls'
validation set, read in place; then ``gicls-train evaluate --data validation/`` (the
organisers' metrics overall, per class and per source, bootstrap intervals, the source probe,
reading loads, and predictions.xlsx: the challenge submission file for the validation
frames); then ``gicls-train evaluate --leave-out SOURCE`` for each ``--loso`` source
(trained on training/ without that source, evaluated on its frames).

    .venv/bin/python -m bench.cv2024             # the default recipe, LOSO SEE-AI + KVASIR
    .venv/bin/python -m bench.cv2024 --recipe fov_sources --loso SEE-AI
    .venv/bin/python -m bench.cv2024 --score-only --recipe default   # re-print a finished run
    .venv/bin/python -m bench.cv2024 --resume --loso SEE-AI  # add a step to a finished run

Validation here shares the four sources (devices, centres) with training: its figures are what
every challenge team over-estimated. Leave-one-source-out is the stand-in for a new hospital.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.recipes import load_recipe, recipe_parser, run_config_text, run_logged, train_cli
from gicls.config import DEFAULT_CLASSES
from gicls.training.cli import with_interval

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "capsule-vision-2024"
DEFAULT_WORK_DIR = REPO_ROOT / "bench" / "results" / "cv2024"
# The two sources with frames of most classes: the others are too narrow to leave out (KID has
# 5 classes and a few hundred frames; AIIMS only Ulcer and Worms).
DEFAULT_LOSO = ("SEE-AI", "KVASIR")
TIME_BUDGET_SECONDS = 60 * 60
# The organisers' ranking rule on their test set.
RANK_RULE = "mean of mean AUC and balanced accuracy"


def config_text(recipe: dict[str, dict[str, Any]], run_dir: Path, seed: int) -> str:
    data = {
        "training_dir": str((DATA_DIR / "training").resolve()),
        "validation_dir": str((DATA_DIR / "validation").resolve()),
    }
    return run_config_text(recipe, run_dir, seed, data, DEFAULT_CLASSES)


def run(
    name: str, recipe: dict, run_dir: Path, seed: int, loso: list[str], resume: bool
) -> dict[str, Any]:
    config_path = run_dir / "config.toml"
    timings_path = run_dir / "timings.json"
    config = config_text(recipe, run_dir, seed)
    if resume:
        _check_resumable(run_dir, config)
        timings: dict[str, float] = json.loads(timings_path.read_text(encoding="utf-8"))
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        config_path.write_text(config, encoding="utf-8")
        timings = {}
    cli = train_cli()
    print(f"== {name}: gicls-train fit -c {config_path}, one condition at a time", flush=True)

    def timed(step: str, command: list[str], log_name: str) -> None:
        if step in timings:
            print(f"   {step}: done before ({timings[step] / 60:.1f} min), kept", flush=True)
            return
        # Saved after every step: an interrupted run still re-prints what it finished, and
        # --resume goes on from the first step it has no time for.
        timings[step] = run_logged(command, run_dir / log_name)
        timings_path.write_text(json.dumps(timings, indent=2), encoding="utf-8")

    # One `gicls-train fit` per condition, each publishing the bundle it adds to: on 2 AVX2
    # cores a ten-class run outlasts a working session, and --resume goes on at the first
    # condition not fitted. Each fit is seeded by its condition, as in `gicls-train all`;
    # the last fit completes the bundle and runs the held-out evaluation.
    # Runs made before this kept one "train" step (`gicls-train all`) and are not refitted.
    if "train" not in timings:
        for condition in DEFAULT_CLASSES:
            timed(
                f"fit {condition}",
                [*cli, "fit", "-c", str(config_path), condition],
                f"fit-{condition.replace(' ', '_')}.log",
            )
    print(
        f"   trained in {training_seconds(timings) / 60:.1f} min; evaluating on validation/",
        flush=True,
    )
    timed(
        "evaluate",
        [
            *cli,
            "evaluate",
            "-c",
            str(config_path),
            "--data",
            str(DATA_DIR / "validation"),
            "--out",
            str(run_dir / "validation"),
        ],
        "evaluate.log",
    )
    for source in loso:
        out = run_dir / f"loso-{source}"
        # A run stopped in its leave-one-source-out training goes on with the conditions it
        # had not finished; its time then counts only this last part (each epoch's time is in
        # both logs).
        stopped = f"loso {source}" not in timings and out.is_dir()
        print(f"   leave-one-source-out: {source}{', resumed' if stopped else ''}", flush=True)
        timed(
            f"loso {source}",
            [
                *cli,
                "evaluate",
                "-c",
                str(config_path),
                "--leave-out",
                source,
                "--out",
                str(out),
                *(["--resume"] if stopped else []),
            ],
            f"loso-{source}{'-resumed' if stopped else ''}.log",
        )
    return collect(name, run_dir)


def training_seconds(timings: dict[str, float]) -> float:
    """A run's training time: the sum of its per-condition fits, or its one `all` step."""
    return sum(
        seconds for step, seconds in timings.items() if step == "train" or step.startswith("fit ")
    )


def _check_resumable(run_dir: Path, config: str) -> None:
    """A run goes on only in a folder this very recipe and seed started."""
    config_path = run_dir / "config.toml"
    if not (run_dir / "timings.json").is_file() or not config_path.is_file():
        raise SystemExit(f"--resume: {run_dir} holds no started run (no timings.json/config.toml)")
    if config_path.read_text(encoding="utf-8") != config:
        raise SystemExit(
            f"--resume: {config_path} differs from this recipe's configuration; "
            "run without --resume to start again"
        )


def collect(name: str, run_dir: Path) -> dict[str, Any]:
    """The figures of a finished run folder."""

    def report(folder: Path) -> dict[str, Any]:
        return json.loads((folder / "report.json").read_text(encoding="utf-8"))

    manifest = json.loads((run_dir / "Models" / "manifest.json").read_text(encoding="utf-8"))
    loso = {
        path.name.removeprefix("loso-"): report(path / "evaluation")
        for path in sorted(run_dir.glob("loso-*"))
        if (path / "evaluation" / "report.json").exists()
    }
    return {
        "recipe": name,
        "run_dir": str(run_dir),
        "architecture": manifest["architecture"],
        "image_size": manifest["image_size"],
        "preprocessing": manifest["preprocessing"].get("in_graph"),
        "timings": json.loads((run_dir / "timings.json").read_text(encoding="utf-8")),
        "validation": report(run_dir / "validation"),
        "loso": loso,
    }


def _decision(report: dict[str, Any]) -> dict[str, Any]:
    return report["calibrated" if "calibrated" in report else "uncalibrated"]


def _interval(figures: dict[str, Any], key: str) -> str:
    return with_interval(figures[key], figures["intervals"].get(key))


def _summary_row(label: str, figures: dict[str, Any], images: int) -> str:
    auc, balanced = figures["mean_auc"], figures["balanced_accuracy"]
    rank_score = (auc + balanced) / 2 if auc is not None and balanced is not None else None
    return (
        f"{label:<26} {images:>6}  {_interval(figures, 'balanced_accuracy'):<22} "
        f"{_interval(figures, 'mean_auc'):<22} {_interval(figures, 'accuracy'):<22} "
        f"{'n/a' if rank_score is None else f'{rank_score:.3f}'}"
    )


def print_run(result: dict[str, Any]) -> None:
    validation = result["validation"]
    figures = _decision(validation)
    training = training_seconds(result["timings"])
    print(
        f"\n# {result['recipe']}: {result['architecture']} at {result['image_size']} px, "
        f"in-graph transforms {result['preprocessing'] or 'none'}"
    )
    print(
        f"training {training / 60:.1f} min (gicls-train fit, every condition, incl. decoding "
        f"and the held-out evaluation; budget {TIME_BUDGET_SECONDS // 60} min: "
        f"{'within' if training <= TIME_BUDGET_SECONDS else 'OVER'})"
    )
    header = (
        f"{'evaluated on':<26} {'frames':>6}  {'balanced accuracy':<22} {'mean AUC':<22} "
        f"{'accuracy':<22} rank score"
    )
    print("\n" + header + "\n" + "-" * len(header))
    print(_summary_row("validation/ (all sources)", figures, validation["images"]))
    for source, per in validation["per_source"].items():
        print(_summary_row(f"  validation/ {source}", per, per["images"]))
    for source, report in result["loso"].items():
        print(_summary_row(f"left out {source}", _decision(report), report["images"]))
    print(f"rank score = {RANK_RULE} (the organisers' rule on their test set)")

    print("\nPer class on validation/ (score column thresholded at 0.5; AUC from the scores)")
    bounds = figures["intervals"]["class_wise"]
    loads = validation["reading_load_at_95"]
    probe = validation["source_probe"]
    print(
        f"{'class':<17} {'sensitivity':<22} {'specificity':<22} {'AUC':<22} "
        f"{'load@95':>7} {'probe':>6} most separable"
    )
    for name, per in figures["class_wise_metrics"].items():
        b = bounds.get(name, {})
        separability = probe[name]["separability"]
        print(
            f"{name:<17} {with_interval(per['recall'], b.get('sensitivity')):<22} "
            f"{with_interval(per['specificity'], b.get('specificity')):<22} "
            f"{with_interval(per['auc'], b.get('auc')):<22} "
            f"{'n/a' if loads[name] is None else f'{loads[name]:.1%}':>7} "
            f"{'n/a' if separability is None else f'{separability:.3f}':>6} "
            f"{probe[name]['most_separable_source'] or '-'}"
        )
    print(
        "load@95 = share of all evaluated frames read, in score order, to catch 95 % of the "
        "class (in-sample threshold; validation/ holds a sample of Normal, not the clinical "
        "mix); probe = source separability of the class's scores among its negatives "
        "(0 = carries nothing of the source, 1 = separates a source)."
    )
    for source, report in result["loso"].items():
        loso_loads = report["reading_load_at_95"]
        bleeding = loso_loads.get("Bleeding")
        print(
            f"left out {source}: Bleeding reading load at 95 % "
            f"{'n/a' if bleeding is None else f'{bleeding:.1%}'}; per class AUC "
            + ", ".join(
                f"{n} {'n/a' if v['auc'] is None else format(v['auc'], '.3f')}"
                for n, v in _decision(report)["class_wise_metrics"].items()
            )
        )
    print(
        "Submission file for the validation frames: "
        f"{result['run_dir']}/validation/predictions.xlsx"
    )
    print(
        "These are figures on the challenge's validation frames and on left-out sources of its "
        "training frames, not on its test set and not a clinical performance claim."
    )


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(__doc__.splitlines()[0], "default", DEFAULT_WORK_DIR)
    parser.add_argument("--seed", type=int, default=42, help="initialisation and sampling seed")
    parser.add_argument(
        "--loso",
        action="append",
        help=f"source to leave out (repeat; default {' and '.join(DEFAULT_LOSO)}; 'none' = skip)",
    )
    parser.add_argument("--score-only", action="store_true", help="re-print a finished run")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the run folder and run only the steps it has not finished",
    )
    args = parser.parse_args(argv)
    if not (DATA_DIR / "training").is_dir():
        print(f"skipped: {DATA_DIR / 'training'} is absent (the benchmark needs ../shared/data)")
        return 0
    name, recipe = load_recipe(args.recipe)
    run_dir = (args.work_dir / f"{name}-seed{args.seed}").resolve()
    loso = [] if args.loso == ["none"] else (args.loso or list(DEFAULT_LOSO))
    result = (
        collect(name, run_dir)
        if args.score_only
        else run(name, recipe, run_dir, args.seed, loso, args.resume)
    )
    (run_dir / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print_run(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
