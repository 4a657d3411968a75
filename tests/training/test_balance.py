import csv
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gicls.training.balance import (
    balance_condition,
    even_quotas,
    materialize,
    resample,
    validation_condition,
)
from gicls.training.scan import ImageRecord

CLASSES = ("A", "B", "C", "D")


def records(counts: dict[int, int], root: Path = Path("/data")) -> list[ImageRecord]:
    return [
        ImageRecord(root / CLASSES[c] / f"{c}_{n}.png", c, f"{c}-{n}")
        for c, count in counts.items()
        for n in range(count)
    ]


def test_short_side_is_upsampled_to_target_using_every_image():
    train = records({0: 7, 1: 50, 2: 50, 3: 50})
    balanced = balance_condition(train, 0, CLASSES, target_count=20, seed=1)
    assert len(balanced.positives) == 20
    assert {r.sha256 for r in balanced.positives} == {f"0-{n}" for n in range(7)}
    assert all(r.class_index == 0 for r in balanced.positives)


def test_long_side_is_downsampled_without_repeats():
    train = records({0: 50, 1: 50, 2: 50, 3: 50})
    balanced = balance_condition(train, 0, CLASSES, target_count=20, seed=1)
    assert len(balanced.positives) == 20
    assert len({r.sha256 for r in balanced.positives}) == 20


def test_negatives_are_spread_evenly_over_the_other_classes():
    train = records({0: 10, 1: 100, 2: 3, 3: 40})
    balanced = balance_condition(train, 0, CLASSES, target_count=31, seed=3)
    per_class = Counter(r.class_index for r in balanced.negatives)
    assert len(balanced.negatives) == 31
    assert 0 not in per_class
    assert sorted(per_class.values()) == [10, 10, 11]
    # Class 2 has only 3 images: its share is up-sampled, all three used.
    assert {r.sha256 for r in balanced.negatives if r.class_index == 2} == {"2-0", "2-1", "2-2"}


def test_balancing_is_deterministic_and_seed_dependent():
    train = records({0: 10, 1: 30, 2: 30, 3: 30})
    first = balance_condition(train, 1, CLASSES, 25, seed=5)
    again = balance_condition(train, 1, CLASSES, 25, seed=5)
    other = balance_condition(train, 1, CLASSES, 25, seed=6)
    assert first == again
    assert first.negatives != other.negatives


def test_even_quotas_skip_empty_pools_and_sum_to_total():
    rng = np.random.default_rng(0)
    assert even_quotas(10, [5, 0, 5], rng) == [5, 0, 5]
    quotas = even_quotas(7, [1, 1, 1], rng)
    assert sum(quotas) == 7 and sorted(quotas) == [2, 2, 3]
    assert even_quotas(4, [0, 0], rng) == [0, 0]
    assert resample([], 5, rng) == []


def test_validation_set_is_balanced_and_never_repeats_an_image():
    validation = records({0: 6, 1: 2, 2: 10, 3: 10})
    held_out = validation_condition(validation, 0, CLASSES, seed=1)
    assert len(held_out.positives) == 6
    assert len(held_out.negatives) == 6
    assert len({r.sha256 for r in held_out.negatives}) == 6
    assert Counter(r.class_index for r in held_out.negatives)[1] <= 2


