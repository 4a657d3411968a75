"""A capsule-vision export of a real daemon's audit log scores with the real gicls-train score."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gicls.audit.cli import app
from tests.daemon import harness

pytestmark = pytest.mark.slow

SCORE_COMMAND = [str(Path(sys.executable).with_name("gicls-train")), "score"]


def _balanced_accuracy(truth: dict[str, str], predicted: dict[str, str]) -> float:
    """Mean over the true classes of the share of their images predicted right (by hand)."""
    totals = Counter(truth.values())
    right = Counter(label for name, label in truth.items() if predicted[name] == label)
    return sum(right[label] / total for label, total in totals.items()) / len(totals)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_capsule_vision_export_scores_against_its_truth(
    tmp_path: Path, make_bundle, suffix: str
) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    images = {f"frame {n}.png": harness.png(n, 48) for n in range(5)}
    images["a,b.png"] = harness.jpeg(7)
    images["copy of frame 0.png"] = images["frame 0.png"]  # a duplicate row, scored again
    for name, data in images.items():
        (site.inbox / name).write_bytes(data)
    (site.inbox / "broken.jpg").write_bytes(harness.truncated_jpeg(9))  # quarantined: not exported
    assert harness.run_once(site.config) == 0

    with site.audit_log.open(newline="") as handle:
        rows = {row["file_name"]: row for row in csv.DictReader(handle)}
    predicted = {name: rows[name]["predicted_class"] for name in images}
    # The truth agrees with the daemon except for one image, so the score is not trivially 1.
    truth = dict(predicted)
    wrong = next(c for c in harness.CLASSES if c != predicted["a,b.png"])
    truth["a,b.png"] = wrong
    truth_file = tmp_path / "truth.csv"
    with truth_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "class_label"])
        # The challenge's ground truth names images by Windows paths.
        writer.writerows([f"Testing set\\{label}\\{name}", label] for name, label in truth.items())

    submission = tmp_path / f"submission{suffix}"
    exported = CliRunner().invoke(
        app, ["export", "--format", "capsule-vision", str(submission), "-c", str(site.config)]
    )
    assert exported.exit_code == 0, exported.output
    assert exported.stdout == f"wrote {len(images)} rows to {submission}\n"

    metrics_file = tmp_path / "metrics.json"
    scored = subprocess.run(
        [
            *(*SCORE_COMMAND, str(truth_file), str(submission)),
            *("--json", str(metrics_file), "-c", str(site.config)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scored.returncode == 0, scored.stdout + scored.stderr
    metrics = json.loads(metrics_file.read_text())
    assert set(metrics["class_wise_metrics"]) == set(harness.CLASSES)
    assert metrics["balanced_accuracy"] == pytest.approx(_balanced_accuracy(truth, predicted))
    assert metrics["balanced_accuracy"] < 1
