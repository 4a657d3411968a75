"""One-vs-all balancing per condition, on the training side of the split only.

Positives are the condition's training images; negatives are drawn evenly across the other
classes. Each side is brought to ``target_count``: every image once, then up-sampled with
replacement when short, or down-sampled without replacement when long. Deterministic for a
seed. The validation side is never touched by this.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gicls.logs import get_logger
from gicls.progress import track
from gicls.training.scan import ImageRecord

log = get_logger(__name__)

MANIFEST_CSV = "manifest.csv"


@dataclass(frozen=True)
class BalancedSet:
    """Training entries for one condition: label 1 = positive, 0 = negative."""

    class_name: str
    positives: list[ImageRecord]
    negatives: list[ImageRecord]

    def records_and_labels(self) -> tuple[list[ImageRecord], np.ndarray]:
        labels = np.concatenate(
            [np.ones(len(self.positives), np.float32), np.zeros(len(self.negatives), np.float32)]
        )
        return [*self.positives, *self.negatives], labels


def resample(items: Sequence[ImageRecord], count: int, rng: np.random.Generator) -> list:
    """``count`` items: all once then random repeats when short, a random subset when long."""
    if count <= 0 or not items:
        return []
    if len(items) >= count:
        return [items[i] for i in sorted(rng.choice(len(items), size=count, replace=False))]
    extra = rng.choice(len(items), size=count - len(items), replace=True)
    return [*items, *(items[i] for i in sorted(extra))]


def even_quotas(total: int, pools: Sequence[int], rng: np.random.Generator) -> list[int]:
    """Split ``total`` evenly over the non-empty pools; leftovers go to randomly chosen ones."""
    active = [i for i, size in enumerate(pools) if size > 0]
    quotas = [0] * len(pools)
    if not active:
        return quotas
    base, remainder = divmod(total, len(active))
    for i in active:
        quotas[i] = base
    for i in rng.choice(active, size=remainder, replace=False):
        quotas[i] += 1
    return quotas


def balance_condition(
    train: Sequence[ImageRecord],
    class_index: int,
    classes: Sequence[str],
    target_count: int,
    seed: int,
) -> BalancedSet:
    # One generator per condition: balancing one class never shifts another's sample.
    rng = np.random.default_rng([seed, class_index])
    by_class: list[list[ImageRecord]] = [[] for _ in classes]
    for record in train:
        by_class[record.class_index].append(record)
    positives = resample(by_class[class_index], target_count, rng)
    others = [i for i in range(len(classes)) if i != class_index]
    quotas = even_quotas(target_count, [len(by_class[i]) for i in others], rng)
    negatives: list[ImageRecord] = []
    for other, quota in zip(others, quotas, strict=True):
        negatives.extend(resample(by_class[other], quota, rng))
    return BalancedSet(classes[class_index], positives, negatives)


def validation_condition(
    validation: Sequence[ImageRecord], class_index: int, classes: Sequence[str], seed: int
) -> BalancedSet:
    """The class's held-out images against an equal-sized, evenly spread sample of the others'.

    Never up-samples: a repeated validation image would only make the figure look steadier.
    """
    rng = np.random.default_rng([seed, class_index, 1])
    by_class: list[list[ImageRecord]] = [[] for _ in classes]
    for record in validation:
        by_class[record.class_index].append(record)
    positives = list(by_class[class_index])
    others = [i for i in range(len(classes)) if i != class_index]
    sizes = [len(by_class[i]) for i in others]
    wanted = min(len(positives), sum(sizes))
    quotas = even_quotas(wanted, sizes, rng)
    # A small class cannot fill its quota without repeats; hand the rest to the larger ones.
    shortfall = sum(max(0, q - s) for q, s in zip(quotas, sizes, strict=True))
    quotas = [min(q, s) for q, s in zip(quotas, sizes, strict=True)]
    for i in np.argsort(sizes)[::-1]:
        take = min(shortfall, sizes[i] - quotas[i])
        quotas[i] += take
        shortfall -= take
    negatives: list[ImageRecord] = []
    for other, quota in zip(others, quotas, strict=True):
        negatives.extend(resample(by_class[other], quota, rng))
    return BalancedSet(classes[class_index], positives, negatives)


_LINKERS = {
    "hardlink": os.link,
    "symlink": lambda src, dst: os.symlink(os.path.abspath(src), dst),
    "copy": shutil.copy2,
}


def materialize(
    balanced: BalancedSet, classes: Sequence[str], balanced_dir: Path, mode: str
) -> Path:
    """Write ``balanced_dir/<Class>/{positive,negative}/`` and ``manifest.csv``.

    Repeated picks of one image get distinct names (a running number prefix). The class
    folder is rebuilt from scratch: it is derived data. Hard links fall back to copies across
    file systems.
    """
    target = balanced_dir / balanced.class_name
    if target.exists():
        shutil.rmtree(target)
    rows = []
    entries = [("positive", r) for r in balanced.positives] + [
        ("negative", r) for r in balanced.negatives
    ]
    link = _LINKERS.get(mode)
    target.mkdir(parents=True)
    if link is not None:
        for side in ("positive", "negative"):
            (target / side).mkdir()
    for number, (side, record) in enumerate(
        track(entries, len(entries), f"balancing {balanced.class_name}")
    ):
        name = f"{number:06d}_{record.path.name}"
        if link is not None:
            destination = target / side / name
            try:
                link(record.path, destination)
            except OSError:
                if mode != "hardlink":
                    raise
                shutil.copy2(record.path, destination)
        rows.append(
            (f"{side}/{name}", side, str(record.path), classes[record.class_index], record.sha256)
        )
    with (target / MANIFEST_CSV).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["entry", "side", "source", "source_class", "sha256"])
        writer.writerows(rows)
    log.info(
        "balanced_set_written",
        condition=balanced.class_name,
        positives=len(balanced.positives),
        negatives=len(balanced.negatives),
        mode=mode,
        folder=str(target),
    )
    return target
