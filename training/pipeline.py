"""The training workflow: scan -> decode once -> split -> balance -> fit -> bundle.

Stages are plain functions with explicit inputs; this module only wires them together and
never reads configuration beyond what it is handed.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from gicls.config import GiclsConfig, compile_group_pattern
from gicls.errors import DatasetError, GiclsError, ModelBundleError
from gicls.hashing import file_sha256
from gicls.logs import get_logger
from gicls.models.architectures import check_architecture
from gicls.models.bundle import (
    HELD_OUT_OF_TRAINING,
    MANIFEST_NAME,
    Manifest,
    condition_files,
    discard_stage,
    history_file_name,
    model_file_name,
    new_manifest,
    now_iso,
    plot_file_name,
    publish_bundle,
    read_manifest,
    replace_in_stage,
    stage_bundle,
    verify_bundle,
    write_manifest,
)
from gicls.models.ensemble import guard_fields
from gicls.models.guard import spread_over_classes
from gicls.models.transform_record import preprocessing_info
from gicls.training.balance import (
    BalancedSet,
    balance_condition,
    materialize,
    validation_condition,
)
from gicls.training.calibration import apply_calibration, fit_calibration
from gicls.training.checkpoint import Checkpoint, training_fingerprint
from gicls.training.dataset import pixel_dataset
from gicls.training.evaluate import (
    Evaluation,
    device_reference,
    evaluate_scores,
    raw_scores,
    write_evaluation,
)
from gicls.training.fit import (
    MAX_RESTARTS,
    RESTART_SEED_STRIDE,
    EpochReport,
    FitResult,
    fit_condition,
    log_epoch,
    new_model,
)
from gicls.training.grouping import merge_units, record_labels, record_sources
from gicls.training.image_cache import ImageCache, build_image_cache
from gicls.training.near_duplicates import difference_hashes, near_duplicate_groups
from gicls.training.operating_points import bundle_thresholds
from gicls.training.plots import plot_history
from gicls.training.scan import ImageRecord, scan_labelled_tree
from gicls.training.split import Split, given_split, holdout_split
from gicls.training.split_record import (
    SPLIT_FILE,
    held_out_rows,
    read_split_csv,
    replay_held_out,
    split_changes,
    split_record,
    split_settings,
    write_split_csv,
)

log = get_logger(__name__)


@dataclass
class PreparedData:
    classes: tuple[str, ...]
    split: Split
    cache: ImageCache
    summary: dict[str, Any] = field(default_factory=dict)


def select_classes(config: GiclsConfig, names: Sequence[str] | None) -> list[str]:
    """The conditions to work on, in class order; unknown names are an error."""
    if not names:
        return list(config.classes)
    unknown = [name for name in names if name not in config.classes]
    if unknown:
        raise DatasetError(
            f"unknown condition(s): {', '.join(unknown)}; known: {', '.join(config.classes)}"
        )
    return [name for name in config.classes if name in names]


def prepare_data(config: GiclsConfig, decode_size: int) -> PreparedData:
    """Scan, decode every unique image once, drop unreadable ones, then split."""
    classes = config.classes
    training = scan_labelled_tree(config.paths.training_dir, classes)
    validation = (
        scan_labelled_tree(config.paths.validation_dir, classes)
        if config.paths.validation_dir is not None
        else None
    )
    all_records = training.records + (validation.records if validation else [])
    cache, readable, failed = build_image_cache(all_records, decode_size)
    readable_paths = {r.path for r in readable}
    train_records = [r for r in training.records if r.path in readable_paths]
    kept = [r for r in validation.records if r.path in readable_paths] if validation else []
    group_of = _split_units(config, cache, train_records + kept)
    if validation is None:
        split = holdout_split(
            train_records,
            classes,
            config.balance.validation_fraction,
            config.balance.seed,
            group_of,
        )
    else:
        split = given_split(train_records, kept, classes, group_of)
    train_counts, validation_counts = split.counts(len(classes))
    found = training.per_class_counts()
    summary = {
        "training_dir": str(config.paths.training_dir),
        "validation": str(config.paths.validation_dir) if validation else HELD_OUT_OF_TRAINING,
        "split_seed": config.balance.seed,
        "validation_fraction": config.balance.validation_fraction if validation is None else None,
        "target_count": config.balance.target_count,
        "negatives": config.balance.negatives,
        "images_found": found,
        "train_images": dict(zip(classes, train_counts, strict=True)),
        "validation_images": dict(zip(classes, validation_counts, strict=True)),
        "unreadable_images": len(failed),
        "skipped_files": len(training.skipped) + (len(validation.skipped) if validation else 0),
        "duplicate_groups": len(training.duplicate_groups()),
        "near_duplicate_bits": config.balance.near_duplicate_bits,
        "near_duplicate_groups": len(set(group_of.values())),
        "images_in_near_duplicate_groups": len(group_of),
        "conflicting_label_groups": len(training.conflicting_labels()),
        "split": split_record(
            split_settings(
                config.balance.seed,
                config.balance.validation_fraction if validation is None else None,
                config.balance.near_duplicate_bits,
                config.paths.validation_dir,
                config.balance.group_by,
                config.balance.group_pattern,
            ),
            held_out_rows(split, classes),
            split.fractions,
            split.groups,
        ),
    }
    log.info("split_done", train=sum(train_counts), validation=sum(validation_counts))
    return PreparedData(classes, split, cache, summary)


def _labelled_roots(config: GiclsConfig) -> list[Path]:
    """The labelled trees a run reads: ``training_dir``, and ``validation_dir`` when set."""
    roots = [config.paths.training_dir]
    if config.paths.validation_dir is not None:
        roots.append(config.paths.validation_dir)
    return roots


def _split_units(
    config: GiclsConfig, cache: ImageCache, records: Sequence[ImageRecord]
) -> dict[str, str]:
    """The split's indivisible units: near-duplicates joined with ``balance.group_by`` groups."""
    near = _near_duplicate_groups(cache, config.balance.near_duplicate_bits)
    balance = config.balance
    if balance.group_by == "none":
        return near
    roots = _labelled_roots(config)
    pattern = compile_group_pattern(balance.group_pattern) if balance.group_pattern else None
    labels = record_labels(records, roots, config.classes, balance.group_by, pattern)
    _warn_few_groups(records, labels, config.classes, balance.group_by)
    return merge_units(records, labels, near)


