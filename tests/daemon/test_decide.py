from __future__ import annotations

import numpy as np
import pytest

from gicls.daemon.decide import ReviewPolicy, decide

CLASSES = ("Bleeding", "Normal", "Polyp", "Ulcer")
OFF = ReviewPolicy()


def scores(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


def test_the_top_score_wins_with_its_margin() -> None:
    decision = decide(scores(0.2, 0.9, 0.6, 0.1), CLASSES, OFF)
    assert decision.predicted_class == "Normal" and decision.status == "classified"
    assert decision.confidence == pytest.approx(0.9)
    assert decision.margin == pytest.approx(0.3)
    assert (decision.reason, decision.flags) == (None, ())


def test_a_top_score_below_the_threshold_goes_to_review() -> None:
    policy = ReviewPolicy(review_threshold=0.6)
    low = decide(scores(0.2, 0.5, 0.4, 0.1), CLASSES, policy)
    assert (low.status, low.reason, low.predicted_class) == ("review", "low_confidence", "Normal")
    assert decide(scores(0.2, 0.7, 0.4, 0.1), CLASSES, policy).status == "classified"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_score_chooses_no_class_and_asks_for_review(bad: float) -> None:
    everything = ReviewPolicy(0.5, 0.5, True)
    decision = decide(scores(0.2, bad, 0.4, 0.9), CLASSES, everything, {"Ulcer": 0.1})
    assert (decision.predicted_class, decision.status, decision.reason, decision.flags) == (
        None,
        "review",
        "non_finite",
        (),
    )


def test_a_small_margin_goes_to_review_only_below_review_margin() -> None:
    close = scores(0.7, 0.65, 0.1, 0.1)  # margin 0.05
    assert decide(close, CLASSES, OFF).status == "classified"
    decision = decide(close, CLASSES, ReviewPolicy(review_margin=0.1))
    assert (decision.status, decision.reason) == ("review", "small_margin")
    assert decide(close, CLASSES, ReviewPolicy(review_margin=0.04)).status == "classified"


def test_flags_list_every_class_at_or_above_its_threshold_in_class_order() -> None:
    thresholds = {"Ulcer": 0.3, "Bleeding": 0.4, "Polyp": 0.95}
    decision = decide(scores(0.4, 0.9, 0.5, 0.35), CLASSES, OFF, thresholds)
    assert decision.flags == ("Bleeding", "Ulcer")  # 0.4 >= 0.4; Polyp 0.5 < 0.95
    # Flags alone route nothing: the argmax still wins.
    assert (decision.status, decision.predicted_class) == ("classified", "Normal")


def test_review_on_flag_sends_a_flagged_class_that_lost_the_argmax_to_review() -> None:
    policy = ReviewPolicy(review_on_flag=True)
    lost = decide(scores(0.4, 0.9, 0.5, 0.35), CLASSES, policy, {"Ulcer": 0.3, "Bleeding": 0.4})
    assert (lost.status, lost.reason, lost.predicted_class) == (
        "review",
        "flagged:Bleeding;Ulcer",
        "Normal",
    )
    won = decide(scores(0.9, 0.2, 0.1, 0.1), CLASSES, policy, {"Bleeding": 0.4})
    assert (won.status, won.flags) == ("classified", ("Bleeding",))


def test_the_first_reason_in_order_is_given() -> None:
    everything = ReviewPolicy(review_threshold=0.8, review_margin=0.5, review_on_flag=True)
    values = scores(0.5, 0.7, 0.6, 0.1)  # low top, small margin, Bleeding flagged and lost
    assert decide(values, CLASSES, everything, {"Bleeding": 0.4}).reason == "low_confidence"
    no_threshold = ReviewPolicy(review_margin=0.5, review_on_flag=True)
    assert decide(values, CLASSES, no_threshold, {"Bleeding": 0.4}).reason == "small_margin"
