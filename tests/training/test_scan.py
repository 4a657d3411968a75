import shutil

import pytest

from gicls.errors import DatasetError
from gicls.training.image_cache import build_image_cache
from gicls.training.scan import scan_labelled_tree

from .conftest import make_tree, write_image

CLASSES = ("Bleeding", "Normal", "Polyp")


def test_finds_images_recursively_with_any_case_extension(tmp_path):
    make_tree(tmp_path, {"Bleeding": 2, "Normal": 2, "Polyp": 2})
    write_image(tmp_path / "Bleeding" / "KID" / "deep" / "NESTED.JPG", "Bleeding", 0, seed=50)
    write_image(tmp_path / "Normal" / "Kvasir" / "upper.PNG", "Normal", 1, seed=51)
    (tmp_path / "Polyp" / "notes.txt").write_text("not an image")
    (tmp_path / "Polyp" / ".hidden.png").write_bytes(b"editor swap")
    result = scan_labelled_tree(tmp_path, CLASSES)
    assert result.per_class_counts() == {"Bleeding": 3, "Normal": 3, "Polyp": 2}
    names = {r.path.name for r in result.records}
    assert {"NESTED.JPG", "upper.PNG"} <= names
    assert [p.name for p, _ in result.skipped] == ["notes.txt"]


def test_missing_and_unexpected_class_folders_are_named(tmp_path):
    make_tree(tmp_path, {"Bleeding": 1, "Normal": 1, "Ulcers": 1})
    with pytest.raises(DatasetError) as raised:
        scan_labelled_tree(tmp_path, CLASSES)
    assert "missing class folder(s): Polyp" in str(raised.value)
    assert "unexpected folder(s) not in 'classes': Ulcers" in str(raised.value)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_labelled_tree(tmp_path / "absent", CLASSES)


def test_identical_files_are_grouped_and_label_conflicts_found(tmp_path):
    make_tree(tmp_path, {"Bleeding": 2, "Normal": 2, "Polyp": 2})
    shutil.copy(tmp_path / "Bleeding" / "img_000.png", tmp_path / "Bleeding" / "copy.png")
    shutil.copy(tmp_path / "Normal" / "img_000.png", tmp_path / "Polyp" / "same_as_normal.png")
    result = scan_labelled_tree(tmp_path, CLASSES)
    groups = sorted(sorted(r.path.name for r in g) for g in result.duplicate_groups())
    assert groups == [["copy.png", "img_000.png"], ["img_000.png", "same_as_normal.png"]]
    conflicts = result.conflicting_labels()
    assert len(conflicts) == 1
    assert {r.class_index for r in conflicts[0]} == {1, 2}


def test_unreadable_image_is_reported_and_dropped_not_fatal(tmp_path):
    make_tree(tmp_path, {"Bleeding": 2, "Normal": 2, "Polyp": 2})
    (tmp_path / "Normal" / "broken.jpg").write_text("this is text, not a JPEG")
    good = (tmp_path / "Polyp" / "img_000.png").read_bytes()
    (tmp_path / "Polyp" / "truncated.png").write_bytes(good[: len(good) // 2])
    result = scan_labelled_tree(tmp_path, CLASSES)
    assert len(result.records) == 8
    cache, kept, failed = build_image_cache(result.records, 32, workers=2)
    assert sorted(r.path.name for r, _ in failed) == ["broken.jpg", "truncated.png"]
    assert len(kept) == 6
    assert cache.pixels.shape == (6, 32, 32, 3)
    assert len(cache.rows(kept)) == 6