def _warn_few_groups(
    records: Sequence[ImageRecord],
    labels: Sequence[str | None],
    classes: Sequence[str],
    group_by: str,
) -> None:
    """A class with fewer than 2 groups cannot keep its groups apart on both sides."""
    found: dict[str, set[str]] = {name: set() for name in classes}
    for record, label in zip(records, labels, strict=True):
        if label is not None:
            found[classes[record.class_index]].add(label)
    for name, groups in found.items():
        if len(groups) < 2:
            log.warning(
                "class_has_few_groups",
                class_name=name,
                groups=len(groups),
                group_by=group_by,
                consequence="its images without a group are split one by one; with none "
                "the class cannot be split",
            )


def _near_duplicate_groups(cache: ImageCache, max_distance: int) -> dict[str, str]:
    """Group key of every content hash that has near-duplicates (others are their own group)."""
    if max_distance == 0 or len(cache.row_of_hash) < 2:
        return {}
    hashes_by_row = sorted(cache.row_of_hash, key=cache.row_of_hash.__getitem__)
    labels = near_duplicate_groups(difference_hashes(cache.pixels), max_distance)
    members: dict[int, list[str]] = defaultdict(list)
    for sha, label in zip(hashes_by_row, labels, strict=True):
        members[label].append(sha)
    # Keyed by content (its first member's hash), not by label number: labels renumber when
    # any image anywhere is added, and the split orders groups by key.
    group_of = {
        sha: f"near-{min(shas)}" for shas in members.values() if len(shas) > 1 for sha in shas
    }
    log.info(
        "near_duplicates_grouped",
        images=len(group_of),
        groups=len(set(group_of.values())),
        max_bits=max_distance,
    )
    return group_of


