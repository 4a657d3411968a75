from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from gicls.audit.device_check import DeviceStatus, device_check
from gicls.audit.study_model import read_bundle_summary
from tests.audit.study_data import (
    CLASSES,
    HELD_OUT_IMAGES,
    REFERENCE,
    Frame,
    bundle_summary,
    manifest,
    write_report,
    write_study,
)


def _frames(predicted: dict[str, int], scores: dict[str, float] | None = None) -> pd.DataFrame:
    """Frames predicted as given, each class's score ``scores[c]`` (default: 0.9 for the
    predicted class, 0.05 for the others)."""
    rows = []
    for name, count in predicted.items():
        for _ in range(count):
            values = scores or {c: 0.9 if c == name else 0.05 for c in CLASSES}
            rows.append({"predicted_class": name, **values})
    return pd.DataFrame(rows)


def test_a_study_mostly_in_one_rare_condition_is_flagged() -> None:
    check = device_check(_frames({"Polyp": 71, "Normal": 29}), CLASSES, REFERENCE)
    assert check.status is DeviceStatus.WARNING and check.warning
    # Its share, and (most frames score 0.9 for it) its median score.
    assert [finding.split(":")[0] for finding in check.findings] == ["Polyp", "Polyp"]
    assert check.findings[0].startswith("Polyp: 71% of the study's frames")
    assert "10% of the held-out images were (bound 35%)" in check.findings[0]


def test_a_healthy_study_is_not_flagged_for_being_more_normal_than_the_held_out_split() -> None:
    check = device_check(_frames({"Normal": 98, "Bleeding": 2}), CLASSES, REFERENCE)
    assert check.status is DeviceStatus.OK and not check.warning
    assert f"100 frames against {HELD_OUT_IMAGES} held-out images" in check.message


def test_scores_far_above_the_held_out_ones_are_flagged_even_with_normal_shares() -> None:
    # Every frame still predicted Normal, but Polyp scores high on all of them.
    frames = _frames({"Normal": 100}, {"Bleeding": 0.05, "Normal": 0.95, "Polyp": 0.7})
    check = device_check(frames, CLASSES, REFERENCE)
    assert check.warning
    assert [finding.split(":")[0] for finding in check.findings] == ["Polyp"]
    assert "median Polyp score is 0.70, above the 95% quantile" in check.findings[0]


def test_too_few_frames_and_no_reference_are_said_so() -> None:
    few = device_check(_frames({"Polyp": 49}), CLASSES, REFERENCE)
    assert few.status is DeviceStatus.TOO_FEW_FRAMES and not few.warning
    assert "49 scored frame(s)" in few.message
    none = device_check(_frames({"Polyp": 100}), CLASSES, None)
    assert none.status is DeviceStatus.NO_REFERENCE
    assert none.message.startswith("no device reference in this bundle")


def test_a_flagged_study_s_report_opens_with_the_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [
        Frame(f"f{n}.jpg", (float(rng.uniform(0, 0.1)), 0.1, float(rng.uniform(0.8, 1.0))))
        for n in range(60)
    ]
    audit = write_study(tmp_path, "s1", frames)
    page = write_report(tmp_path, "s1", audit.table, bundle_summary(REFERENCE), CLASSES)[0]
    body = page.read_text(encoding="utf-8").split("<body>", 1)[1]
    first = re.search(r"<(section|h1)[^>]*>", body)
    assert first is not None and first[0] == '<section class="warning" id="device-warning">'
    assert "Polyp: 100% of the study's frames" in html.unescape(body)


def test_a_bundle_without_a_device_reference_still_loads_and_says_so(tmp_path: Path) -> None:
    models = tmp_path / "Models"
    models.mkdir()
    written = manifest().model_dump(mode="json")
    del written["device_reference"]  # as bundles trained before it was stored
    (models / "manifest.json").write_text(json.dumps(written))
    summary = read_bundle_summary(models)
    assert summary.device_reference is None
    audit = write_study(tmp_path, "s1", [Frame("f.jpg", (0.9, 0.05, 0.05))])
    page = write_report(tmp_path, "s1", audit.table, summary, CLASSES)[0]
    assert "Device check: no device reference in this bundle" in page.read_text()
