"""Decision: from one image's scores to a predicted class, flags, a confidence and a status.

The argmax chooses the class; flags list every class whose score reaches the bundle's
threshold for it (multi-label: ulcer and bleeding together is common). In this order:

1. a NaN or infinite score -> review, reason ``non_finite``, no class (the argmax of NaN
   means nothing), no flags;
2. top score < ``review_threshold`` -> review, reason ``low_confidence``;
3. top score - second < ``review_margin`` -> review, reason ``small_margin``;
4. ``review_on_flag`` and a flagged class that is not the argmax -> review, reason
   ``flagged:<Class>`` (several such classes joined with ``;``, in class order);
5. otherwise classified.

A review image keeps its argmax class and flags in the audit row; only its folder differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gicls.audit.schema import FLAG_SEPARATOR
from gicls.config import DaemonConfig

NON_FINITE = "non_finite"
LOW_CONFIDENCE = "low_confidence"
SMALL_MARGIN = "small_margin"
FLAGGED = "flagged"


@dataclass(frozen=True)
class ReviewPolicy:
    """When a scored image goes to review instead of its class folder (``[daemon]`` keys).

    The zero values never ask for review (a NaN or infinite score always does).
    """

    review_threshold: float = 0.0
    review_margin: float = 0.0
    review_on_flag: bool = False

    @classmethod
    def of(cls, settings: DaemonConfig) -> ReviewPolicy:
        return cls(settings.review_threshold, settings.review_margin, settings.review_on_flag)


@dataclass(frozen=True)
class Decision:
    predicted_class: str | None  # None when no class can be chosen (non-finite scores)
    confidence: float  # the top score
    margin: float  # top score minus the second (how clear the call was)
    status: str  # "classified" or "review"
    reason: str | None = None  # why it is for review (see the module docstring)
    flags: tuple[str, ...] = ()  # classes at or above their threshold, in class order


def decide(
    scores: np.ndarray,
    classes: Sequence[str],
    policy: ReviewPolicy,
    thresholds: Mapping[str, float] | None = None,
) -> Decision:
    """``scores``: float32 (n_classes,) calibrated, in class order. ``thresholds``: the
    bundle's per-class thresholds (classes without one are never flagged)."""
    if not np.isfinite(scores).all():
        return Decision(None, float("nan"), float("nan"), "review", NON_FINITE)
    order = np.argsort(scores)[::-1]
    top = float(scores[order[0]])
    second = float(scores[order[1]]) if len(order) > 1 else 0.0
    predicted = classes[int(order[0])]
    limits = thresholds or {}
    flags = tuple(
        name
        for name, score in zip(classes, scores, strict=True)
        if name in limits and score >= limits[name]
    )
    lost = [name for name in flags if name != predicted]
    if top < policy.review_threshold:
        reason: str | None = LOW_CONFIDENCE
    elif top - second < policy.review_margin:
        reason = SMALL_MARGIN
    elif policy.review_on_flag and lost:
        reason = f"{FLAGGED}:{FLAG_SEPARATOR.join(lost)}"
    else:
        reason = None
    status = "classified" if reason is None else "review"
    return Decision(predicted, top, top - second, status, reason, flags)
