"""Does a condition's model detect a source (a device, a centre) instead of the condition?

Among the frames that do NOT show the condition, a model that learnt the condition should
score every source alike. If its scores tell one source from the others, it has learnt
something about that source: the device's field of view, colour cast or compression. The
probe measures, per condition and source, the one-vs-rest ROC AUC of the condition's score
for "this source" among the condition's negatives, and reports ``separability`` = the largest
|2 AUC - 1| over the sources (0: the scores carry nothing of the source; 1: they separate a
source perfectly), with the share of each source's negatives the model fires on (score >= 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

# A source with fewer negatives than this is left out of the probe: its AUC would be noise.
MIN_NEGATIVES = 20
FIRING_SCORE = 0.5


def source_probe(
    truth: np.ndarray, scores: np.ndarray, classes: Sequence[str], sources: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per class: ``separability``, ``most_separable_source`` and per source ``auc``,
    ``negatives`` and ``fires`` (None where fewer than 2 sources have enough negatives)."""
    labels = np.asarray(sources, dtype=object)
    probe: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(classes):
        negative = truth != index
        counts = {s: int(np.sum(negative & (labels == s))) for s in sorted(set(sources))}
        usable = [s for s, n in counts.items() if n >= MIN_NEGATIVES]
        per_source: dict[str, dict[str, Any]] = {}
        class_scores = scores[negative & np.isin(labels, usable), index]
        class_sources = labels[negative & np.isin(labels, usable)]
        for source in usable:
            own = scores[negative & (labels == source), index]
            auc = (
                float(roc_auc_score(class_sources == source, class_scores))
                if len(usable) > 1
                else None
            )
            per_source[source] = {
                "negatives": counts[source],
                "auc": auc,
                "fires": float(np.mean(own >= FIRING_SCORE)),
            }
        spreads = {s: abs(2 * v["auc"] - 1) for s, v in per_source.items() if v["auc"] is not None}
        worst = max(spreads, key=spreads.__getitem__) if spreads else None
        probe[name] = {
            "separability": spreads[worst] if worst is not None else None,
            "most_separable_source": worst,
            "sources": per_source,
        }
    return probe
