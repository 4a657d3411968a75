"""Run the fused ensemble (the daemon's own graph) over labelled images and score it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gicls.models.bundle import Manifest
from gicls.models.ensemble import FusedEnsemble
from gicls.training.image_cache import ImageCache
from gicls.training.metrics import challenge_metrics
from gicls.training.scan import ImageRecord

SCORING_BATCH = 64


def ensemble_scores(ensemble: FusedEnsemble, pixels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Scores (len(rows), n_classes) float32 for cached images, in fixed-size batches."""
    chunks = [
        ensemble(pixels[rows[start : start + SCORING_BATCH]])
        for start in range(0, len(rows), SCORING_BATCH)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, len(ensemble.classes)), np.float32)


def evaluate_records(
    models_dir: Path,
    manifest: Manifest,
    cache: ImageCache,
    records: Sequence[ImageRecord],
) -> dict[str, Any]:
    """Challenge metrics of the bundle in ``models_dir`` on labelled, cached ``records``."""
    ensemble = FusedEnsemble(models_dir, manifest)
    scores = ensemble_scores(ensemble, cache.pixels, cache.rows(records))
    truth = np.fromiter((r.class_index for r in records), dtype=np.int64)
    metrics = challenge_metrics(truth, scores, manifest.classes)
    metrics["images"] = len(records)
    metrics["accuracy"] = float(np.mean(scores.argmax(axis=1) == truth)) if len(truth) else None
    return metrics
