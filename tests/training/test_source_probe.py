"""The source probe tells a model that detects a source from one that does not; the reading
load counts the frames a reader must look at."""

from __future__ import annotations

import numpy as np
import pytest

from gicls.training.reading_load import reading_load
from gicls.training.source_probe import MIN_NEGATIVES, source_probe

CLASSES = ("Worms", "Normal")


def _frames(rng: np.random.Generator, per_source: int = 60):
    truth = np.array([1] * (3 * per_source) + [0] * per_source)
    sources = [s for s in ("KVASIR", "SEE-AI", "KID", "AIIMS") for _ in range(per_source)]
    return truth, sources


def test_a_model_that_fires_on_one_source_is_caught_and_one_that_does_not_is_not():
    rng = np.random.default_rng(0)
    truth, sources = _frames(rng)
    honest = rng.uniform(0, 0.4, (len(truth), 2))
    honest[truth == 0, 0] = rng.uniform(0.6, 1.0, int(np.sum(truth == 0)))
    device = honest.copy()
    # The Worms model scores SEE-AI's Normal frames high: it learnt the device, not worms.
    device[np.asarray(sources) == "SEE-AI", 0] = rng.uniform(0.5, 0.9, 60)
    clean = source_probe(truth, honest, CLASSES, sources)["Worms"]
    caught = source_probe(truth, device, CLASSES, sources)["Worms"]
    assert clean["separability"] < 0.3
    assert caught["separability"] > 0.9 and caught["most_separable_source"] == "SEE-AI"
    assert caught["sources"]["SEE-AI"]["fires"] > 0.5 > caught["sources"]["KVASIR"]["fires"]
    # AIIMS holds only Worms frames: not among the Worms model's negatives at all.
    assert "AIIMS" not in caught["sources"]


def test_sources_with_too_few_negatives_are_left_out_and_one_source_has_no_probe():
    truth = np.ones(MIN_NEGATIVES + 5, dtype=int)
    sources = ["A"] * (MIN_NEGATIVES + 1) + ["B"] * 4
    scores = np.random.default_rng(1).uniform(size=(len(truth), 2))
    probe = source_probe(truth, scores, CLASSES, sources)["Worms"]
    assert list(probe["sources"]) == ["A"]
    assert probe["separability"] is None and probe["sources"]["A"]["auc"] is None


def test_reading_load_is_the_share_of_frames_read_down_to_the_needed_positive():
    truth = np.array([0, 0, 1, 1, 1, 1])
    scores = np.zeros((6, 2))
    scores[:, 0] = [0.9, 0.8, 0.7, 0.1, 0.3, 0.2]  # class 0 ranked first: 2 of 6 frames
    scores[:, 1] = [0.95, 0.1, 0.9, 0.8, 0.7, 0.2]  # 95 % of 4 = all four; the last at 0.2
    loads = reading_load(truth, scores, CLASSES)
    assert loads["Worms"] == pytest.approx(2 / 6)
    assert loads["Normal"] == pytest.approx(5 / 6)
    three = np.hstack([scores, np.zeros((6, 1))])
    assert reading_load(truth, three, ("A", "B", "C"))["C"] is None
