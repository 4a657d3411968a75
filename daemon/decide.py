"""Decision: from one image's scores to a predicted class, a confidence and a status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decision:
    predicted_class: str
    confidence: float  # the top score
    margin: float  # top score minus the second (how clear the call was)
    status: str  # "classified", or "review" when the top score is below the threshold


def decide(scores: np.ndarray, classes: Sequence[str], review_threshold: float) -> Decision:
    """``scores``: float32 (n_classes,) in class order. A threshold of 0 never asks for review."""
    order = np.argsort(scores)[::-1]
    top = float(scores[order[0]])
    second = float(scores[order[1]]) if len(order) > 1 else 0.0
    status = "review" if top < review_threshold else "classified"
    return Decision(classes[int(order[0])], top, top - second, status)
