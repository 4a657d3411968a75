"""Leave one source out: train on every other source, evaluate on the one left out.

A held-out split, even a grouped one, shares centres, devices and preparation habits with the
training data. Training without one source (a hospital, a data set) and evaluating on it is the
honest stand-in for "a new hospital". The run is an ordinary ``train_bundle`` on a filtered
copy of the training tree (hard links, copies across file systems) with the configuration
unchanged except its paths, all under ``out``; ``models_dir`` is never touched. A run stopped
after hours goes on with ``resume``: the fits it finished were kept beside ``out/models`` (see
``gicls.training.checkpoint``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gicls.config import GiclsConfig
from gicls.errors import DatasetError, listing
from gicls.logs import get_logger
from gicls.training.evaluate import Evaluation, write_evaluation
from gicls.training.grouping import NO_SOURCE, record_sources, relative_to_class_folder
from gicls.training.pipeline import evaluate_bundle, train_bundle
from gicls.training.scan import ImageRecord, scan_labelled_tree

log = get_logger(__name__)

# What a run in ``out`` left out, checked before --resume goes on with it.
RUN_FILE = "leave_out.json"


@dataclass(frozen=True)
class LeaveOutRun:
    evaluation: Evaluation
    source: str
    # Classes with no training frame once the source is left out: not in this run's ensemble.
    dropped: list[str]
    # Frames of the left-out source in a dropped class (the ensemble cannot name their class).
    not_evaluated: int
    models_dir: Path
    written: list[Path]


def _check_out(out: Path, config: GiclsConfig, run: dict[str, str | None], resume: bool) -> None:
    models_dir = config.paths.models_dir.resolve()
    target = out.resolve()
    if target == models_dir or models_dir in target.parents or target / "models" == models_dir:
        raise DatasetError(
            f"--out {out} would write into or over models_dir {config.paths.models_dir}: "
            "a leave-one-source-out run keeps its own models"
        )
    if resume:
        if not (out / RUN_FILE).is_file():
            raise DatasetError(f"--resume: {out} holds no leave-one-source-out run ({RUN_FILE})")
        started = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
        if started != run:
            raise DatasetError(
                f"--resume: the run in {out} left out {started}, not {run}: give its own options"
            )
    elif out.exists() and any(out.iterdir()):
        raise DatasetError(
            f"--out {out} is not empty: give a new folder for this run, or --resume to go on "
            "with the run in it"
        )


def _link_tree(records: Sequence[ImageRecord], root: Path, classes: Sequence[str], target: Path):
    """``target/<Class>/<path below the class folder>`` for each record, every class folder
    made (the scan wants them all)."""
    for name in classes:
        (target / name).mkdir(parents=True, exist_ok=True)
    for record in records:
        destination = (
            target / classes[record.class_index] / relative_to_class_folder(record, [root], classes)
        )
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(record.path, destination)
        except OSError:
            shutil.copy2(record.path, destination)


def leave_one_source_out(
    config: GiclsConfig,
    source: str,
    out: Path,
    source_pattern: re.Pattern[str] | None = None,
    resume: bool = False,
) -> LeaveOutRun:
    """Train on ``training_dir`` without ``source`` into ``out/models``, evaluate on it.

    Sources are those of ``gicls-train evaluate`` (first sub-folder, or ``source_pattern``).
    ``paths.validation_dir`` is not used: the run's held-out split comes from its own
    training frames. ``resume`` goes on with the run started in ``out``: the conditions it
    finished are taken up, the others fitted.
    """
    started = {"source": source, "source_pattern": source_pattern and source_pattern.pattern}
    _check_out(out, config, started, resume)
    root = config.paths.training_dir
    records = scan_labelled_tree(root, config.classes).records
    sources = record_sources(records, [root], config.classes, source_pattern)
    if source not in sources:
        known = sorted(set(sources) - {NO_SOURCE})
        raise DatasetError(f"no source {source!r} in {root}; sources found: {listing(known)}")
    kept_records = [r for r, s in zip(records, sources, strict=True) if s != source]
    left_out = [r for r, s in zip(records, sources, strict=True) if s == source]
    trained = {r.class_index for r in kept_records}
    classes = [name for i, name in enumerate(config.classes) if i in trained]
    dropped = [name for name in config.classes if name not in classes]
    for name in dropped:
        log.warning("class_dropped", class_name=name, left_out_source=source)
    if len(classes) < 2:
        raise DatasetError(
            f"without source {source!r} only {len(classes)} class(es) have training frames; "
            "at least 2 are needed"
        )
    evaluated = [r for r in left_out if config.classes[r.class_index] in classes]
    if not evaluated:
        raise DatasetError(f"source {source!r} has no frames of the classes left to train")

    def reindexed(items: Sequence[ImageRecord]) -> list[ImageRecord]:
        return [
            ImageRecord(r.path, classes.index(config.classes[r.class_index]), r.sha256)
            for r in items
        ]

    data = out / "data"
    # Links to training_dir's frames, made again: a resumed run sees the tree as it is now (a
    # changed split is refused by the partial fit).
    if resume:
        shutil.rmtree(data, ignore_errors=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_FILE).write_text(json.dumps(started), encoding="utf-8")
    _link_tree(reindexed(kept_records), root, classes, data / "training")
    _link_tree(reindexed(evaluated), root, classes, data / "left-out")
    run = config.model_copy(
        update={
            "classes": tuple(classes),
            "paths": config.paths.model_copy(
                update={
                    "training_dir": data / "training",
                    "validation_dir": None,
                    "balanced_dir": out / "Balanced_Data",
                    "models_dir": out / "models",
                }
            ),
        }
    )
    log.info(
        "leave_out_started",
        source=source,
        train_images=len(kept_records),
        left_out_images=len(evaluated),
        classes=classes,
    )
    train_bundle(run, write_balanced=False)
    evaluation = evaluate_bundle(run, data / "left-out", source_pattern)
    evaluation.report["leave_out"] = {
        "source": source,
        "trained_on_sources": sorted(set(sources) - {source}),
        "dropped_classes": dropped,
        "frames_not_evaluated": len(left_out) - len(evaluated),
    }
    written = write_evaluation(evaluation, out / "evaluation")
    return LeaveOutRun(
        evaluation, source, dropped, len(left_out) - len(evaluated), out / "models", written
    )