def balance_all(
    config: GiclsConfig, data: PreparedData, names: Sequence[str], write: bool
) -> dict[str, BalancedSet]:
    """Balanced training sets per condition; materialised unless ``materialize = "none"``."""
    sets: dict[str, BalancedSet] = {}
    source_of = (
        _training_sources(config, data.split.train)
        if config.balance.negatives == "sources"
        else None
    )
    for name in names:
        balanced = balance_condition(
            data.split.train,
            data.classes.index(name),
            data.classes,
            config.balance.target_count,
            config.balance.seed,
            config.balance.negatives,
            source_of,
        )
        if write:
            materialize(
                balanced, data.classes, config.paths.balanced_dir, config.balance.materialize
            )
        sets[name] = balanced
    return sets


def _training_sources(config: GiclsConfig, records: Sequence[ImageRecord]) -> dict[Path, str]:
    """Path -> source (first sub-folder of the class folder) of each training record."""
    roots = _labelled_roots(config)
    sources = record_sources(records, roots, config.classes, None)
    return {record.path: source for record, source in zip(records, sources, strict=True)}


def run_balance(config: GiclsConfig, names: Sequence[str] | None = None) -> dict[str, BalancedSet]:
    """`gicls-train balance`: materialise the balanced sets without training."""
    selected = select_classes(config, names)
    # The same decoding size as `fit`: near-duplicate groups, and so the split, must not
    # depend on which command made them.
    data = prepare_data(config, config.train.image_size)
    return balance_all(config, data, selected, write=True)


def _compatible_previous(config: GiclsConfig, models_dir: Path, subset: bool) -> Manifest | None:
    """The live manifest whose models a partial fit keeps, if it matches this configuration."""
    if not (models_dir / MANIFEST_NAME).exists():
        return None
    previous = read_manifest(models_dir)
    same = (
        previous.classes == list(config.classes)
        and previous.image_size == config.train.image_size
        and previous.preprocessing == preprocessing_info(config.preprocess)
        and previous.architecture == config.train.architecture
        and previous.precision == config.train.precision
        and previous.augment == config.augment.model_dump()
    )
    if same:
        return previous
    if subset:
        raise ModelBundleError(
            f"the bundle in {models_dir} was trained with other settings (classes, image size, "
            "preprocessing, architecture, precision or augmentation); fit every condition to "
            "replace it"
        )
    return None


def _require_same_split(previous: Manifest, models_dir: Path, data: PreparedData) -> None:
    """A partial fit keeps the other models only if they were validated on today's split."""
    recorded = previous.data.get("split")
    changes = split_changes(
        recorded,
        read_split_csv(models_dir / SPLIT_FILE) if recorded else [],
        data.summary["split"]["settings"],
        held_out_rows(data.split, data.classes),
    )
    if changes:
        raise ModelBundleError(
            f"cannot keep the other models of {models_dir}: their held-out split is not "
            f"today's ({'; '.join(changes)}); run gicls-train all to retrain every condition"
        )


# Fits one condition's model into a folder (model, history CSV and plot under their bundle
# names), reporting its epochs, and returns the fit and its manifest entry. ``fit_into`` is the
# one gicls uses, on either backend; (config, data, balanced set, folder, label, report).
ConditionFit = Callable[
    [GiclsConfig, PreparedData, BalancedSet, Path, str, EpochReport],
    tuple[FitResult, dict[str, Any]],
]


@dataclass(frozen=True)
class TrainingReport:
    manifest: Manifest
    results: list[FitResult]
    models_dir: Path


