"""Decision: from one image's scores to a predicted class, a confidence and a status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NON_FINITE = "non_finite"


@dataclass(frozen=True)
class Decision:
    predicted_class: str | None  # None when no class can be chosen (see ``reason``)
    confidence: float  # the top score
    margin: float  # top score minus the second (how clear the call was)
    status: str  # "classified", or "review" when the top score is below the threshold
    reason: str | None = None  # why it is for review without a class: NON_FINITE


def decide(scores: np.ndarray, classes: Sequence[str], review_threshold: float) -> Decision:
    """``scores``: float32 (n_classes,) in class order. A threshold of 0 never asks for review.

    A NaN or infinite score (a broken model, or an input that breaks it) makes the argmax
    meaningless (NaN sorts above every number): such an image goes to review with no class.
    """
    if not np.isfinite(scores).all():
        return Decision(None, float("nan"), float("nan"), "review", NON_FINITE)
    order = np.argsort(scores)[::-1]
    top = float(scores[order[0]])
    second = float(scores[order[1]]) if len(order) > 1 else 0.0
    status = "review" if top < review_threshold else "classified"
    return Decision(classes[int(order[0])], top, top - second, status)
