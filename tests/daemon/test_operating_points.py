"""Issue "Figures a clinician can use", section 3's acceptance: a real tiny bundle with
thresholds for two classes and the real daemon. Every audit row carries its flags, and a file
flagged for a condition that lost the argmax goes to ``_review/`` with ``review_on_flag``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gicls.daemon.decode import decode_batch
from gicls.models.ensemble import FusedEnsemble
from tests.daemon import harness
from tests.daemon.harness import CLASSES, DaemonProcess

pytestmark = pytest.mark.slow

IMAGES = 12


def _thresholds(scores: np.ndarray) -> tuple[dict[str, float], int, int]:
    """Thresholds for two classes, chosen from the bundle's own scores (N, C) of the images:

    - class 0 flags exactly the image with its highest score among those whose argmax is
      another class (the threshold half-way to the next such score, so float noise cannot move
      an image across): that flag lost the argmax;
    - class 1 flags the upper half of the images it wins (and none it loses), half-way
      between two of their scores.

    Returns the thresholds by class name, the flagged image and the index of class 0.
    """
    winners = scores.argmax(axis=1)
    lost = 0
    others = np.flatnonzero(winners != lost)
    ranked = others[np.argsort(scores[others, lost])[::-1]]
    flagged, runner_up = ranked[0], ranked[1]
    lost_threshold = (scores[flagged, lost] + scores[runner_up, lost]) / 2
    won = 1
    wins = np.sort(scores[winners == won, won])
    assert len(wins) >= 2, "the untrained bundle no longer lets class 1 win: pick another"
    won_threshold = (wins[len(wins) // 2 - 1] + wins[len(wins) // 2]) / 2
    assert (scores[winners != won, won] < won_threshold).all()
    return (
        {CLASSES[lost]: float(lost_threshold), CLASSES[won]: float(won_threshold)},
        int(flagged),
        lost,
    )


def test_rows_carry_flags_and_a_flag_that_lost_the_argmax_goes_to_review(
    tmp_path: Path, make_bundle
) -> None:
    models_dir = make_bundle()
    blobs = [harness.png(seed) for seed in range(IMAGES)]
    images, failures = decode_batch(blobs, 32)
    assert not failures
    scores = FusedEnsemble.from_bundle(models_dir, CLASSES)(images)
    thresholds, flagged, lost = _thresholds(scores)
    harness.republish_bundle(
        models_dir,
        thresholds={
            name: {"threshold": value, "target_sensitivity": target}
            for (name, value), target in zip(thresholds.items(), (0.95, 0.9), strict=True)
        },
    )
    site = harness.write_config(tmp_path, models_dir, review_on_flag=True)
    dropped: Counter[tuple[bytes, str]] = Counter()
    for seed, data in enumerate(blobs):
        (site.inbox / f"img_{seed:02d}.png").write_bytes(data)
        dropped[(f"img_{seed:02d}.png".encode(), harness.sha256(data))] += 1

    daemon = DaemonProcess(site.config, "--once")
    assert daemon.wait() == 0, daemon.output()

    rows = {row["file_name"]: row for row in harness.assert_invariant(site, dropped)}
    for seed in range(IMAGES):
        row = rows[f"img_{seed:02d}.png"]
        expected = [
            name for name, t in thresholds.items() if scores[seed, CLASSES.index(name)] >= t
        ]
        assert row["flags"] == ";".join(sorted(expected, key=CLASSES.index)), row
        winner = CLASSES[int(scores[seed].argmax())]
        assert row["predicted_class"] == winner  # the argmax is still the call
        if seed == flagged:
            assert (row["status"], row["reason"]) == ("review", f"flagged:{CLASSES[lost]}")
            assert row["destination"] == f"_review/img_{seed:02d}.png"
            assert CLASSES[lost] in row["flags"].split(";") and winner != CLASSES[lost]
        else:
            assert (row["status"], row["reason"]) == ("classified", ""), row
            assert row["destination"] == f"{winner}/img_{seed:02d}.png"
