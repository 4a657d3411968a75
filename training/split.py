"""Hold out the validation split before any balancing.

The classic script balanced first (with replacement) and split afterwards, so copies of
training images landed in its validation set and its accuracies were inflated. Here the split
is made per class on unique image content, seeded, before anything is up-sampled, and every
copy of an image (and, given groups, every near-duplicate) stays on the side it was assigned to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gicls.errors import DatasetError
from gicls.logs import get_logger
from gicls.training.scan import ImageRecord

log = get_logger(__name__)


@dataclass(frozen=True)
class Split:
    train: list[ImageRecord]
    validation: list[ImageRecord]

    def counts(self, n_classes: int) -> tuple[list[int], list[int]]:
        train = np.bincount([r.class_index for r in self.train], minlength=n_classes)
        validation = np.bincount([r.class_index for r in self.validation], minlength=n_classes)
        return train.tolist(), validation.tolist()


def holdout_split(
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    fraction: float,
    seed: int,
    group_of: Mapping[str, str] | None = None,
) -> Split:
    """Stratified split by content: ``fraction`` of each class's unique images to validation.

    ``group_of`` maps a content hash to a group key (near-duplicates share one); a group is
    one unit of the split. Each class with at least two groups keeps one on each side.
    """
    group_of = group_of or {}
    if fraction <= 0:
        raise DatasetError(
            "key 'balance.validation_fraction' is 0 and no 'paths.validation_dir' is set: "
            "there would be nothing to validate on"
        )
    rng = np.random.default_rng(seed)
    side_of_group: dict[str, str] = {}
    for index, name in enumerate(classes):
        # Groups already assigned (the same image filed under an earlier class) keep their side.
        groups = sorted(
            {group_of.get(r.sha256, r.sha256) for r in records if r.class_index == index}
            - side_of_group.keys()
        )
        if len(groups) < 2:
            raise DatasetError(
                f"class {name!r} has {len(groups)} distinct image(s) (near-duplicates counted "
                "once); at least 2 are needed to train and validate"
            )
        order = rng.permutation(len(groups))
        n_validation = min(max(1, round(len(groups) * fraction)), len(groups) - 1)
        for rank, position in enumerate(order):
            side_of_group[groups[position]] = "validation" if rank < n_validation else "train"

    def side(record: ImageRecord) -> str:
        return side_of_group[group_of.get(record.sha256, record.sha256)]

    train = [r for r in records if side(r) == "train"]
    validation = [r for r in records if side(r) == "validation"]
    return Split(train, validation)


def given_split(
    train: Sequence[ImageRecord],
    validation: Sequence[ImageRecord],
    classes: Sequence[str],
    group_of: Mapping[str, str] | None = None,
) -> Split:
    """Use a separate labelled validation tree, dropping images already seen in training.

    Seen means the same content, or (with ``group_of``) a near-duplicate of a training image.
    """
    group_of = group_of or {}
    train_groups = {group_of.get(r.sha256, r.sha256) for r in train}
    leaked = [r for r in validation if group_of.get(r.sha256, r.sha256) in train_groups]
    if leaked:
        log.warning(
            "validation_overlap_dropped",
            count=len(leaked),
            example=[str(r.path) for r in leaked[:3]],
        )
    kept = [r for r in validation if group_of.get(r.sha256, r.sha256) not in train_groups]
    per_class: dict[int, int] = defaultdict(int)
    for record in kept:
        per_class[record.class_index] += 1
    empty = [name for index, name in enumerate(classes) if per_class[index] == 0]
    if empty:
        raise DatasetError(f"validation tree has no usable images for: {', '.join(empty)}")
    return Split(list(train), kept)