def train_bundle(
    config: GiclsConfig,
    names: Sequence[str] | None = None,
    write_balanced: bool = True,
    fit: ConditionFit | None = None,
) -> TrainingReport:
    """Fit one model per selected condition and publish the bundle atomically.

    ``[cluster] backend`` says where the fits run: here one after the other, or as Ray
    tasks; either way their files land in the same stage, published (or discarded) here.
    """
    fit = fit or fit_into
    check_architecture(config.train.architecture, config.augment)
    selected = select_classes(config, names)
    models_dir = config.paths.models_dir
    subset = len(selected) < len(config.classes)
    previous = _compatible_previous(config, models_dir, subset)
    data = prepare_data(config, config.train.image_size)
    if subset and previous is not None:
        _require_same_split(previous, models_dir, data)
    balanced = balance_all(config, data, selected, write=write_balanced)
    kept = [name for name in (previous.models if previous else {}) if name not in selected]
    staging = stage_bundle(models_dir, keep=[f for name in kept for f in condition_files(name)])
    checkpoint = _checkpoint(config, data)
    try:
        entries = (
            {name: entry.model_dump() for name, entry in previous.models.items()}
            if previous
            else {}
        )
        fits = checkpoint.take_up(selected, staging) if checkpoint else {}
        to_fit = [name for name in selected if name not in fits]
        fits |= _fit_conditions(
            config,
            data,
            balanced,
            to_fit,
            staging,
            _kept_by(checkpoint, fit) if checkpoint else fit,
        )
        results = [fits[name][0] for name in selected]
        entries.update({name: fits[name][1] for name in selected})
        fields = {
            "classes": list(config.classes),
            "image_size": config.train.image_size,
            "preprocessing": preprocessing_info(config.preprocess),
            "architecture": config.train.architecture,
            "augment": config.augment.model_dump(),
            "precision": config.train.precision,
            "models": entries,
            "data": data.summary,
        }
        manifest = new_manifest(**fields)
        if manifest.is_complete():
            manifest = new_manifest(**fields, **_evaluate_held_out(config, data, staging, manifest))
        write_split_csv(
            held_out_rows(data.split, data.classes), replace_in_stage(staging / SPLIT_FILE)
        )
        write_manifest(manifest, staging)
        publish_bundle(staging, models_dir)
    except BaseException:
        discard_stage(staging)
        raise
    if checkpoint is not None:
        checkpoint.discard(selected)
    log.info(
        "bundle_published",
        folder=str(models_dir),
        bundle_id=manifest.bundle_id,
        complete=manifest.is_complete(),
    )
    return TrainingReport(manifest, results, models_dir)


def _checkpoint(config: GiclsConfig, data: PreparedData) -> Checkpoint | None:
    """Where this training keeps its finished fits until it publishes (``None`` on Ray, whose
    fits run as tasks elsewhere and come back together: nothing to keep one by one)."""
    if config.cluster.backend == "ray":
        return None
    train_rows = [(r.sha256, data.classes[r.class_index]) for r in data.split.train]
    return Checkpoint(
        config.paths.models_dir, training_fingerprint(config, data.summary, train_rows)
    )


def _kept_by(checkpoint: Checkpoint, fit: ConditionFit) -> ConditionFit:
    """``fit``, each finished fit kept in ``checkpoint`` as soon as its files are written."""

    def fit_and_keep(
        config: GiclsConfig,
        data: PreparedData,
        condition: BalancedSet,
        folder: Path,
        label: str,
        report: EpochReport,
    ) -> tuple[FitResult, dict[str, Any]]:
        result, entry = fit(config, data, condition, folder, label, report)
        checkpoint.keep(condition.class_name, folder, result, entry)
        return result, entry

    return fit_and_keep


def progress_label(name: str, position: int, total: int) -> str:
    """How a condition's fit names itself in progress lines: ``Polyp [3/10]``."""
    return f"{name} [{position}/{total}]"


def _fit_conditions(
    config: GiclsConfig,
    data: PreparedData,
    balanced: dict[str, BalancedSet],
    selected: Sequence[str],
    staging: Path,
    fit: ConditionFit,
) -> dict[str, tuple[FitResult, dict[str, Any]]]:
    """Every selected condition's fit and manifest entry, its files written into ``staging``."""
    work = [
        (balanced[name], progress_label(name, position, len(selected)))
        for position, name in enumerate(selected, start=1)
    ]
    if config.cluster.backend == "ray":
        # Imported here: nothing loads ray unless the configuration asks for it.
        from gicls.training.ray_fits import fit_on_ray

        return fit_on_ray(config, data, work, staging, fit)
    return {
        condition.class_name: fit(config, data, condition, staging, label, log_epoch)
        for condition, label in work
    }


