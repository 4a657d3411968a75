"""`balance.group_by`: a patient (folder) or a video (pattern) never straddles the split."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gicls.config import parse_config
from gicls.errors import ConfigError, DatasetError
from gicls.training.pipeline import prepare_data

from .conftest import write_image

CLASSES = ("Bleeding", "Normal")
# Patients of uneven size: indivisible groups cannot hit 20 % exactly.
PATIENT_SIZES = {"Bleeding": [7, 1, 2, 5, 3], "Normal": [6, 4, 4, 2, 1, 3]}


def patient_tree(root: Path) -> Path:
    n = 0
    for index, (name, sizes) in enumerate(PATIENT_SIZES.items()):
        for patient, size in enumerate(sizes):
            for _ in range(size):
                write_image(root / name / f"P{patient}" / f"f{n:03d}.png", name, index, n, 32)
                n += 1
    return root


def config_for(root: Path, **balance: object):
    return parse_config(
        {
            "classes": list(CLASSES),
            "paths": {"training_dir": str(root)},
            "balance": {"near_duplicate_bits": 0, **balance},
            "train": {"image_size": 32},
        }
    )


def side_of_label(split) -> dict[str, set[str]]:
    """Label (first sub-folder; patients are shared across classes) -> sides it appears on."""
    sides: dict[str, set[str]] = {}
    for side, records in (("train", split.train), ("validation", split.validation)):
        for record in records:
            sides.setdefault(record.path.parent.name, set()).add(side)
    return sides


def test_group_by_folder_keeps_each_patient_on_one_side_and_reports_the_real_fraction(tmp_path):
    root = patient_tree(tmp_path / "data")
    # The same frame filed under two patients joins them into one unit.
    shutil.copy(root / "Normal" / "P0" / "f018.png", root / "Normal" / "P5" / "copy.png")
    with capture_logs() as logs:
        data = prepare_data(config_for(root, group_by="folder"), 32)
    split = data.split
    assert all(len(sides) == 1 for sides in side_of_label(split).values())
    for index, name in enumerate(CLASSES):
        held = sum(r.class_index == index for r in split.validation)
        total = held + sum(r.class_index == index for r in split.train)
        # Honest: the figure recorded is the image fraction really held out.
        assert split.fractions[name]["achieved"] == round(held / total, 4)
    assert split.fractions["Bleeding"]["achieved"] != 0.2  # 18 images in groups of 7,1,2,5,3
    record = data.summary["split"]
    assert record["settings"]["balance.group_by"] == "folder"
    # Normal: P0 and P5 are one unit, so 5 units for its 6 folders.
    normal = record["groups"]["Normal"]
    assert normal["train"] + normal["validation"] == 5
    assert min(normal.values()) >= 1
    assert any(e["event"] == "split_groups" for e in logs)


def test_without_group_by_patients_straddle_the_split(tmp_path):
    data = prepare_data(config_for(patient_tree(tmp_path / "data")), 32)
    assert any(len(sides) == 2 for sides in side_of_label(data.split).values())
    assert "balance.group_by" not in data.summary["split"]["settings"]


def test_group_by_pattern_groups_flat_frames_by_video_id(tmp_path):
    root = tmp_path / "data"
    for index, name in enumerate(CLASSES):
        for n in range(12):
            write_image(root / name / f"vid{n % 4}_{n:04d}.png", name, index, 1000 * index + n, 32)
    write_image(root / "Normal" / "loose.png", "Normal", 1, 9999, 32)  # no match: own group
    data = prepare_data(config_for(root, group_by="pattern", group_pattern=r"^(vid\d+)_"), 32)
    videos: dict[str, set[str]] = {}
    for side, records in (("train", data.split.train), ("validation", data.split.validation)):
        for record in records:
            videos.setdefault(record.path.name.split("_")[0], set()).add(side)
    assert set(videos) == {"vid0", "vid1", "vid2", "vid3", "loose.png"}
    assert all(len(sides) == 1 for sides in videos.values())
    assert data.summary["split"]["groups"]["Normal"]["train"] >= 1


def test_a_class_in_one_folder_is_warned_about_and_cannot_be_split(tmp_path):
    root = tmp_path / "data"
    for index, name in enumerate(CLASSES):
        for n in range(4):
            write_image(root / name / f"P{index}" / f"f{n}.png", name, index, 10 * index + n, 32)
    with capture_logs() as logs, pytest.raises(DatasetError, match="group"):
        prepare_data(config_for(root, group_by="folder"), 32)
    assert {e["class_name"] for e in logs if e["event"] == "class_has_few_groups"} == set(CLASSES)


@pytest.mark.parametrize(
    ("balance", "key"),
    [
        ({"group_by": "pattern"}, "balance.group_pattern"),
        ({"group_by": "pattern", "group_pattern": "(a)(b)"}, "balance.group_pattern"),
        ({"group_by": "pattern", "group_pattern": "(unclosed"}, "balance.group_pattern"),
        ({"group_by": "patient"}, "balance.group_by"),
    ],
)
def test_bad_grouping_keys_are_named(balance, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config({"balance": balance})
