"""`gicls-train`: scan, balance, fit, evaluate and score one-vs-all models for every condition."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gicls.cli_support import ConfigOption, add_version_option, load, run_command, user_errors
from gicls.config import GiclsConfig, compile_group_pattern, default_config_path, parse_config
from gicls.errors import ConfigError

# TensorFlow, Keras, scikit-learn and pandas take seconds to import (NumPy and Pillow a
# fraction of one): each command imports what it runs, so `--help` and `--version` answer
# at once.
if TYPE_CHECKING:
    from gicls.training.pipeline import TrainingReport

app = typer.Typer(
    help="Train the gicls one-vs-all ensemble (research use only, not for diagnosis).",
    no_args_is_help=True,
    add_completion=False,
)
add_version_option(app)
console = Console()


def on_train_device(action: Callable[[GiclsConfig], None]) -> Callable[[GiclsConfig], None]:
    """``action`` on the ``[train] device``, chosen before TensorFlow computes anything (a
    GPU asked for and absent stops here, naming the key)."""

    def run(cfg: GiclsConfig) -> None:
        from gicls.models.devices import use_device

        use_device(cfg.train.device, "train.device")
        action(cfg)

    return run


ConditionsArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Conditions to work on (default: every class in the configuration)."),
]


def _results_table(report: TrainingReport) -> Table:
    table = Table(title=f"Bundle {report.manifest.bundle_id} in {report.models_dir}")
    # Restarts are rare: their column is shown only when a fit had one (terminals are narrow).
    restarted = any(result.restarts for result in report.results)
    columns = ["condition", "epochs", "best epoch", "val accuracy", "val loss"]
    for column in [*columns, *(["restarts"] if restarted else []), "seconds"]:
        table.add_column(column, justify="left" if column == "condition" else "right")
    for result in report.results:
        table.add_row(
            result.class_name,
            str(result.epochs_trained),
            str(result.best_epoch),
            f"{result.best_val_accuracy:.3f}",
            f"{result.best_val_loss:.3f}",
            *([str(result.restarts)] if restarted else []),
            f"{result.seconds:.0f}",
        )
    return table


def _print_report(report: TrainingReport) -> None:
    console.print(_results_table(report))
    for result in report.results:
        if result.never_learned:
            console.print(
                f"[bold red]{result.class_name} never learned[/] (after {result.restarts} "
                "restarts from new weights): its model scores every image 0.5. Look at its "
                "training images and settings before using this bundle."
            )
    validation = report.manifest.metrics.get("validation")
    if validation:
        _print_evaluation_summary(validation, "held-out images")
        console.print(f"Evaluation plots and predictions: {report.models_dir / 'evaluation'}")
    else:
        console.print("Bundle is partial: fit the remaining conditions to use it.")
    console.print(f"Models, history, plots and manifest.json: {report.models_dir}")


def _print_evaluation_summary(report: dict[str, Any], what: str) -> None:
    from gicls.training.calibration import IN_SAMPLE

    in_sample = report.get("calibration", {}).get("in_sample", False)
    for variant in ("uncalibrated", "calibrated"):
        if variant not in report:
            continue
        figures = report[variant]
        intervals = figures.get("intervals", {})
        label = f"{variant}, {IN_SAMPLE}" if variant == "calibrated" and in_sample else variant
        console.print(
            f"Ensemble on {report['images']} {what} ({label}): "
            f"accuracy {with_interval(figures['accuracy'], intervals.get('accuracy'))}, "
            "balanced accuracy "
            f"{with_interval(figures['balanced_accuracy'], intervals.get('balanced_accuracy'))}, "
            f"mean AUC {_fmt(figures['mean_auc'])}"
        )
    if any("intervals" in report.get(v, {}) for v in ("uncalibrated", "calibrated")):
        # Escaped: rich would take "[low-high]" for a markup tag and print nothing of it.
        console.print(escape("[low-high]: 95 % bootstrap intervals (resampled within each class)."))
    _print_operating_points(report.get("operating_points"))
    suggestion = report["suggested_review_threshold"]
    console.print(
        f"Suggested review_threshold {suggestion['threshold']:.2f}: sends "
        f"{suggestion['review_rate']:.1%} of images to review and catches "
        f"{suggestion['errors_caught']:.1%} of the errors."
    )
    console.print(
        "These are validation figures on this data set, not a clinical performance claim."
    )


def _print_operating_points(points: dict[str, Any] | None) -> None:
    """One line per class with a bundle threshold (``report["operating_points"]``)."""
    from gicls.training.calibration import IN_SAMPLE

    if not points:
        return
    label = f", {IN_SAMPLE}" if points["in_sample"] else ""
    for name, figures in points["classes"].items():
        flagged = figures["flagged_per_1000"]
        console.print(
            f"Operating point {name} (threshold {figures['threshold']:.3f} for sensitivity "
            f"{figures['target_sensitivity']:.2f}{label}): sensitivity "
            f"{_fmt(figures['sensitivity'])}, specificity {_fmt(figures['specificity'])}, "
            f"{'n/a' if flagged is None else f'{flagged:.0f}'} frames flagged per 1,000"
        )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def with_interval(value: float | None, interval: list[float] | None) -> str:
    """``0.912 [0.871-0.944]``; the interval is left out where it is undefined."""
    if interval is None:
        return _fmt(value)
    return f"{_fmt(value)} [{interval[0]:.3f}-{interval[1]:.3f}]"


def _class_table(metrics: dict[str, Any], title: str = "Per class") -> Table:
    table = Table(title=f"{title} (each score column thresholded at 0.5)")
    table.add_column("class")
    for column in ("precision", "recall (sensitivity)", "f1", "specificity", "auc"):
        table.add_column(column, justify="right")
    intervals = metrics.get("intervals", {}).get("class_wise", {})
    for name, figures in metrics["class_wise_metrics"].items():
        bounds = intervals.get(name, {})
        table.add_row(
            name,
            _fmt(figures["precision"]),
            with_interval(figures["recall"], bounds.get("sensitivity")),
            _fmt(figures["f1_score"]),
            with_interval(figures["specificity"], bounds.get("specificity")),
            with_interval(figures["auc"], bounds.get("auc")),
        )
    return table


def _source_pattern(text: str | None) -> re.Pattern[str] | None:
    if text is None:
        return None
    try:
        return compile_group_pattern(text)
    except ValueError as exc:
        raise ConfigError(f"option '--source-pattern': {exc}; got {text!r}") from None


def _source_table(per_source: dict[str, Any]) -> Table:
    """Decision-score figures per source; n/a where a source lacks the classes to define one."""
    table = Table(title="Per source (how far the figures carry from one source to another)")
    for column in ("source", "images", "accuracy", "balanced accuracy", "mean AUC"):
        table.add_column(column, justify="left" if column == "source" else "right")
    table.add_column("classes absent (no sensitivity, no AUC)")
    for source, figures in per_source.items():
        intervals = figures["intervals"]
        table.add_row(
            escape(source),  # a folder name, not markup
            str(figures["images"]),
            with_interval(figures["accuracy"], intervals["accuracy"]),
            with_interval(figures["balanced_accuracy"], intervals["balanced_accuracy"]),
            _fmt(figures["mean_auc"]),
            ", ".join(figures["classes_absent"]) or "-",
        )
    return table


def _probe_table(report: dict[str, Any]) -> Table:
    """Per class: how well its scores tell sources apart among its negatives, what share of
    each source's negatives it fires on, and its reading load (gicls.training.source_probe,
    gicls.training.reading_load)."""
    probe = report["source_probe"]
    sources = sorted({s for figures in probe.values() for s in figures["sources"]})
    table = Table(
        title="Source probe (negatives only: 0 = scores carry nothing of the source, "
        "1 = they separate a source) and reading load at 95 % sensitivity"
    )
    table.add_column("class")
    table.add_column("separability", justify="right")
    table.add_column("most separable")
    for source in sources:
        table.add_column(f"fires on {escape(source)}", justify="right")
    table.add_column("reading load", justify="right")
    for name, figures in probe.items():
        per_source = figures["sources"]
        load = report["reading_load_at_95"][name]
        table.add_row(
            name,
            _fmt(figures["separability"]),
            escape(figures["most_separable_source"] or "-"),
            *(f"{per_source[s]['fires']:.1%}" if s in per_source else "-" for s in sources),
            "n/a" if load is None else f"{load:.1%}",
        )
    return table


def _leave_out(
    cfg: GiclsConfig,
    source: str,
    pattern: re.Pattern[str] | None,
    out: Path | None,
    data: Path | None,
    resume: bool,
) -> None:
    from gicls.training.leave_out import leave_one_source_out

    if out is None or data is not None:
        raise ConfigError(
            "option '--leave-out' needs '--out DIR' (its own models and evaluation) and "
            "takes no '--data' (it trains on training_dir without the source)"
        )
    run = leave_one_source_out(cfg, source, out, pattern, resume)
    for name in run.dropped:
        console.print(
            f"{name}: no training frames without source {source!r}, dropped from this run."
        )
    if run.not_evaluated:
        console.print(
            f"{run.not_evaluated} frame(s) of {source!r} in dropped classes not evaluated."
        )
    console.print(_class_table(run.evaluation.metrics, f"Left-out source {source!r}, per class"))
    _print_evaluation_summary(run.evaluation.report, f"frames of left-out source {source!r}")
    console.print(f"Models of this run: {run.models_dir}")
    console.print("Wrote: " + ", ".join(str(p) for p in run.written))


@app.command()
def evaluate(
    data: Annotated[
        Path | None,
        typer.Option(help="Labelled class-folder tree to evaluate on [default: held-out split]."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder [default: <models_dir>-evaluations/<bundle id>/<data name or "
            "held-out>]. Never inside the live bundle: the daemon reads it and training "
            "replaces it whole, so files written into it would race the next publish or be "
            "lost with it."
        ),
    ] = None,
    source_pattern: Annotated[
        str | None,
        typer.Option(
            help="Regular expression with one capture group, searched in each file's path "
            "below its class folder, naming its source [default: the first sub-folder]."
        ),
    ] = None,
    leave_out: Annotated[
        str | None,
        typer.Option(
            help="Train without this source (on the rest of training_dir, into --out/models) "
            "and evaluate on its frames: leave-one-source-out. Needs --out; never touches "
            "models_dir."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="With --leave-out: go on with the run stopped in --out, keeping the "
            "conditions it finished.",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Run the bundle's fused ensemble on labelled images; write metrics, predictions, plots."""

    def action(cfg: GiclsConfig) -> None:
        from gicls.training.evaluate import evaluation_folder, write_evaluation
        from gicls.training.pipeline import evaluate_bundle

        pattern = _source_pattern(source_pattern)
        if leave_out is not None:
            _leave_out(cfg, leave_out, pattern, out, data, resume)
            return
        if resume:
            raise ConfigError("option '--resume' goes with '--leave-out' (it resumes that run)")
        evaluation = evaluate_bundle(cfg, data, pattern)
        target = out or evaluation_folder(
            cfg.paths.models_dir, evaluation.bundle_id, data.name if data else "held-out"
        )
        written = write_evaluation(evaluation, target)
        console.print(_class_table(evaluation.metrics))
        console.print(_source_table(evaluation.report["per_source"]))
        console.print(_probe_table(evaluation.report))
        _print_evaluation_summary(evaluation.report, "images" if data else "held-out images")
        console.print(f"Scored in {evaluation.report['precision']}.")
        console.print("Wrote: " + ", ".join(str(p) for p in written))

    run_command(config, on_train_device(action))