def _guard_frames(data: PreparedData) -> np.ndarray:
    """Held-out frames for the bundle's guard (see gicls.models.guard), spread over classes."""
    records = data.split.validation
    picked = spread_over_classes([r.class_index for r in records])
    return data.cache.pixels[data.cache.rows([records[i] for i in picked])]


def _evaluate_held_out(
    config: GiclsConfig, data: PreparedData, staging: Path, manifest: Manifest
) -> dict[str, Any]:
    """Fit the configured calibration on the held-out split, store the guard frames and
    evaluate the fused ensemble.

    Returns the manifest fields ``calibration``, ``thresholds`` (fitted on the calibrated
    scores for ``[decision] target_sensitivity``), ``guard``, ``metrics`` and ``device_reference``
    (the bound of the study reports' device check); the full evaluation
    (plots, predictions, trade-off table) goes to ``evaluation/`` in the bundle. The guard
    scores are those of the calibrated graph the daemon serves, and the bundle id depends on
    them, so the evaluation is labelled after the guard is written.
    """
    records = data.split.validation
    raw, served = raw_scores(staging, manifest, data.cache, records)
    truth = _truth(records)
    method = config.calibration.method
    calibration = None if method == "none" else fit_calibration(raw, truth, data.classes, method)
    guard = guard_fields(
        staging, manifest.model_copy(update={"calibration": calibration}), _guard_frames(data)
    )
    # Thresholds apply to the scores the daemon sees: calibrated ones.
    seen = raw if calibration is None else apply_calibration(raw, calibration, data.classes)
    thresholds = bundle_thresholds(seen, truth, data.classes, config.decision.target_sensitivity)
    decision = {"calibration": calibration, "thresholds": thresholds, **guard}
    published = new_manifest(**{**manifest.model_dump(exclude={"bundle_id"}), **decision})
    evaluation = evaluate_scores(
        raw,
        truth,
        data.classes,
        [r.path.name for r in records],
        calibration,
        calibration_fitted_here=True,
        seed=config.balance.seed,
        precision=served.precision,
        # The id of the bundle being published: metrics are not part of it.
        bundle_id=published.bundle_id,
        thresholds=thresholds,
    )
    write_evaluation(evaluation, staging / "evaluation")
    summary = {k: v for k, v in evaluation.report.items() if k != "review_tradeoff"}
    # The served scores, not the cross-fitted ones: a study's audit rows hold served scores.
    where = data.summary["validation"]
    if where == HELD_OUT_OF_TRAINING:
        where = f"held-out split of {data.summary['training_dir']}"
    reference = device_reference(seen, data.classes, where)
    return {**decision, "metrics": {"validation": summary}, "device_reference": reference}


def _truth(records: Sequence[ImageRecord]) -> np.ndarray:
    return np.fromiter((r.class_index for r in records), dtype=np.int64)


def evaluate_bundle(
    config: GiclsConfig, data_dir: Path | None, source_pattern: re.Pattern[str] | None = None
) -> Evaluation:
    """`gicls-train evaluate`: the live bundle on ``data_dir`` or on its own held-out split.

    Without ``data_dir`` it replays exactly the images of the bundle's ``split.csv`` (found by
    sha256 in today's training folders) with the calibration settings it was validated with,
    so its figures are the manifest's ``metrics.validation``. The figures are also broken down
    by source: the first sub-folder below the class folder, or the capture group of
    ``source_pattern`` in the path below it (see gicls.training.grouping).
    """
    models_dir = config.paths.models_dir
    manifest = verify_bundle(models_dir, config.classes)
    if data_dir is not None:
        roots = [data_dir]
        records = scan_labelled_tree(data_dir, manifest.classes).records
        fitted_here, seed = False, config.balance.seed
    else:
        rows = read_split_csv(models_dir / SPLIT_FILE)
        roots = _labelled_roots(config)
        scanned = [r for root in roots for r in scan_labelled_tree(root, manifest.classes).records]
        where = " and ".join(str(root) for root in roots)
        records = replay_held_out(rows, scanned, manifest.classes, where)
        # The calibration was fitted on these very images: report it cross-fitted, with the
        # folds the training run drew.
        fitted_here = True
        seed = manifest.data["split"]["settings"]["balance.seed"]
    cache, readable, failed = build_image_cache(records, manifest.image_size)
    if data_dir is None and failed:
        raise DatasetError(
            f"{len(failed)} held-out image(s) no longer decode (first: {failed[0][0].path}): "
            "the held-out figures cannot be replayed"
        )
    precision = config.inference.precision
    raw, served = raw_scores(models_dir, manifest, cache, readable, precision)
    return evaluate_scores(
        raw,
        _truth(readable),
        manifest.classes,
        [r.path.name for r in readable],
        manifest.calibration,
        calibration_fitted_here=fitted_here,
        seed=seed,
        precision=served.precision,
        bundle_id=manifest.bundle_id,
        sources=record_sources(readable, roots, manifest.classes, source_pattern),
        thresholds=manifest.thresholds,
        precision_choice=served.details,
    )


