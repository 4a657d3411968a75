"""One-vs-all balancing per condition, on the training side of the split only.

Positives are the condition's training images; negatives come from the other classes, drawn
as ``[balance] negatives`` says: evenly over the classes, in proportion to their sizes, evenly
over (class, source) pairs, or all of them. With a number as ``target_count`` each side is
brought to that size: every image once, then up-sampled with replacement when short, or
down-sampled without replacement when long. With ``target_count = "all"`` (or ``negatives =
"all"``) images are used once and the loss is weighted instead, so both sides weigh the same
without copies. Deterministic for a seed. The validation side is never touched by this.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gicls.logs import get_logger
from gicls.progress import track
from gicls.training.scan import ImageRecord

log = get_logger(__name__)

MANIFEST_CSV = "manifest.csv"

NegativeSampling = Literal["even", "prevalence", "sources", "all"]


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

    def sample_weights(self) -> np.ndarray | None:
        """Per entry (in ``records_and_labels`` order): weights that make both sides weigh half
        of the loss; None when the sides are already the same size."""
        n_pos, n_neg = len(self.positives), len(self.negatives)
        if n_pos == n_neg or not n_pos or not n_neg:
            return None
        total = n_pos + n_neg
        return np.concatenate(
            [
                np.full(n_pos, total / (2 * n_pos), np.float32),
                np.full(n_neg, total / (2 * n_neg), np.float32),
            ]
        )


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


def proportional_quotas(total: int, pools: Sequence[int], rng: np.random.Generator) -> list[int]:
    """Split ``total`` in proportion to the pool sizes (largest remainders, ties at random)."""
    size = sum(pools)
    if size == 0:
        return [0] * len(pools)
    exact = np.asarray(pools, dtype=np.float64) * total / size
    quotas = np.floor(exact).astype(int)
    remainder = total - int(quotas.sum())
    order = np.lexsort((rng.random(len(pools)), -(exact - quotas)))
    quotas[order[:remainder]] += 1
    return [int(q) for q in quotas]


def without_repeats(quotas: Sequence[int], sizes: Sequence[int]) -> list[int]:
    """Cap each quota at its pool's size and hand the shortfall to the largest pools, so a
    small pool is never repeated while a larger one has unused images. When the pools hold
    fewer images than the quotas ask for, the quotas stand (every image once, then repeats)."""
    if sum(sizes) < sum(quotas):
        return list(quotas)
    shortfall = sum(max(0, q - s) for q, s in zip(quotas, sizes, strict=True))
    capped = [min(q, s) for q, s in zip(quotas, sizes, strict=True)]
    for i in np.argsort(sizes)[::-1]:
        take = min(shortfall, sizes[i] - capped[i])
        capped[i] += take
        shortfall -= take
    return capped


def _by_class(records: Sequence[ImageRecord], classes: Sequence[str]) -> list[list[ImageRecord]]:
    by_class: list[list[ImageRecord]] = [[] for _ in classes]
    for record in records:
        by_class[record.class_index].append(record)
    return by_class


def _negative_pools(
    by_class: list[list[ImageRecord]],
    class_index: int,
    negatives: NegativeSampling,
    source_of: dict[Path, str] | None,
) -> list[list[ImageRecord]]:
    """The pools negatives are drawn from: one per other class, or per (class, source)."""
    others = [pool for i, pool in enumerate(by_class) if i != class_index]
    if negatives != "sources":
        return others
    if source_of is None:
        raise ValueError("negatives = 'sources' needs the source of every training image")
    pools: list[list[ImageRecord]] = []
    for pool in others:
        cells: dict[str, list[ImageRecord]] = {}
        for record in pool:
            cells.setdefault(source_of[record.path], []).append(record)
        pools.extend(cells[name] for name in sorted(cells))
    return pools


def balance_condition(
    train: Sequence[ImageRecord],
    class_index: int,
    classes: Sequence[str],
    target_count: int | Literal["all"],
    seed: int,
    negatives: NegativeSampling = "even",
    source_of: dict[Path, str] | None = None,
) -> BalancedSet:
    """The condition's training set; ``source_of`` (path -> source) is needed for "sources"."""
    # One generator per condition: balancing one class never shifts another's sample.
    rng = np.random.default_rng([seed, class_index])
    by_class = _by_class(train, classes)
    if target_count == "all":
        others = [r for i, pool in enumerate(by_class) if i != class_index for r in pool]
        return BalancedSet(classes[class_index], list(by_class[class_index]), others)
    positives = resample(by_class[class_index], target_count, rng)
    pools = _negative_pools(by_class, class_index, negatives, source_of)
    sizes = [len(pool) for pool in pools]
    if negatives == "all":
        chosen = [r for pool in pools for r in pool]
        return BalancedSet(classes[class_index], positives, chosen)
    if negatives == "prevalence":
        quotas = proportional_quotas(target_count, sizes, rng)
    else:
        quotas = even_quotas(target_count, sizes, rng)
    if negatives == "sources":
        # Many (class, source) cells are small: repeating them would over-weight a few frames.
        quotas = without_repeats(quotas, sizes)
    chosen = []
    for pool, quota in zip(pools, quotas, strict=True):
        chosen.extend(resample(pool, quota, rng))
    return BalancedSet(classes[class_index], positives, chosen)


def validation_condition(
    validation: Sequence[ImageRecord], class_index: int, classes: Sequence[str], seed: int
) -> BalancedSet:
    """The class's held-out images against an equal-sized, evenly spread sample of the others'.

    Never up-samples: a repeated validation image would only make the figure look steadier.
    """
    rng = np.random.default_rng([seed, class_index, 1])
    by_class = _by_class(validation, classes)
    positives = list(by_class[class_index])
    others = [i for i in range(len(classes)) if i != class_index]
    sizes = [len(by_class[i]) for i in others]
    wanted = min(len(positives), sum(sizes))
    # A small class cannot fill its quota without repeats; hand the rest to the larger ones.
    quotas = without_repeats(even_quotas(wanted, sizes, rng), sizes)
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
