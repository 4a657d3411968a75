"""Reading load: the share of all frames a reader must look at to catch a given share of a
condition's frames, when frames are read in order of that condition's score.

This is the cost side of an operating point, measured on the evaluated frames themselves (the
threshold is the one that reaches the sensitivity on them, so it is in-sample by design: it
answers "how well do the scores rank", not "what will a stored threshold do"). It depends on
the evaluated set's class mix: on a set with fewer Normal frames than a real study, it is not
the load of a real study.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_SENSITIVITY = 0.95


def reading_load(
    truth: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
    sensitivity: float = DEFAULT_SENSITIVITY,
) -> dict[str, float | None]:
    """Per class: the smallest share of all frames, read from the highest score of that class
    down, that contains ``sensitivity`` of the class's frames (None for an absent class)."""
    loads: dict[str, float | None] = {}
    total = len(truth)
    for index, name in enumerate(classes):
        positives = np.sort(scores[truth == index, index])[::-1]
        if not len(positives):
            loads[name] = None
            continue
        needed = int(np.ceil(sensitivity * len(positives)))
        threshold = positives[needed - 1]
        loads[name] = float(np.sum(scores[:, index] >= threshold)) / total
    return loads