@pytest.mark.parametrize("mode", ["hardlink", "symlink", "copy"])
def test_materialize_writes_distinct_names_and_a_manifest(tmp_path, mode):
    source = tmp_path / "src"
    train = records({0: 3, 1: 5, 2: 5, 3: 5}, root=source)
    for record in train:
        record.path.parent.mkdir(parents=True, exist_ok=True)
        record.path.write_bytes(record.sha256.encode())
    balanced = balance_condition(train, 0, CLASSES, target_count=8, seed=2)
    folder = materialize(balanced, CLASSES, tmp_path / "Balanced_Data", mode)
    positives = sorted((folder / "positive").iterdir())
    assert len(positives) == 8
    assert len(list((folder / "negative").iterdir())) == 8
    source_of_first = balanced.positives[0].path
    assert positives[0].is_symlink() == (mode == "symlink")
    shares_inode = positives[0].lstat().st_ino == source_of_first.stat().st_ino
    assert shares_inode == (mode == "hardlink")
    with (folder / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16
    for row in rows:
        assert (folder / row["entry"]).read_bytes() == row["sha256"].encode()
        assert Path(row["source"]).read_bytes() == row["sha256"].encode()
    # Rebuilding replaces the folder instead of accumulating stale entries.
    materialize(balanced, CLASSES, tmp_path / "Balanced_Data", mode)
    assert len(os.listdir(folder / "positive")) == 8


def test_materialize_none_writes_only_the_manifest(tmp_path):
    balanced = balance_condition(records({0: 3, 1: 3, 2: 3, 3: 3}), 0, CLASSES, 4, seed=2)
    folder = materialize(balanced, CLASSES, tmp_path / "B", "none")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.csv"]


def test_prevalence_negatives_follow_the_other_classes_sizes():
    train = records({0: 10, 1: 600, 2: 300, 3: 100})
    balanced = balance_condition(train, 0, CLASSES, 100, seed=1, negatives="prevalence")
    per_class = Counter(r.class_index for r in balanced.negatives)
    assert per_class == {1: 60, 2: 30, 3: 10}
    assert len({r.sha256 for r in balanced.negatives}) == 100  # drawn without repeats


def test_source_negatives_take_the_same_share_of_every_class_and_source_pair():
    train = records({0: 10, 1: 300, 2: 300, 3: 300})
    # Class 1 comes from two sources, the others from one: 4 (class, source) pools.
    source_of = {r.path: ("X" if r.class_index != 1 or n % 2 else "Y") for n, r in enumerate(train)}
    balanced = balance_condition(
        train, 0, CLASSES, 80, seed=1, negatives="sources", source_of=source_of
    )
    cells = Counter((r.class_index, source_of[r.path]) for r in balanced.negatives)
    assert cells == {(1, "X"): 20, (1, "Y"): 20, (2, "X"): 20, (3, "X"): 20}


def test_source_negatives_never_repeat_a_small_pool_while_others_have_unused_images():
    train = records({0: 10, 1: 5, 2: 300})
    source_of = {r.path: "X" for r in train}
    balanced = balance_condition(
        train, 0, CLASSES[:3], 40, seed=1, negatives="sources", source_of=source_of
    )
    per_class = Counter(r.class_index for r in balanced.negatives)
    assert per_class == {1: 5, 2: 35}
    assert len({r.sha256 for r in balanced.negatives}) == 40


def test_target_count_all_uses_every_image_once_and_weights_both_sides_equally():
    train = records({0: 10, 1: 60, 2: 20, 3: 30})
    balanced = balance_condition(train, 0, CLASSES, "all", seed=1)
    entries, labels = balanced.records_and_labels()
    assert sorted(r.sha256 for r in entries) == sorted(r.sha256 for r in train)
    weights = balanced.sample_weights()
    assert weights is not None and len(weights) == len(entries)
    assert weights[labels == 1].sum() == pytest.approx(weights[labels == 0].sum())
    assert weights.sum() == pytest.approx(len(entries))  # the loss keeps its scale


def test_all_negatives_take_every_other_image_beside_resampled_positives():
    train = records({0: 10, 1: 60, 2: 20, 3: 30})
    balanced = balance_condition(train, 0, CLASSES, 25, seed=1, negatives="all")
    assert len(balanced.positives) == 25
    assert sorted(r.sha256 for r in balanced.negatives) == sorted(
        r.sha256 for r in train if r.class_index != 0
    )
    assert balanced.sample_weights() is not None


def test_equal_sides_need_no_weights():
    balanced = balance_condition(records({0: 10, 1: 30, 2: 30, 3: 30}), 0, CLASSES, 20, seed=1)
    assert balanced.sample_weights() is None


def test_source_negatives_repeat_only_when_the_pools_hold_too_few_images():
    train = records({0: 10, 1: 5, 2: 6})
    source_of = {r.path: "X" for r in train}
    balanced = balance_condition(
        train, 0, CLASSES[:3], 20, seed=1, negatives="sources", source_of=source_of
    )
    assert len(balanced.negatives) == 20
    assert {r.sha256 for r in balanced.negatives} == {r.sha256 for r in train if r.class_index}
