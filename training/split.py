"""Hold out the validation split before any balancing.

The classic script balanced first (with replacement) and split afterwards, so copies of
training images landed in its validation set and its accuracies were inflated. Here the split
is made per class on unique image content, seeded, before anything is up-sampled, and every
copy of an image (and, given groups, every near-duplicate) stays on the side it was assigned to.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gicls.errors import DatasetError
from gicls.logs import get_logger
from gicls.training.scan import ImageRecord

log = get_logger(__name__)


# Achieved validation fractions further than this from the requested one are warned about.
FRACTION_TOLERANCE = 0.05


@dataclass(frozen=True)
class Split:
    train: list[ImageRecord]
    validation: list[ImageRecord]
    # Per class: requested and achieved validation fraction, in images (held-out splits only).
    fractions: dict[str, dict[str, float]] = field(default_factory=dict)
    # Per class: split units (groups; an ungrouped image is a unit of its own) on each side.
    groups: dict[str, dict[str, int]] = field(default_factory=dict)

    def counts(self, n_classes: int) -> tuple[list[int], list[int]]:
        train = np.bincount([r.class_index for r in self.train], minlength=n_classes)
        validation = np.bincount([r.class_index for r in self.validation], minlength=n_classes)
        return train.tolist(), validation.tolist()


def class_stream(seed: int, class_name: str) -> np.random.Generator:
    """The random stream of one class: an image added to one class leaves the others' draws
    (and so their held-out sets) alone."""
    return np.random.default_rng([seed, zlib.crc32(class_name.encode())])


def _pick_groups(order: Sequence[int], sizes: Sequence[int], held: int, target: float) -> list[int]:
    """Positions of the groups to hold out so that ``held`` images get closest to ``target``.

    Groups are indivisible: in the random ``order``, every group that still fits is taken,
    then the first one whose overshoot is closer to the target than stopping short.
    """
    chosen: list[int] = []
    for position in order:
        if held + sizes[position] <= target:
            chosen.append(position)
            held += sizes[position]
    taken = set(chosen)
    for position in order:
        if position not in taken and abs(held + sizes[position] - target) < abs(held - target):
            chosen.append(position)
            break
    return chosen


def holdout_split(
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    fraction: float,
    seed: int,
    group_of: Mapping[str, str] | None = None,
) -> Split:
    """Stratified split by content: ``fraction`` of each class's images to validation.

    ``group_of`` maps a content hash to a group key (near-duplicates, a patient: see
    ``gicls.training.grouping.merge_units``); a group is
    one indivisible unit of the split, and groups are picked until the class's held-out image
    count is closest to ``fraction``. Each class with at least two groups keeps one on each
    side.
    """
    group_of = group_of or {}
    if fraction <= 0:
        raise DatasetError(
            "key 'balance.validation_fraction' is 0 and no 'paths.validation_dir' is set: "
            "there would be nothing to validate on"
        )

    def group(record: ImageRecord) -> str:
        return group_of.get(record.sha256, record.sha256)

    side_of_group: dict[str, str] = {}
    fractions: dict[str, dict[str, float]] = {}
    for index, name in enumerate(classes):
        members = [r for r in records if r.class_index == index]
        # Groups already assigned (the same image filed under an earlier class) keep their side.
        held = sum(side_of_group.get(group(r)) == "validation" for r in members)
        size_of = Counter(group(r) for r in members if group(r) not in side_of_group)
        groups = sorted(size_of)
        in_class = len({group(r) for r in members})
        if in_class < 2:
            raise DatasetError(
                f"class {name!r} has {in_class} distinct image(s) or group(s) (near-duplicates "
                "and balance.group_by groups counted once); at least 2 are needed to train and "
                "validate"
            )
        order = class_stream(seed, name).permutation(len(groups)).tolist()
        sizes = [size_of[g] for g in groups]
        chosen = _pick_groups(order, sizes, held, fraction * len(members)) or order[:1]
        if chosen and len(chosen) == len(groups):
            chosen.pop()
        # Groups shared with an earlier class (balance.group_by) may have decided every side.
        if held + sum(sizes[p] for p in chosen) in (0, len(members)):
            raise DatasetError(
                f"class {name!r}: all its groups are on one side of the split through groups "
                "it shares with other classes (balance.group_by); it cannot be validated"
            )
        held_out = set(chosen)
        for position, key in enumerate(groups):
            side_of_group[key] = "validation" if position in held_out else "train"
        held += sum(sizes[position] for position in chosen)
        fractions[name] = {"requested": fraction, "achieved": round(held / len(members), 4)}
        if abs(held / len(members) - fraction) > FRACTION_TOLERANCE:
            log.warning(
                "validation_fraction_off",
                class_name=name,
                requested=fraction,
                achieved=round(held / len(members), 4),
                images=len(members),
                reason="groups (near-duplicates, balance.group_by) are indivisible",
            )
    log.info("validation_fractions", **{n: f["achieved"] for n, f in fractions.items()})
    train = [r for r in records if side_of_group[group(r)] == "train"]
    validation = [r for r in records if side_of_group[group(r)] == "validation"]
    groups = _groups_per_side(records, classes, side_of_group, group)
    log.info("split_groups", **{n: f"{g['train']}/{g['validation']}" for n, g in groups.items()})
    return Split(train, validation, fractions, groups)


def _groups_per_side(
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    side_of_group: Mapping[str, str],
    group: Callable[[ImageRecord], str],
) -> dict[str, dict[str, int]]:
    """Distinct groups of each class's images on each side."""
    seen: dict[str, dict[str, set[str]]] = {
        name: {"train": set(), "validation": set()} for name in classes
    }
    for record in records:
        key = group(record)
        seen[classes[record.class_index]][side_of_group[key]].add(key)
    return {name: {side: len(keys) for side, keys in sides.items()} for name, sides in seen.items()}


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
