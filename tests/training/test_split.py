import shutil

import pytest
from structlog.testing import capture_logs

from gicls.errors import DatasetError
from gicls.training.scan import scan_labelled_tree
from gicls.training.split import given_split, holdout_split

from .conftest import make_tree, write_image

CLASSES = ("Bleeding", "Normal", "Polyp")


@pytest.fixture
def scanned(tmp_path):
    make_tree(tmp_path, {"Bleeding": 10, "Normal": 20, "Polyp": 5})
    # Copies inside a class and across classes: they must never straddle the split.
    for n in range(4):
        shutil.copy(tmp_path / "Normal" / f"img_{n:03d}.png", tmp_path / "Normal" / f"dup{n}.png")
    shutil.copy(tmp_path / "Bleeding" / "img_001.png", tmp_path / "Polyp" / "cross.png")
    return scan_labelled_tree(tmp_path, CLASSES)


def test_no_content_on_both_sides(scanned):
    split = holdout_split(scanned.records, CLASSES, 0.3, seed=7)
    train_hashes = {r.sha256 for r in split.train}
    assert train_hashes.isdisjoint({r.sha256 for r in split.validation})
    assert len(split.train) + len(split.validation) == len(scanned.records)


def test_split_is_stratified_per_class(tmp_path):
    records = scan_labelled_tree(
        make_tree(tmp_path, {"Bleeding": 10, "Normal": 20, "Polyp": 5}), CLASSES
    ).records
    split = holdout_split(records, CLASSES, 0.2, seed=7)
    assert split.counts(len(CLASSES)) == ([8, 16, 4], [2, 4, 1])


def test_split_is_deterministic_for_a_seed_and_changes_with_it(scanned):
    first = holdout_split(scanned.records, CLASSES, 0.3, seed=1)
    again = holdout_split(scanned.records, CLASSES, 0.3, seed=1)
    other = holdout_split(scanned.records, CLASSES, 0.3, seed=2)
    assert [r.path for r in first.validation] == [r.path for r in again.validation]
    assert {r.path for r in first.validation} != {r.path for r in other.validation}


def test_zero_fraction_without_validation_tree_is_refused(scanned):
    with pytest.raises(DatasetError, match="validation_fraction"):
        holdout_split(scanned.records, CLASSES, 0.0, seed=1)


def test_class_with_a_single_image_is_refused(tmp_path):
    make_tree(tmp_path, {"Bleeding": 3, "Normal": 3, "Polyp": 1})
    records = scan_labelled_tree(tmp_path, CLASSES).records
    with pytest.raises(DatasetError, match="'Polyp' has 1 distinct"):
        holdout_split(records, CLASSES, 0.2, seed=1)


def test_given_validation_tree_drops_images_seen_in_training(tmp_path):
    train = scan_labelled_tree(make_tree(tmp_path / "t", {c: 4 for c in CLASSES}), CLASSES)
    make_tree(tmp_path / "v", {c: 2 for c in CLASSES}, seed=1)
    shutil.copy(tmp_path / "t" / "Normal" / "img_003.png", tmp_path / "v" / "Normal" / "leak.png")
    validation = scan_labelled_tree(tmp_path / "v", CLASSES)
    split = given_split(train.records, validation.records, CLASSES)
    assert len(split.validation) == 6
    assert "leak.png" not in {r.path.name for r in split.validation}
    assert split.train == train.records


def test_given_validation_tree_needs_every_class(tmp_path):
    train = scan_labelled_tree(make_tree(tmp_path / "t", {c: 4 for c in CLASSES}), CLASSES)
    # Same (class, n, seed) gives the same picture: every validation image is a training copy.
    validation = scan_labelled_tree(make_tree(tmp_path / "v", {c: 2 for c in CLASSES}), CLASSES)
    with pytest.raises(DatasetError, match="no usable images for: Bleeding, Normal, Polyp"):
        given_split(train.records, validation.records, CLASSES)


def held_out_hashes(split, class_index):
    return sorted(r.sha256 for r in split.validation if r.class_index == class_index)


def test_adding_an_image_to_one_class_leaves_the_other_classes_split_alone(tmp_path):
    # 12 -> 13 images changes how much of a shared random stream a permutation consumes.
    make_tree(tmp_path, {"Bleeding": 12, "Normal": 12, "Polyp": 9})
    before = holdout_split(scan_labelled_tree(tmp_path, CLASSES).records, CLASSES, 0.3, seed=5)
    write_image(tmp_path / "Bleeding" / "added.png", "Bleeding", 0, seed=777)
    after = holdout_split(scan_labelled_tree(tmp_path, CLASSES).records, CLASSES, 0.3, seed=5)
    for index in (1, 2):
        assert held_out_hashes(after, index) == held_out_hashes(before, index)


def test_the_fraction_is_met_in_images_when_one_group_is_large(tmp_path):
    make_tree(tmp_path, {"Bleeding": 20, "Normal": 5, "Polyp": 5})
    records = scan_labelled_tree(tmp_path, CLASSES).records
    # Six Bleeding images are near-duplicates of each other: one indivisible group.
    bleeding = sorted(r.sha256 for r in records if r.class_index == 0)
    group_of = {sha: "big" for sha in bleeding[:6]}
    for seed in range(5):
        split = holdout_split(records, CLASSES, 0.2, seed=seed, group_of=group_of)
        held = [r for r in split.validation if r.class_index == 0]
        assert len(held) == 4, seed  # 20 % of 20 images, not 20 % of 15 groups
        assert split.fractions["Bleeding"] == {"requested": 0.2, "achieved": 0.2}


def test_a_fraction_groups_cannot_meet_is_warned_about(tmp_path):
    make_tree(tmp_path, {"Bleeding": 10, "Normal": 5, "Polyp": 5})
    records = scan_labelled_tree(tmp_path, CLASSES).records
    bleeding = sorted(r.sha256 for r in records if r.class_index == 0)
    group_of = {sha: f"half-{n // 5}" for n, sha in enumerate(bleeding)}
    with capture_logs() as logs:
        split = holdout_split(records, CLASSES, 0.2, seed=1, group_of=group_of)
    assert split.fractions["Bleeding"] == {"requested": 0.2, "achieved": 0.5}
    off = [e for e in logs if e["event"] == "validation_fraction_off"]
    assert [(e["class_name"], e["achieved"]) for e in off] == [("Bleeding", 0.5)]