def fit_into(
    config: GiclsConfig,
    data: PreparedData,
    balanced: BalancedSet,
    folder: Path,
    label: str,
    report: EpochReport = log_epoch,
) -> tuple[FitResult, dict[str, Any]]:
    """Fit one condition; its model, history and plot go into ``folder`` (a stage, or a Ray
    task's scratch folder) under their bundle names. Only reads ``data.cache.pixels``: in a
    Ray task they are a read-only view of the object store. A fit that never learned (see
    ``NeverLearned``) is started again from new weights, at most ``MAX_RESTARTS`` times."""
    name = balanced.class_name
    index = data.classes.index(name)
    validation = validation_condition(
        data.split.validation, index, data.classes, config.balance.seed
    )
    train_records, train_labels = balanced.records_and_labels()
    val_records, val_labels = validation.records_and_labels()
    if not val_records:
        raise GiclsError(f"no validation images for {name}")
    batch = config.train.batch_size
    spent = 0.0
    for restarts in range(MAX_RESTARTS + 1):
        # Same seed, same weights and batch order: a rerun reproduces the model. A restart
        # takes a seed no other condition's first fit uses.
        seed = config.balance.seed + index + restarts * RESTART_SEED_STRIDE
        keras.utils.set_random_seed(seed)
        model = new_model(
            config.train.architecture,
            config.train.image_size,
            config.augment,
            config.train.precision,
            config.preprocess,
        )
        result = fit_condition(
            model,
            pixel_dataset(
                data.cache,
                data.cache.rows(train_records),
                train_labels,
                batch,
                seed,
                quarter_turns=config.augment.rot90,
                weights=balanced.sample_weights(),
            ),
            pixel_dataset(data.cache, data.cache.rows(val_records), val_labels, batch, None),
            config.train,
            replace_in_stage(folder / history_file_name(name)),
            name,
            label if restarts == 0 else f"{label}, restart {restarts}",
            report,
        )
        spent += result.seconds
        if not result.never_learned:
            break
        log.warning(
            "fit_never_learned",
            condition=name,
            epochs=result.epochs_trained,
            seed=seed,
            then="started again from new weights"
            if restarts < MAX_RESTARTS
            else f"kept as it is after {MAX_RESTARTS} restarts: it scores every image 0.5",
        )
    result = dataclasses.replace(result, seconds=spent, restarts=restarts)
    model_path = replace_in_stage(folder / model_file_name(name))
    model.save(model_path)
    plot_history(
        result.history,
        f"{name} vs rest ({config.train.architecture})",
        replace_in_stage(folder / plot_file_name(name)),
    )
    entry = {
        "file": model_path.name,
        "sha256": file_sha256(model_path),
        "best_val_accuracy": result.best_val_accuracy,
        "best_val_loss": result.best_val_loss,
        "epochs_trained": result.epochs_trained,
        "best_epoch": result.best_epoch,
        "train_entries": len(train_records),
        "validation_positives": len(validation.positives),
        "validation_negatives": len(validation.negatives),
        "seconds": round(result.seconds, 1),
        "trained_at": now_iso(),
        "restarts": result.restarts,
        "never_learned": result.never_learned,
    }
    return result, entry
