"""Training-side evaluation and the daemon score one image identically.

The same image goes through ``gicls-train evaluate --data DIR`` (predictions.xlsx) and through
the daemon (its audit row), with a real tiny bundle that carries a calibration: same decode,
same fused graph, same calibration, so the same scores (to 1e-6; the row keeps 6 decimals).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gicls.training.cli import app as train_app
from tests.daemon import harness
from tests.daemon.harness import CLASSES

pytestmark = pytest.mark.slow


def test_the_daemon_writes_the_scores_evaluation_reports(tmp_path: Path, make_bundle) -> None:
    models_dir = make_bundle()
    # A map far from identity, so a calibration applied differently would show.
    calibration = {
        "method": "platt",
        "classes": {name: {"scale": 3.0 + n, "shift": -0.4 * n} for n, name in enumerate(CLASSES)},
    }
    harness.republish_bundle(models_dir, calibration=calibration)
    data = tmp_path / "data"
    for n, name in enumerate(CLASSES):
        (data / name).mkdir(parents=True)
        (data / name / f"{name}_png.png").write_bytes(harness.png(n, size=40))
        (data / name / f"{name}_jpg.jpg").write_bytes(harness.jpeg(n + 10, size=48))
    site = harness.write_config(tmp_path / "site", models_dir)

    evaluated = tmp_path / "evaluation"
    result = CliRunner().invoke(
        train_app,
        ["evaluate", "-c", str(site.config), "--data", str(data), "--out", str(evaluated)],
    )
    assert result.exit_code == 0, result.output
    expected = pd.read_excel(evaluated / "predictions.xlsx").set_index("image_path")

    for image in data.glob("*/*"):
        shutil.copy(image, site.inbox / image.name)
    harness.run_once_here(site.config)
    rows = harness.read_audit(site.audit_log)

    assert sorted(row["file_name"] for row in rows) == sorted(expected.index)
    for row in rows:
        for name in CLASSES:
            assert float(row[name]) == pytest.approx(
                expected.at[row["file_name"], name], abs=1e-6
            ), (
                row["file_name"],
                name,
            )
        assert row["predicted_class"] == expected.at[row["file_name"], "predicted_class"]
