from __future__ import annotations

import numpy as np
import pytest

from gicls.daemon.decide import decide

CLASSES = ("Bleeding", "Normal", "Polyp")


def test_the_top_score_wins_with_its_margin() -> None:
    decision = decide(np.array([0.2, 0.9, 0.6], np.float32), CLASSES, 0.0)
    assert decision.predicted_class == "Normal" and decision.status == "classified"
    assert decision.confidence == pytest.approx(0.9)
    assert decision.margin == pytest.approx(0.3)


def test_a_top_score_below_the_threshold_goes_to_review() -> None:
    assert decide(np.array([0.2, 0.5, 0.4], np.float32), CLASSES, 0.6).status == "review"
    assert decide(np.array([0.2, 0.7, 0.4], np.float32), CLASSES, 0.6).status == "classified"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_score_chooses_no_class_and_asks_for_review(bad: float) -> None:
    decision = decide(np.array([0.2, bad, 0.4], np.float32), CLASSES, 0.0)
    assert (decision.predicted_class, decision.status, decision.reason) == (
        None,
        "review",
        "non_finite",
    )
