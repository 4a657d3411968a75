import numpy as np

from gicls.training.calibration import (
    apply_calibration,
    cross_fitted_scores,
    fit_calibration,
    review_tradeoff,
    suggest_review_threshold,
)

CLASSES = ("A", "B", "C")


def overconfident_scores(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class B's model always says ~0.99 for its class and ~0.9 for others: miscalibrated."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    scores = np.where(np.eye(3)[truth] == 1, 0.75, 0.25) + rng.normal(0, 0.1, (n, 3))
    scores[:, 1] = np.where(truth == 1, 0.99, 0.9) + rng.normal(0, 0.005, n)
    return np.clip(scores, 0.01, 0.995).astype(np.float32), truth


def test_temperature_keeps_order_within_a_class_and_platt_fixes_the_offset():
    scores, truth = overconfident_scores()
    temperature = fit_calibration(scores, truth, CLASSES, "temperature")
    assert all(c.shift == 0.0 for c in temperature.classes.values())
    calibrated = apply_calibration(scores, temperature, CLASSES)
    for column in range(3):
        order = np.argsort(scores[:, column], kind="stable")
        assert np.all(np.diff(calibrated[order, column]) >= 0)  # monotone: ranking kept
    platt = apply_calibration(scores, fit_calibration(scores, truth, CLASSES, "platt"), CLASSES)
    raw_accuracy = (scores.argmax(1) == truth).mean()
    platt_accuracy = (platt.argmax(1) == truth).mean()
    # The overconfident column wins every argmax before calibration; Platt scaling repairs it.
    assert raw_accuracy < 0.5 < 0.9 < platt_accuracy


def test_cross_fitted_scores_never_use_the_image_they_score():
    scores, truth = overconfident_scores(n=100)
    crossed, really = cross_fitted_scores(scores, truth, CLASSES, "platt", seed=0)
    assert really
    full = apply_calibration(scores, fit_calibration(scores, truth, CLASSES, "platt"), CLASSES)
    assert crossed.shape == scores.shape
    assert not np.allclose(crossed, full)  # different maps per fold
    assert (crossed.argmax(1) == truth).mean() > 0.85


def test_review_tradeoff_counts_errors_caught():
    scores = np.array([[0.9, 0.1], [0.4, 0.3], [0.2, 0.45], [0.8, 0.7]])
    truth = np.array([0, 1, 1, 0])  # row 1 is wrong (0.4 > 0.3), the rest right
    rows = review_tradeoff(scores, truth, [0.0, 0.42, 0.5, 1.0])
    assert [r["review_rate"] for r in rows] == [0.0, 0.25, 0.5, 1.0]
    assert [r["errors_caught"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert suggest_review_threshold(rows, max_review_rate=0.3)["threshold"] == 0.42
    assert suggest_review_threshold(rows, max_review_rate=0.1)["threshold"] == 0.0