@app.command()
def score(
    truth: Annotated[
        Path, typer.Argument(help="Ground truth: image_path, class_label (xlsx/csv).")
    ],
    predictions: Annotated[
        Path, typer.Argument(help="Submission: image_path, one column per class, predicted_class.")
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the metrics JSON here.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Score a Capsule Vision 2024 submission file with the challenge's own metrics."""

    def action(cfg: GiclsConfig) -> None:
        from gicls.training.score import score_submission, write_metrics_json

        metrics = score_submission(truth, predictions, cfg.classes)
        console.print(_class_table(metrics))
        console.print(
            f"mean AUC {_fmt(metrics['mean_auc'])}, balanced accuracy "
            f"{metrics['balanced_accuracy']:.4f}, avg precision {metrics['avg_precision']:.4f}, "
            f"avg sensitivity {metrics['avg_sensitivity']:.4f}, avg F1 {metrics['avg_f1']:.4f}, "
            f"avg specificity {metrics['avg_specificity']:.4f}"
        )
        if json_out is not None:
            write_metrics_json(metrics, json_out)
            console.print(f"Wrote {json_out}")

    run_command(config, action)


@app.command()
def fit(conditions: ConditionsArgument = None, config: ConfigOption = None) -> None:
    """Train one binary model per condition and publish the bundle (balanced sets not written)."""
    from gicls.training.pipeline import train_bundle

    run_command(
        config,
        on_train_device(
            lambda cfg: _print_report(train_bundle(cfg, conditions, write_balanced=False))
        ),
    )


@app.command("all")
def all_(config: ConfigOption = None) -> None:
    """Balance, fit every condition, evaluate the ensemble and write the bundle."""
    from gicls.training.pipeline import train_bundle

    run_command(config, on_train_device(lambda cfg: _print_report(train_bundle(cfg))))


@app.command("upgrade-bundle")
def upgrade_bundle_(config: ConfigOption = None) -> None:
    """Migrate the bundle in models_dir, written by an earlier gicls, to this format."""

    def action(cfg: GiclsConfig) -> None:
        from gicls.models.upgrade import upgrade_bundle

        models_dir = cfg.paths.models_dir
        manifest, migrated = upgrade_bundle(models_dir)
        if not migrated:
            console.print(f"{models_dir} is already format {manifest.format_version}: unchanged")
        else:
            previous = manifest.migrated_from or {}
            console.print(
                f"{models_dir}: format {previous['format_version']} -> "
                f"{manifest.format_version}, bundle id {previous['bundle_id']} -> "
                f"{manifest.bundle_id}; models unchanged"
            )

    run_command(config, action)


@app.command()
def balance(conditions: ConditionsArgument = None, config: ConfigOption = None) -> None:
    """Hold out validation, then write Balanced_Data/<Class>/{positive,negative}/."""

    def action(cfg: GiclsConfig) -> None:
        from gicls.training.pipeline import run_balance

        sets = run_balance(cfg, conditions)
        for name, balanced in sets.items():
            console.print(
                f"{name}: {len(balanced.positives)} positive, {len(balanced.negatives)} negative"
                f" -> {cfg.paths.balanced_dir / name}"
            )

    run_command(config, action)


@app.command()
def scan(config: ConfigOption = None) -> None:
    """Count images per class, duplicates and skipped files, without writing anything."""

    def action(cfg: GiclsConfig) -> None:
        from gicls.training.scan import scan_labelled_tree

        result = scan_labelled_tree(cfg.paths.training_dir, cfg.classes)
        table = Table(title=str(cfg.paths.training_dir))
        table.add_column("class")
        table.add_column("images", justify="right")
        for name, count in result.per_class_counts().items():
            table.add_row(name, str(count))
        console.print(table)
        console.print(
            f"skipped files: {len(result.skipped)}; duplicate groups: "
            f"{len(result.duplicate_groups())}; conflicting labels: "
            f"{len(result.conflicting_labels())}"
        )

    run_command(config, action)


@app.command("demo-data")
def demo_data(
    directory: Annotated[
        Path | None, typer.Argument(help="Folder to create <Class>/ image folders in.")
    ] = None,
    per_class: Annotated[int, typer.Option("--per-class", min=2, help="Images per class.")] = 30,
    size: Annotated[int, typer.Option("--size", min=32, help="Image side in pixels.")] = 128,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    video: Annotated[
        Path | None,
        typer.Option(
            "--video",
            help="Also (or only) write synthetic capsule videos (.mp4, with a <stem>.truth.json "
            "time line of conditions beside each) into this folder.",
        ),
    ] = None,
    videos: Annotated[int, typer.Option("--videos", min=1, help="How many videos.")] = 1,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames per video.")] = 300,
    fps: Annotated[float, typer.Option("--fps", min=0.1, max=120.0, help="Frame rate.")] = 4.0,
    config: ConfigOption = None,
) -> None:
    """Generate SYNTHETIC capsule-like images or videos (for demos and tests, never for
    evaluation)."""
    from gicls.training.demo_data import generate_demo_data

    if directory is None and video is None:
        raise typer.BadParameter("give a DIRECTORY for images, --video DIR for videos, or both")
    with user_errors():
        # The class list comes from the configuration when there is one to read.
        explicit = config is not None or os.environ.get("GICLS_CONFIG")
        cfg = load(config) if explicit or default_config_path().exists() else parse_config({})
        if directory is not None:
            count = generate_demo_data(directory, cfg.classes, per_class, size, seed)
            console.print(
                f"wrote {count} SYNTHETIC images ({len(cfg.classes)} classes) to {directory}"
            )
        if video is not None:
            from gicls.training.demo_video import generate_demo_videos

            truths = generate_demo_videos(video, cfg.classes, videos, frames, size, fps, seed)
            console.print(
                f"wrote {len(truths)} SYNTHETIC videos of {frames} frames ({size} px, {fps:g} fps, "
                f"{truths[0].codec}) with their truth time lines to {video}"
            )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
