"""Hold out the validation split before any balancing.

The classic script balanced first (with replacement) and split afterwards, so copies of
training images landed in its validation set and its accuracies were inflated. Here the split
is made per class on unique image content, seeded, before anything is up-sampled, and every
copy of an image stays on the side its content was assigned to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
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
    records: Sequence[ImageRecord], classes: Sequence[str], fraction: float, seed: int
) -> Split:
    """Stratified split by content: ``fraction`` of each class's unique images to validation.

    Each class with at least two unique images keeps at least one on each side.
    """
    if fraction <= 0:
        raise DatasetError(
            "key 'balance.validation_fraction' is 0 and no 'paths.validation_dir' is set: "
            "there would be nothing to validate on"
        )
    rng = np.random.default_rng(seed)
    side_of_hash: dict[str, str] = {}
    for index, name in enumerate(classes):
        # Hashes already assigned (the same image filed under an earlier class) keep their side.
        hashes = sorted({r.sha256 for r in records if r.class_index == index} - side_of_hash.keys())
        if len(hashes) < 2:
            raise DatasetError(
                f"class {name!r} has {len(hashes)} distinct image(s); at least 2 are needed "
                "to train and validate"
            )
        order = rng.permutation(len(hashes))
        n_validation = min(max(1, round(len(hashes) * fraction)), len(hashes) - 1)
        for rank, position in enumerate(order):
            side_of_hash[hashes[position]] = "validation" if rank < n_validation else "train"
    train = [r for r in records if side_of_hash[r.sha256] == "train"]
    validation = [r for r in records if side_of_hash[r.sha256] == "validation"]
    return Split(train, validation)


def given_split(
    train: Sequence[ImageRecord], validation: Sequence[ImageRecord], classes: Sequence[str]
) -> Split:
    """Use a separate labelled validation tree, dropping images whose content is in training."""
    train_hashes = {r.sha256 for r in train}
    leaked = [r for r in validation if r.sha256 in train_hashes]
    if leaked:
        log.warning(
            "validation_overlap_dropped",
            count=len(leaked),
            example=[str(r.path) for r in leaked[:3]],
        )
    kept = [r for r in validation if r.sha256 not in train_hashes]
    per_class: dict[int, int] = defaultdict(int)
    for record in kept:
        per_class[record.class_index] += 1
    empty = [name for index, name in enumerate(classes) if per_class[index] == 0]
    if empty:
        raise DatasetError(f"validation tree has no usable images for: {', '.join(empty)}")
    return Split(list(train), kept)
