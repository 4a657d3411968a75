import shutil

import pytest

from gicls.errors import DatasetError
from gicls.training.scan import scan_labelled_tree
from gicls.training.split import given_split, holdout_split

from .conftest import make_tree

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
